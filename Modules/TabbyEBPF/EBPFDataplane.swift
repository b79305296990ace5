import Foundation
import Synchronization
import TabbyCore
import TabbyDataplane
import TabbyNetlink
import TabbyPolicy

/// The eBPF backend: the tc program attached (tc ingress and egress) to every workload interface of
/// the node, and each workload endpoint's policy, per direction, compiled to tables
/// (`PolicyTableCompiler`) under a policy program id that the endpoint's entry names.
///
/// A changed policy gets a new program id: its tables are written first, then the endpoint's entry
/// switches to it in one map update, then the old id's entries go, so a packet meets the old
/// policy or the new one, never a mix. Every interface with the workload prefix gets the program,
/// also those no endpoint names: their packets drop (fail closed). Maps are pinned under `pinRoot`,
/// so a restarted agent keeps conntrack and, through `reconcile`, adopts the tables it finds.
///
/// Not yet: host endpoints (left unprogrammed, as the nftables backend does), IPv6, outgoing NAT,
/// interfaces that appear between two applies (attached at the next apply or reconcile).
public final class EBPFDataplane: Dataplane {
    public let name = "ebpf"
    public let configuration: DataplaneConfiguration
    /// The node's network namespace (`/run/netns/X`), nil for the caller's own.
    public let namespacePath: String?
    public let program: TCProgram

    struct Binding: Equatable {
        var interface: String
        var ifindex: Int32
        var ingress: UInt32
        var egress: UInt32
        var ingressTables: PolicyTables
        var egressTables: PolicyTables
    }

    struct State {
        var bindings: [EndpointKey: Binding] = [:]
        var nextProgram: UInt32 = 1
        /// ifindex -> interface name of the interfaces the program is attached to.
        var attached: [Int32: String] = [:]
        var applies = 0
        var lastApplySeconds: Double?
        var lastError: String?
    }
    // Mutex: the agent applies from one task, status may be read from another.
    private let state = Mutex(State())

    /// Loads (or, with maps pinned under `pinRoot`, reuses) the tc program and writes the failsafe
    /// ports. Requires CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.
    public init(pinRoot: String, namespacePath: String?, configuration: DataplaneConfiguration = .calicoDefaults)
        throws
    {
        self.configuration = configuration
        self.namespacePath = namespacePath
        program = try TCProgram(pinRoot: pinRoot)
        for port in configuration.failsafeInbound {
            try program.setFailsafe(.inbound, protocol: UInt8(port.protocolNumber), port: port.port)
        }
        for port in configuration.failsafeOutbound {
            try program.setFailsafe(.outbound, protocol: UInt8(port.protocolNumber), port: port.port)
        }
        let used = try program.policyProgramIDs().union(
            program.endpointEntries().values.flatMap { [$0.ingressProgram, $0.egressProgram] })
        state.withLock { $0.nextProgram = (used.max() ?? 0) + 1 }
    }

    public func apply(_ delta: PolicyDelta, resulting ir: PolicyIR) throws(DataplaneError) {
        let started = ContinuousClock.now
        do {
            _ = try sync(ir, adopt: false)
        } catch {
            state.withLock { $0.lastError = error.description }
            throw error
        }
        let elapsed = ContinuousClock.now - started
        state.withLock { state in
            state.applies += 1
            state.lastApplySeconds =
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            state.lastError = nil
        }
    }

    /// Compares the maps with `ir`: endpoints whose entry already names tables equal to the
    /// compiled ones are adopted as they are; others are rewritten; entries of no endpoint go.
    public func reconcile(_ ir: PolicyIR) throws(DataplaneError) -> [String] {
        try sync(ir, adopt: true)
    }

    public func sweep(keeping ir: PolicyIR) throws(DataplaneError) {
        _ = try sync(ir, adopt: true)
    }

    public func status() -> DataplaneStatus {
        state.withLock { state in
            DataplaneStatus(
                healthy: state.lastError == nil,
                detail: state.lastError
                    ?? "\(state.bindings.count) endpoints on \(state.attached.count) interfaces",
                applies: state.applies, lastApplySeconds: state.lastApplySeconds)
        }
    }

    public func setOutgoingNAT(_ nat: OutgoingNAT) throws(DataplaneError) {
        guard nat.natPools.isEmpty else {
            throw .unsupported("natOutgoing with the eBPF dataplane (not implemented yet): use --dataplane nftables")
        }
    }

    /// Brings the kernel to `ir`; returns what it changed (for reconcile's report).
    private func sync(_ ir: PolicyIR, adopt: Bool) throws(DataplaneError) -> [String] {
        do {
            return try state.withLock { state in try sync(ir, adopt: adopt, state: &state) }
        } catch let error as DataplaneError {
            throw error
        } catch let error as PolicyTableCompiler.Error {
            throw .unsupported(error.description)
        } catch {
            throw .kernel("\(error)")
        }
    }

    private func sync(_ ir: PolicyIR, adopt: Bool, state: inout State) throws -> [String] {
        var report: [String] = []
        let prefix = configuration.workloadInterfacePrefix
        let links = try interfaces().filter { $0.name.hasPrefix(prefix) }
        let byName = Dictionary(links.map { ($0.name, $0.index) }, uniquingKeysWith: { first, _ in first })

        // Fail closed first: every workload interface gets the program, known or not.
        for link in links where state.attached[link.index] != link.name || adopt {
            // Re-attaching replaces Tabby's filter in place (the new load's program); only an
            // interface that had none is news.
            let had = try TrafficControl.attachedProgramID(on: link.name, hook: .ingress, namespace: namespacePath)
            for hook in TrafficControl.Hook.allCases {
                try TrafficControl.attach(
                    hook == .ingress ? program.ingress : program.egress, to: link.name, hook: hook,
                    namespace: namespacePath)
            }
            if had == nil { report.append("attached to \(link.name)") }
            state.attached[link.index] = link.name
        }
        for (index, name) in state.attached where byName[name] != index { state.attached[index] = nil }

        let existing = adopt ? try program.endpointEntries() : [:]
        var wanted: [EndpointKey: Binding] = [:]
        for endpoint in ir.endpoints.values.sorted(by: { $0.endpoint < $1.endpoint }) where endpoint.kind == .workload {
            guard let interface = endpoint.interfaceName, let ifindex = byName[interface] else { continue }
            let ingress = try PolicyTableCompiler.compile(endpoint, direction: .ingress, in: ir)
            let egress = try PolicyTableCompiler.compile(endpoint, direction: .egress, in: ir)
            if let bound = state.bindings[endpoint.endpoint], bound.ifindex == ifindex,
                bound.ingressTables == ingress, bound.egressTables == egress
            {
                // Unchanged since the last apply; reconcile also checks the kernel still has it.
                let intact =
                    try !adopt
                    || (existing[ifindex] == .init(ingressProgram: bound.ingress, egressProgram: bound.egress)
                        && program.readPolicy(bound.ingress) == program.policyEntries(ingress, program: bound.ingress)
                        && program.readPolicy(bound.egress) == program.policyEntries(egress, program: bound.egress))
                if intact {
                    wanted[endpoint.endpoint] = bound
                    continue
                }
            }
            // After a restart: the entry the previous run left, if its tables are what we would write.
            if state.bindings[endpoint.endpoint] == nil, let entry = existing[ifindex],
                try program.readPolicy(entry.ingressProgram)
                    == program.policyEntries(ingress, program: entry.ingressProgram),
                try program.readPolicy(entry.egressProgram)
                    == program.policyEntries(egress, program: entry.egressProgram)
            {
                wanted[endpoint.endpoint] = Binding(
                    interface: interface, ifindex: ifindex, ingress: entry.ingressProgram,
                    egress: entry.egressProgram, ingressTables: ingress, egressTables: egress)
                state.bindings[endpoint.endpoint] = wanted[endpoint.endpoint]
                continue
            }
            let binding = Binding(
                interface: interface, ifindex: ifindex, ingress: state.nextProgram, egress: state.nextProgram + 1,
                ingressTables: ingress, egressTables: egress)
            state.nextProgram += 2
            try program.writePolicy(ingress, program: binding.ingress)
            try program.writePolicy(egress, program: binding.egress)
            try program.setEndpoint(
                ifindex: ifindex, .init(ingressProgram: binding.ingress, egressProgram: binding.egress))
            if let old = state.bindings[endpoint.endpoint] {
                if old.ifindex != ifindex { try program.removeEndpoint(ifindex: old.ifindex) }
                try program.removePolicy(old.ingressTables, program: old.ingress)
                try program.removePolicy(old.egressTables, program: old.egress)
            }
            state.bindings[endpoint.endpoint] = binding
            wanted[endpoint.endpoint] = binding
            if adopt { report.append("programmed \(endpoint.endpoint) on \(interface)") }
        }
        for (key, old) in state.bindings where wanted[key] == nil {
            if !wanted.values.contains(where: { $0.ifindex == old.ifindex }) {
                try program.removeEndpoint(ifindex: old.ifindex)
            }
            try program.removePolicy(old.ingressTables, program: old.ingress)
            try program.removePolicy(old.egressTables, program: old.egress)
            state.bindings[key] = nil
        }
        if adopt {
            // What no endpoint of `ir` uses: entries of vanished interfaces, tables of old program ids.
            let wantedIndexes = Set(wanted.values.map(\.ifindex))
            for ifindex in try program.endpointEntries().keys where !wantedIndexes.contains(ifindex) {
                try program.removeEndpoint(ifindex: ifindex)
                report.append("removed the endpoint entry of ifindex \(ifindex)")
            }
            let used = Set(wanted.values.flatMap { [$0.ingress, $0.egress] })
            let stale = try program.policyProgramIDs().subtracting(used)
            for id in stale.sorted() { try program.removePolicy(program: id) }
            if !stale.isEmpty { report.append("removed the tables of \(stale.count) unused policy programs") }
        }
        return report
    }

    private func interfaces() throws -> [Link] {
        let socket = try namespacePath.map { try RouteSocket.open(inNamespaceAt: $0) } ?? RouteSocket()
        return try socket.links()
    }
}
