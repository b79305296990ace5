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
/// policy or the new one, never a mix. When only IP set members changed (the same classes and
/// verdicts), the address entries change in place instead, as set members do in the other
/// backends. An apply compiles only the endpoints its delta can affect. Every interface with the workload prefix gets the program,
/// also those no endpoint names: their packets drop (fail closed). Maps are pinned under `pinRoot`,
/// so a restarted agent keeps conntrack and, through `reconcile`, adopts the tables it finds.
///
/// Host endpoints: the same program on both hooks of each host interface a host endpoint polices
/// (`HostInterfaceAssignment`: the interface it names; `*`: every interface but `lo`, workload
/// interfaces and those another host endpoint names; no `interfaceName`: the interfaces holding one
/// of its `expectedIPs`), its entry flagged host so the hooks keep their natural direction and the
/// failsafe ports apply first. Only traffic to the host (destination one of the namespace's
/// addresses, kept in `tabby_host_addrs`, or multicast) and from it (source one of them, without
/// the workload mark the program sets on every pod's packet) meets its policy; forwarded traffic
/// passes. A host endpoint that polices no interface is reported in `status()`. Filters on host
/// interfaces are removed when their host endpoint goes, by `reconcile`/`sweep` when an earlier run
/// left them, and by `removeEverything` and `removeLeftovers`: only Tabby's (handle 0x7ab,
/// priority 1), never another program's.
///
/// `natOutgoing` goes to `outgoingNAT` (tabbyd gives it netfilter's masquerade); without one,
/// a pool with `natOutgoing` is refused as unsupported.
///
/// `watchInterfaces()` attaches the program to a workload interface as soon as netlink reports it,
/// so a new pod's traffic drops until its endpoint is applied instead of passing unpoliced.
///
/// `setOverlayPeers` (tabbyd: the other nodes' Node addresses and the VXLAN port) lets their VXLAN
/// traffic past host endpoint policy, as Calico does for known hosts.
///
/// IPv6: each workload endpoint with IPv6 addresses gets IPv6 tables of its own per direction
/// (`PolicyTableCompiler` with `family: .v6`), under program ids its entry names beside the IPv4
/// ones. Host endpoints police IPv4 only (IPv6 on their interfaces drops).
///
/// Not yet: host interfaces and host addresses that appear between two applies (attached
/// and learnt at the next apply or reconcile).
public final class EBPFDataplane: Dataplane {
    public let name = "ebpf"
    public let configuration: DataplaneConfiguration
    /// The node's network namespace (`/run/netns/X`), nil for the caller's own.
    public let namespacePath: String?
    public let program: TCProgram
    /// Who programs `natOutgoing`; nil: not available in this build.
    public let outgoingNAT: (any OutgoingNATProgrammer)?

    /// A workload endpoint's four policy programs, in this order: IPv4 ingress, IPv4 egress, IPv6
    /// ingress, IPv6 egress (`TCProgram.Endpoint`'s fields).
    static let slots: [(Direction, IPFamily)] = [(.ingress, .v4), (.egress, .v4), (.ingress, .v6), (.egress, .v6)]

    struct Binding: Equatable {
        var interface: String
        var ifindex: Int32
        /// Per slot (`slots`): the policy program id, 0 where there are no tables.
        var programs: [UInt32]
        /// Per slot: the tables; nil for IPv6 of an endpoint without IPv6 addresses.
        var tables: [PolicyTables?]

        var entry: TCProgram.Endpoint {
            .init(
                ingressProgram: programs[0], egressProgram: programs[1], ingress6Program: programs[2],
                egress6Program: programs[3])
        }

        /// The (tables, id) pairs written to the maps.
        var written: [(PolicyTables, UInt32)] {
            zip(tables, programs).compactMap { tables, id in tables.map { ($0, id) } }
        }
    }

    /// A host endpoint's tables, shared by every interface it polices.
    struct HostBinding: Equatable {
        /// ifindex -> interface name.
        var interfaces: [Int32: String]
        var ingress: UInt32
        var egress: UInt32
        var ingressTables: PolicyTables
        var egressTables: PolicyTables
    }

    struct State {
        var bindings: [EndpointKey: Binding] = [:]
        var hostBindings: [EndpointKey: HostBinding] = [:]
        /// ifindex -> name of the host interfaces the program is attached to (for host endpoints).
        var hostAttached: [Int32: String] = [:]
        /// Host endpoints that police no interface, and why (`HostInterfaceAssignment`).
        var hostUnattached: [EndpointKey: String] = [:]
        var nextProgram: UInt32 = 1
        /// ifindex -> interface name of the interfaces the program is attached to.
        var attached: [Int32: String] = [:]
        var applies = 0
        var lastApplySeconds: Double?
        var lastError: String?
        /// The IR of the last sync, for the interface watch to apply again when host interfaces or
        /// addresses change between applies.
        var lastIR: PolicyIR?
        /// Endpoints whose policy the tables cannot express yet: they drop everything (fail
        /// closed) until their policy changes; the reason per endpoint.
        var unexpressible: [EndpointKey: String] = [:]
        /// The netlink watch that attaches the program to workload interfaces as they appear.
        var monitor: LinkMonitor?
        /// The conntrack scanner's task, and the flows it found live at its last pass.
        var scanner: Task<Void, Never>?
        var trackedFlows: Int?
    }
    // Mutex: the agent applies from one task, status and the interface watch from others.
    let state = Mutex(State())

    /// Loads (or, with maps pinned under `pinRoot`, reuses) the tc program and writes the failsafe
    /// ports. Requires CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.
    public init(
        pinRoot: String, namespacePath: String?, configuration: DataplaneConfiguration = .calicoDefaults,
        outgoingNAT: (any OutgoingNATProgrammer)? = nil
    ) throws {
        self.configuration = configuration
        self.outgoingNAT = outgoingNAT
        self.namespacePath = namespacePath
        program = try TCProgram(pinRoot: pinRoot)
        for port in configuration.failsafeInbound {
            try program.setFailsafe(.inbound, protocol: UInt8(port.protocolNumber), port: port.port)
        }
        for port in configuration.failsafeOutbound {
            try program.setFailsafe(.outbound, protocol: UInt8(port.protocolNumber), port: port.port)
        }
        let used = try program.policyProgramIDs().union(
            program.endpointEntries().values.flatMap(\.programs))
        state.withLock { $0.nextProgram = (used.max() ?? 0) + 1 }
    }

    public func apply(_ delta: PolicyDelta, resulting ir: PolicyIR) throws(DataplaneError) {
        let started = ContinuousClock.now
        do {
            _ = try sync(ir, adopt: false, dirty: Self.affectedEndpoints(delta, in: ir))
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
        try sync(ir, adopt: true, dirty: nil)
    }

    public func sweep(keeping ir: PolicyIR) throws(DataplaneError) {
        _ = try sync(ir, adopt: true, dirty: nil)
    }

    /// The endpoints whose tables `delta` can change: those bound anew, those using a changed
    /// policy or profile, and those using a policy or profile whose rules name a changed IP set.
    /// Every other endpoint's tables are what they were, so an apply need not compile them again.
    static func affectedEndpoints(_ delta: PolicyDelta, in ir: PolicyIR) -> Set<EndpointKey> {
        var affected = Set(delta.endpointsBound.map(\.endpoint))
        let changedSets = Set(
            delta.ipSetsCreated.map(\.id) + delta.ipSetsRemoved + delta.ipSetMembersAdded.keys
                + delta.ipSetMembersRemoved.keys)
        func namesChangedSet(_ rules: [CompiledRule]) -> Bool {
            rules.contains { rule in
                (rule.source.referencedSets + rule.destination.referencedSets).contains(where: changedSets.contains)
            }
        }
        var policies = Set((delta.policiesAdded + delta.policiesReplaced).map(\.id) + delta.policiesRemoved)
        var profiles = Set((delta.profilesAdded + delta.profilesReplaced).map(\.name) + delta.profilesRemoved)
        if !changedSets.isEmpty {
            for (id, policy) in ir.policies where namesChangedSet(policy.ingress + policy.egress) {
                policies.insert(id)
            }
            for (name, profile) in ir.profiles where namesChangedSet(profile.ingress + profile.egress) {
                profiles.insert(name)
            }
        }
        guard !policies.isEmpty || !profiles.isEmpty else { return affected }
        for (key, endpoint) in ir.endpoints where !affected.contains(key) {
            let uses =
                endpoint.profiles.contains(where: profiles.contains)
                || (endpoint.ingress + endpoint.egress).contains { $0.policies.contains(where: policies.contains) }
            if uses { affected.insert(key) }
        }
        return affected
    }

    public func status() -> DataplaneStatus {
        var status = state.withLock { state in
            DataplaneStatus(
                healthy: state.lastError == nil && state.unexpressible.isEmpty,
                detail: state.lastError
                    ?? (state.unexpressible.isEmpty
                        ? nil
                        : "failing closed for \(state.unexpressible.count) endpoints: "
                            + state.unexpressible.values.sorted().joined(separator: "; "))
                        ?? ("\(state.bindings.count) endpoints on \(state.attached.count) interfaces, "
                            + "\(state.hostBindings.count) host endpoints on \(state.hostAttached.count) interfaces"
                            + (state.hostUnattached.isEmpty
                                ? ""
                                : "; host endpoints enforced nowhere: "
                                    + state.hostUnattached.map { "\($0.key): \($0.value)" }.sorted().joined(
                                        separator: "; "))),
                applies: state.applies, lastApplySeconds: state.lastApplySeconds, trackedFlows: state.trackedFlows)
        }
        do {
            for (counter, packets) in try program.counters() { status.packets[counter.metricName] = packets }
        } catch {
            status.healthy = false
            status.detail += "; reading the packet counters: \(error)"
        }
        return status
    }

    /// Writes `tabby_overlay_peers`: the other nodes' IPv4 underlay addresses at the VXLAN port
    /// (IPv6 ones are left out: host endpoints police IPv4 only).
    public func setOverlayPeers(_ peers: OverlayPeers) throws(DataplaneError) {
        let entries = Set(
            peers.addresses.compactMap { address -> TCProgram.OverlayPeer? in
                guard case .v4(let v4) = address else { return nil }
                return TCProgram.OverlayPeer(address: v4, port: peers.vxlanPort)
            })
        do {
            try state.withLock { _ in _ = try program.setOverlayPeers(entries) }
        } catch {
            throw .kernel("writing the overlay peers: \(error)")
        }
    }

    public func setOutgoingNAT(_ nat: OutgoingNAT) throws(DataplaneError) {
        if let outgoingNAT { return try outgoingNAT.set(nat) }
        guard nat.natPools.isEmpty else {
            throw .unsupported(
                "natOutgoing with the eBPF dataplane needs the nftables backend in the build (trait NFTables) for its masquerade"
            )
        }
    }

    /// Detaches the program from every interface it is on and removes every endpoint entry and
    /// policy table: what the node had before this dataplane. The pins stay (`BPFObject.removePins`).
    public func removeEverything() throws(DataplaneError) {
        do {
            try state.withLock { state in
                // Also filters of ours this run did not make (an earlier run's, on host interfaces).
                _ = try Self.detachTabbyFilters(
                    from: Set(state.attached.values).union(state.hostAttached.values)
                        .union(Self.interfaces(in: namespacePath).map(\.name)),
                    namespacePath: namespacePath)
                for ifindex in try program.endpointEntries().keys { try program.removeEndpoint(ifindex: ifindex) }
                for id in try program.policyProgramIDs() { try program.removePolicy(program: id) }
                try program.setHostAddresses([])
                try program.setOverlayPeers([])
                state.attached = [:]
                state.bindings = [:]
                state.hostAttached = [:]
                state.hostBindings = [:]
                state.hostUnattached = [:]
            }
        } catch {
            throw .kernel("removing the eBPF dataplane: \(error)")
        }
    }

    /// What an earlier eBPF dataplane left on a node now run by another backend: Tabby's tc filter
    /// on every interface of the namespace, workload and host interfaces alike (they would go on
    /// enforcing the old policy), and the pins under `pinRoot`. Returns what it removed. Needs no
    /// loaded program.
    public static func removeLeftovers(namespacePath: String?, pinRoot: String) throws -> [String] {
        var removed = try detachTabbyFilters(
            from: Set(interfaces(in: namespacePath).map(\.name)), namespacePath: namespacePath
        ).map { "tc programs on \($0)" }
        if FileManager.default.fileExists(atPath: pinRoot) {
            BPFObject.removePins(at: pinRoot)
            removed.append("pins under \(pinRoot)")
        }
        return removed
    }

    /// Removes Tabby's tc filter (handle 0x7ab, priority 1: `TrafficControl`) from both hooks of
    /// each of `names` that has one; other filters stay. Returns the interfaces it had to clean, sorted.
    static func detachTabbyFilters(from names: Set<String>, namespacePath: String?) throws -> [String] {
        var cleaned: [String] = []
        for name in names.sorted() {
            var had = false
            for hook in TrafficControl.Hook.allCases
            where try TrafficControl.attachedProgramID(on: name, hook: hook, namespace: namespacePath) != nil {
                try TrafficControl.detach(from: name, hook: hook, namespace: namespacePath)
                had = true
            }
            if had { cleaned.append(name) }
        }
        return cleaned
    }

    /// Brings the kernel to `ir`; returns what it changed (for reconcile's report).
    /// `dirty`: the only endpoints whose tables may have changed (nil: any).
    /// The interface watch saw a host interface or address come, go or change: with host
    /// endpoints in the last IR, sync it again (no workload endpoint is compiled again), so that
    /// `tabby_host_addrs` and the interfaces a `*` endpoint covers follow the namespace between
    /// applies. Without it, traffic to a new address of the host would count as forwarded and pass
    /// unpoliced until the next apply.
    func hostInterfacesChanged() {
        state.withLock { state in
            guard let ir = state.lastIR, ir.endpoints.values.contains(where: { $0.kind == .host }) else { return }
            do {
                _ = try sync(ir, adopt: false, dirty: [], state: &state)
            } catch {
                state.lastError = "following a host interface change: \(error)"
            }
        }
    }

    private func sync(_ ir: PolicyIR, adopt: Bool, dirty: Set<EndpointKey>?) throws(DataplaneError) -> [String] {
        do {
            let (report, unexpressible) = try state.withLock { state in
                let report = try sync(ir, adopt: adopt, dirty: dirty, state: &state)
                state.lastIR = ir
                return (report, state.unexpressible)
            }
            // Every other endpoint is programmed; say which ones the tables could not express.
            let new = unexpressible.filter { dirty == nil || dirty!.contains($0.key) }
            if !new.isEmpty {
                throw DataplaneError.unsupported(
                    "failing closed (dropping all traffic) for: " + new.values.sorted().joined(separator: "; "))
            }
            return report
        } catch let error as DataplaneError {
            throw error
        } catch let error as PolicyTableCompiler.Error {
            throw .unsupported(error.description)
        } catch {
            throw .kernel("\(error)")
        }
    }

    private func sync(_ ir: PolicyIR, adopt: Bool, dirty: Set<EndpointKey>?, state: inout State) throws -> [String] {
        var report: [String] = []
        let prefix = configuration.workloadInterfacePrefix
        let allLinks = try Self.interfaces(in: namespacePath)
        let links = allLinks.filter { $0.name.hasPrefix(prefix) }
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
            if !adopt, let dirty, !dirty.contains(endpoint.endpoint), let bound = state.bindings[endpoint.endpoint],
                bound.ifindex == ifindex
            {
                wanted[endpoint.endpoint] = bound
                continue
            }
            var tables: [PolicyTables?] = []
            do throws(PolicyTableCompiler.Error) {
                for (direction, family) in Self.slots {
                    // IPv6 tables only for an endpoint with IPv6 addresses; without, its IPv6
                    // drops (program 0 has no tables), neighbour discovery aside.
                    guard family == .v4 || endpoint.addresses.contains(where: { $0.family == family }) else {
                        tables.append(nil)
                        continue
                    }
                    tables.append(
                        try PolicyTableCompiler.compile(endpoint, direction: direction, in: ir, family: family))
                }
                state.unexpressible[endpoint.endpoint] = nil
            } catch {
                // Fail closed for this endpoint alone: tables with no classes drop every packet.
                state.unexpressible[endpoint.endpoint] = "\(endpoint.endpoint): \(error)"
                tables = [PolicyTables(), PolicyTables(), nil, nil]
            }
            /// Whether the maps hold exactly `tables` under `ids` (nil tables: id 0).
            func written(_ ids: [UInt32]) throws -> Bool {
                for (id, slotTables) in zip(ids, tables) {
                    guard let slotTables else {
                        if id != 0 { return false }
                        continue
                    }
                    if try program.readPolicy(id) != program.policyEntries(slotTables, program: id) { return false }
                }
                return true
            }
            if let bound = state.bindings[endpoint.endpoint], bound.ifindex == ifindex, bound.tables == tables {
                // Unchanged since the last apply; reconcile also checks the kernel still has it.
                let intact = try !adopt || (existing[ifindex] == bound.entry && written(bound.programs))
                if intact {
                    wanted[endpoint.endpoint] = bound
                    continue
                }
            }
            // After a restart: the entry the previous run left, if its tables are what we would write.
            if state.bindings[endpoint.endpoint] == nil, let entry = existing[ifindex], !entry.isHost,
                try written(entry.programs)
            {
                wanted[endpoint.endpoint] = Binding(
                    interface: interface, ifindex: ifindex, programs: entry.programs, tables: tables)
                state.bindings[endpoint.endpoint] = wanted[endpoint.endpoint]
                continue
            }
            let old = state.bindings[endpoint.endpoint].flatMap { adopt || $0.ifindex != ifindex ? nil : $0 }
            var binding = Binding(interface: interface, ifindex: ifindex, programs: [0, 0, 0, 0], tables: tables)
            var retired: [(PolicyTables, UInt32)] = []
            for slot in Self.slots.indices {
                let oldID = old?.programs[slot]
                let oldTables = old?.tables[slot]
                guard let slotTables = tables[slot] else {
                    if let oldID, let oldTables { retired.append((oldTables, oldID)) }
                    continue
                }
                let id: UInt32
                if let oldID, let oldTables, oldTables == slotTables {
                    id = oldID
                } else if let oldID, let oldTables, oldTables.differsOnlyInAddresses(from: slotTables) {
                    // Same classes, same verdicts: only which peers fall in which class moved (an
                    // IP set member came or went). Each address entry changes on its own, as a set
                    // member would; no packet meets a class that means something else.
                    try program.updateAddresses(from: oldTables, to: slotTables, program: oldID)
                    id = oldID
                } else {
                    id = state.nextProgram
                    state.nextProgram += 1
                    try program.writePolicy(slotTables, program: id)
                    if let oldID, let oldTables { retired.append((oldTables, oldID)) }
                }
                binding.programs[slot] = id
            }
            if old?.programs != binding.programs {
                try program.setEndpoint(ifindex: ifindex, binding.entry)
            }
            if let previous = state.bindings[endpoint.endpoint], old == nil {
                if previous.ifindex != ifindex { try program.removeEndpoint(ifindex: previous.ifindex) }
                retired += previous.written
            }
            for (tables, id) in retired { try program.removePolicy(tables, program: id) }
            state.bindings[endpoint.endpoint] = binding
            wanted[endpoint.endpoint] = binding
            if adopt { report.append("programmed \(endpoint.endpoint) on \(interface)") }
        }
        for (key, old) in state.bindings where wanted[key] == nil {
            if !wanted.values.contains(where: { $0.ifindex == old.ifindex }) {
                try program.removeEndpoint(ifindex: old.ifindex)
            }
            for (tables, id) in old.written { try program.removePolicy(tables, program: id) }
            state.bindings[key] = nil
        }
        report += try syncHostEndpoints(ir, adopt: adopt, links: allLinks, existing: existing, state: &state)
        for key in state.unexpressible.keys where ir.endpoints[key] == nil { state.unexpressible[key] = nil }
        if adopt {
            // What no endpoint of `ir` uses: entries of vanished interfaces, tables of old program ids.
            let wantedIndexes = Set(wanted.values.map(\.ifindex)).union(state.hostAttached.keys)
            for ifindex in try program.endpointEntries().keys where !wantedIndexes.contains(ifindex) {
                try program.removeEndpoint(ifindex: ifindex)
                report.append("removed the endpoint entry of ifindex \(ifindex)")
            }
            let used = Set(
                wanted.values.flatMap(\.programs)
                    + state.hostBindings.values.flatMap {
                        [$0.ingress, $0.egress]
                    })
            let stale = try program.policyProgramIDs().subtracting(used)
            for id in stale.sorted() { try program.removePolicy(program: id) }
            if !stale.isEmpty { report.append("removed the tables of \(stale.count) unused policy programs") }
        }
        return report
    }

    /// Host endpoints: the program on both hooks of each host interface a host endpoint polices
    /// (`HostInterfaceAssignment`), its endpoint entry flagged host, one pair of tables per host
    /// endpoint whatever the number of its interfaces; `tabby_host_addrs` kept equal to the
    /// namespace's addresses. Interfaces no longer policed lose the filter and the entry. Returns
    /// what it changed (for reconcile's report).
    private func syncHostEndpoints(
        _ ir: PolicyIR, adopt: Bool, links: [Link], existing: [Int32: TCProgram.Endpoint], state: inout State
    ) throws -> [String] {
        let hosts = ir.endpoints.values.filter { $0.kind == .host }
        // A node without host endpoints, then and now, needs no address dump (most applies).
        if hosts.isEmpty && state.hostBindings.isEmpty && state.hostAttached.isEmpty && !adopt { return [] }
        var report: [String] = []
        let socket = try namespacePath.map { try RouteSocket.open(inNamespaceAt: $0) } ?? RouteSocket()
        let assigned = try socket.addresses()
        let interfaces = links.map { link in
            HostInterfaceAssignment.Interface(
                name: link.name, index: link.index,
                addresses: assigned.filter { $0.index == link.index }.map(\.address.address))
        }
        let assignment = HostInterfaceAssignment(
            hosts, interfaces: interfaces, workloadInterfacePrefix: configuration.workloadInterfacePrefix)
        state.hostUnattached = assignment.unattached
        let nameOf = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })

        // Addresses first: the program must know what is the host's before it polices anything.
        let v4 = assigned.compactMap { entry -> (address: IPv4Address, prefixLength: Int)? in
            guard case .v4(let address) = entry.address.address else { return nil }
            return (address, entry.address.prefixLength)
        }
        let hostAddresses = assignment.endpoints.isEmpty ? [] : HostInterfaceAssignment.hostAddresses(v4)
        if try program.setHostAddresses(hostAddresses), adopt {
            report.append("host addresses: \(hostAddresses.count)")
        }

        var wanted: [EndpointKey: HostBinding] = [:]
        for endpoint in hosts.sorted(by: { $0.endpoint < $1.endpoint }) {
            let indexes = assignment.interfaces(of: endpoint.endpoint)
            guard !indexes.isEmpty else { continue }
            let names = Dictionary(uniqueKeysWithValues: indexes.map { ($0, nameOf[$0] ?? "") })
            // The local side of its rules: its expectedIPs, else the addresses of its interfaces.
            var local = endpoint
            if local.addresses.isEmpty {
                local.addresses = interfaces.filter { names[$0.index] != nil }.flatMap(\.addresses)
            }
            let ingress: PolicyTables
            let egress: PolicyTables
            do throws(PolicyTableCompiler.Error) {
                (ingress, egress) = (
                    try PolicyTableCompiler.compile(local, direction: .ingress, in: ir),
                    try PolicyTableCompiler.compile(local, direction: .egress, in: ir)
                )
                state.unexpressible[endpoint.endpoint] = nil
            } catch {
                // Fail closed for this endpoint alone: everything but the failsafe ports drops.
                state.unexpressible[endpoint.endpoint] = "\(endpoint.endpoint): \(error)"
                (ingress, egress) = (PolicyTables(), PolicyTables())
            }
            let old = state.hostBindings[endpoint.endpoint]
            var binding = HostBinding(
                interfaces: names, ingress: 0, egress: 0, ingressTables: ingress, egressTables: egress)
            var retired: [(PolicyTables, UInt32)] = []
            for direction in [Direction.ingress, .egress] {
                let tables = direction == .ingress ? ingress : egress
                let oldID = old.map { direction == .ingress ? $0.ingress : $0.egress }
                let oldTables = old.map { direction == .ingress ? $0.ingressTables : $0.egressTables }
                // After a restart: what the entries of its interfaces name, if those tables are these.
                let found = Set(
                    indexes.compactMap { existing[$0] }.filter(\.isHost).map {
                        direction == .ingress ? $0.ingressProgram : $0.egressProgram
                    })
                var id: UInt32
                if let oldID, let oldTables, oldTables == tables,
                    try !adopt || program.readPolicy(oldID) == program.policyEntries(tables, program: oldID)
                {
                    id = oldID
                } else if old == nil, found.count == 1, let candidate = found.first,
                    try program.readPolicy(candidate) == program.policyEntries(tables, program: candidate)
                {
                    id = candidate
                } else {
                    id = state.nextProgram
                    state.nextProgram += 1
                    try program.writePolicy(tables, program: id)
                    if let oldID, let oldTables { retired.append((oldTables, oldID)) }
                }
                if direction == .ingress { binding.ingress = id } else { binding.egress = id }
            }
            let entry = TCProgram.Endpoint(ingressProgram: binding.ingress, egressProgram: binding.egress, isHost: true)
            for index in indexes {
                let name = names[index]!
                // The entry before the filter: a filter on an interface without an entry would drop
                // everything there, the host's own traffic (and SSH) included.
                if old?.interfaces[index] == nil || old?.ingress != binding.ingress || old?.egress != binding.egress
                    || (adopt && existing[index] != entry)
                {
                    try program.setEndpoint(ifindex: index, entry)
                }
                if state.hostAttached[index] != name || adopt {
                    let had = try TrafficControl.attachedProgramID(on: name, hook: .ingress, namespace: namespacePath)
                    for hook in TrafficControl.Hook.allCases {
                        try TrafficControl.attach(
                            hook == .ingress ? program.ingress : program.egress, to: name, hook: hook,
                            namespace: namespacePath)
                    }
                    if had == nil { report.append("attached to host interface \(name) for \(endpoint.endpoint)") }
                }
                state.hostAttached[index] = name
            }
            for (tables, id) in retired { try program.removePolicy(tables, program: id) }
            state.hostBindings[endpoint.endpoint] = binding
            wanted[endpoint.endpoint] = binding
        }

        // Interfaces no host endpoint polices any more: filter, then entry (the reverse would drop).
        let policed = Set(wanted.values.flatMap(\.interfaces.keys))
        for (index, name) in state.hostAttached where !policed.contains(index) {
            if nameOf[index] == name {
                _ = try Self.detachTabbyFilters(from: [name], namespacePath: namespacePath)
                report.append("detached from host interface \(name)")
            }
            try program.removeEndpoint(ifindex: index)
            state.hostAttached[index] = nil
        }
        for (key, old) in state.hostBindings where wanted[key] == nil {
            try program.removePolicy(old.ingressTables, program: old.ingress)
            try program.removePolicy(old.egressTables, program: old.egress)
            state.hostBindings[key] = nil
        }
        if adopt {
            // Filters an earlier run left on host interfaces that no host endpoint polices now.
            let prefix = configuration.workloadInterfacePrefix
            let others = Set(links.filter { !$0.name.hasPrefix(prefix) && !policed.contains($0.index) }.map(\.name))
            for name in try Self.detachTabbyFilters(from: others, namespacePath: namespacePath) {
                report.append("detached from host interface \(name)")
            }
        }
        return report
    }

    static func interfaces(in namespacePath: String?) throws -> [Link] {
        let socket = try namespacePath.map { try RouteSocket.open(inNamespaceAt: $0) } ?? RouteSocket()
        return try socket.links()
    }
}
