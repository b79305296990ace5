import TabbyCore
import TabbyStore

/// The IPAMConfiguration knobs, with Calico's defaults.
public struct IPAMSettings: Sendable, Hashable {
    public var strictAffinity = false
    public var maxBlocksPerHost = 0
    public var autoAllocateBlocks = true

    public init() {}
}

/// What one assignment needs to know about the cluster, read once per call.
struct Context: Sendable {
    var configuration: IPAMSettings
    var pools: [(name: String, spec: IPPoolSpec, cidr: CIDR)]
    var reserved: [CIDR]
    var nodeLabels: [String: String]

    var enabledPools: [(cidr: CIDR, blockSize: Int)] {
        pools.filter { !($0.spec.disabled ?? false) }.map {
            ($0.cidr, $0.spec.blockSize ?? ($0.cidr.family == .v4 ? 26 : 122))
        }
    }

    /// The pools this node may allocate from, filtered by `disabled`, `nodeSelector`, allowed
    /// uses and the requested names or CIDRs.
    func pools(family: IPFamily, node: String, requested: [String]?) throws(IPAMError) -> [IPPoolSpec] {
        var candidates = pools.filter { $0.cidr.family == family }
        if let requested, !requested.isEmpty {
            var chosen: [(name: String, spec: IPPoolSpec, cidr: CIDR)] = []
            for wanted in requested {
                guard let pool = candidates.first(where: { $0.name == wanted || $0.cidr == CIDR(wanted) }) else {
                    throw .noPools(
                        family: family, node: node, reason: "the requested pool \"\(wanted)\" does not exist")
                }
                if pool.spec.disabled ?? false {
                    throw .noPools(
                        family: family, node: node, reason: "the requested pool \(pool.name) (\(pool.cidr)) is disabled"
                    )
                }
                chosen.append(pool)
            }
            candidates = chosen
        } else {
            candidates = candidates.filter { !($0.spec.disabled ?? false) }
        }
        candidates = candidates.filter { pool in
            let uses = pool.spec.allowedUses ?? [.workload, .tunnel]
            guard uses.contains(.workload) || uses.contains(.tunnel) else { return false }
            let selector = (try? Selector.parse(pool.spec.nodeSelector ?? "all()")) ?? Selector.all
            return selector.matches(nodeLabels)
        }
        guard !candidates.isEmpty else {
            let reason =
                pools.contains { $0.cidr.family == family }
                ? "every IPv\(family.rawValue) pool is disabled or its nodeSelector does not match the node's labels"
                : "there is no IPv\(family.rawValue) IPPool; create one (tabbyctl apply -f pool.yaml)"
            throw .noPools(family: family, node: node, reason: reason)
        }
        return candidates.map { pool in
            var spec = pool.spec
            spec.applyDefaults(metadata: ObjectMeta(name: pool.name))
            return spec
        }
    }
}

extension IPPoolSpec {
    /// The pool's network (validated on write, so it parses).
    var network: CIDR { CIDR(cidr)! }
}

extension IPAM {
    func loadContext(node: String) async throws(IPAMError) -> Context {
        do {
            var settings = IPAMSettings()
            if let configuration = try await resources.get(IPAMConfiguration.self, name: "default") {
                settings.strictAffinity = configuration.spec.strictAffinity ?? false
                settings.maxBlocksPerHost = configuration.spec.maxBlocksPerHost ?? 0
                settings.autoAllocateBlocks = configuration.spec.autoAllocateBlocks ?? true
            }
            let pools = try await resources.list(IPPool.self).compactMap { pool -> (String, IPPoolSpec, CIDR)? in
                CIDR(pool.spec.cidr).map { (pool.metadata.name, pool.spec, $0) }
            }
            let reserved = try await resources.list(IPReservation.self).flatMap { $0.spec.reservedCIDRs ?? [] }
                .compactMap { CIDR($0) }
            // The node's labels matter only to a pool that selects nodes (most select all()).
            let selective = pools.contains { pool in
                !["", "all()"].contains((pool.1.nodeSelector ?? "").filter { !$0.isWhitespace })
            }
            let labels = selective ? try await resources.get(Node.self, name: node)?.metadata.labels ?? [:] : [:]
            return Context(configuration: settings, pools: pools, reserved: reserved, nodeLabels: labels)
        } catch .store(let error) {
            throw .store(error)
        } catch {
            throw .corruptedRecord(key: ResourceClient.keyPrefix, reason: "\(error)")
        }
    }
}
