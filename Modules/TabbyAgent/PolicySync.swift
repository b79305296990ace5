import Foundation
import Logging
import TabbyCore
import TabbyDataplane
import TabbyPolicy
import TabbyStore

/// Datastore changes -> policy engine -> dataplane. The engine sees every endpoint in the
/// cluster (remote pods' addresses fill IP sets); the dataplane gets programs only for this
/// node's endpoints.
struct PolicySync {
    let nodeName: String
    let dataplane: any Dataplane
    let metrics: AgentMetrics
    let logger: Logger
    var engine = PolicyEngine()
    /// False until the first sync reconciled the kernel.
    var adopted = false

    init(nodeName: String, dataplane: any Dataplane, metrics: AgentMetrics, logger: Logger) {
        self.nodeName = nodeName
        self.dataplane = dataplane
        self.metrics = metrics
        self.logger = logger
    }

    /// The IR with only this node's endpoint programs.
    func localIR() -> PolicyIR {
        var ir = engine.ir
        ir.endpoints = ir.endpoints.filter { key, _ in engine.state.workloadEndpoints[key]?.spec.node == nodeName }
        return ir
    }

    static func decode(_ kv: KeyValue) -> PolicyResource? {
        guard let resource = (try? ResourceClient.decode(kv)) ?? nil else { return nil }
        return PolicyResource(resource)
    }

    /// `/tabby/v3/<plural>/[namespace/]name` to the engine's key.
    static func key(of path: String) -> PolicyResourceKey? {
        guard path.hasPrefix(ResourceClient.keyPrefix) else { return nil }
        let parts = path.dropFirst(ResourceClient.keyPrefix.count).split(separator: "/").map(String.init)
        guard let plural = parts.first, let kind = ResourceKind.allCases.first(where: { $0.plural == plural }) else {
            return nil
        }
        if kind.isNamespaced, parts.count == 3 { return PolicyResourceKey(kind, namespace: parts[1], name: parts[2]) }
        if parts.count == 2 { return PolicyResourceKey(kind, name: parts[1]) }
        return nil
    }

    /// A fresh engine from a full listing. The first time, the dataplane reconciles what the
    /// kernel has (a restarted agent keeps the rules in place); later resyncs apply the
    /// difference.
    mutating func resync(items: [KeyValue]) throws {
        let before = localIR()
        var fresh = PolicyEngine()
        _ = fresh.apply(items.compactMap(Self.decode).map { .upsert($0) })
        engine = fresh
        let after = localIR()
        let started = ContinuousClock.now
        if !adopted {
            let repaired = try dataplane.reconcile(after)
            if !repaired.isEmpty { logger.info("dataplane repaired at start: \(repaired.joined(separator: "; "))") }
            adopted = true
        } else {
            try dataplane.apply(PolicyDelta.between(before, after), resulting: after)
        }
        record(started: started, ir: after)
        for problem in engine.problems { logger.warning("policy: \(problem)") }
    }

    /// One batch of watch events. Returns whether routing inputs (nodes, pools, affinities)
    /// changed.
    mutating func apply(_ events: [WatchEvent]) throws -> Bool {
        let started = ContinuousClock.now
        var updates: [PolicyUpdate] = []
        var routing = false
        for event in events {
            switch event {
            case .added(let kv), .modified(let kv, _):
                routing = routing || Self.affectsRouting(kv.key)
                if let resource = Self.decode(kv) { updates.append(.upsert(resource)) }
            case .deleted(let key, _, _):
                routing = routing || Self.affectsRouting(key)
                if let resourceKey = Self.key(of: key) { updates.append(.delete(resourceKey)) }
            case .resyncRequired:
                break
            }
        }
        guard !updates.isEmpty else { return routing }
        let delta = engine.apply(updates)
        guard !delta.isEmpty else { return routing }
        let ir = localIR()
        var local = delta
        local.endpointsBound = delta.endpointsBound.filter { ir.endpoints[$0.endpoint] != nil }
        do {
            try dataplane.apply(local, resulting: ir)
        } catch {
            metrics.update { $0.applyErrors += 1 }
            throw error
        }
        record(started: started, ir: ir)
        return routing
    }

    static func affectsRouting(_ key: String) -> Bool {
        key.hasPrefix("/tabby/ipam/v2/affinities/") || key.hasPrefix(ResourceClient.prefix(for: .node))
            || key.hasPrefix(ResourceClient.prefix(for: .ipPool))
            || key.hasPrefix(ResourceClient.prefix(for: .bgpPeer))
            || key.hasPrefix(ResourceClient.prefix(for: .bgpConfiguration))
    }

    func record(started: ContinuousClock.Instant, ir: PolicyIR) {
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let endpoints = engine.state.workloadEndpoints.count
        metrics.update {
            $0.applies += 1
            $0.applySecondsSum += seconds
            $0.lastApplySeconds = seconds
            $0.convergences += 1
            $0.convergenceSecondsSum += seconds
            $0.lastConvergenceSeconds = seconds
            $0.endpoints = endpoints
            $0.localEndpoints = ir.endpoints.count
            $0.policies = ir.policies.count
            $0.ipSets = ir.ipSets.count
        }
    }
}
