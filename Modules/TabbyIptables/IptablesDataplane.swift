import Foundation
import Synchronization
import TabbyCore
import TabbyDataplane
import TabbyPolicy

/// The iptables backend: compiles the IR to an `IptablesPlan` (Calico's chain layout, ipsets),
/// diffs it against the last plan applied (or, the first time, against what `iptables-save` and
/// `ipset save` show, so a restarted agent adopts its rules) and writes only what changed: one
/// `iptables-restore --noflush` per family for every changed table, and `ipset restore -exist`
/// before (sets, members added) and after (members removed, sets destroyed). A delta that only
/// changes IP set members becomes `ipset add`/`del` lines and nothing else.
public final class IptablesDataplane: Dataplane {
    public let name = "iptables"
    public let configuration: DataplaneConfiguration
    public let runner: any IptablesRunner

    struct State {
        /// What the kernel holds of Tabby's, as far as this backend knows (nil: read it back).
        var plan: IptablesPlan?
        var ir: PolicyIR?
        var nat = OutgoingNAT.none
        var applies = 0
        var lastApplySeconds: Double?
        var lastError: String?
    }
    // Mutex: the agent applies from one task, status may be read from another.
    private let state = Mutex(State())

    public init(runner: any IptablesRunner, configuration: DataplaneConfiguration = .calicoDefaults) {
        self.runner = runner
        self.configuration = configuration
    }

    /// The host's iptables (`flavour`, or as `IptablesFlavour.detect` finds it), in the network
    /// namespace at `namespacePath` (nil: the caller's).
    public convenience init(
        flavour: IptablesFlavour? = nil, namespacePath: String? = nil,
        configuration: DataplaneConfiguration = .calicoDefaults
    ) throws(DataplaneError) {
        var chosen = flavour
        if chosen == nil { chosen = try IptablesFlavour.detect() }
        self.init(
            runner: IptablesProcessRunner(flavour: chosen!, namespacePath: namespacePath), configuration: configuration)
    }

    /// The plan last applied (nil before the first apply).
    public var appliedPlan: IptablesPlan? { state.withLock { $0.plan } }

    public func apply(_ delta: PolicyDelta, resulting ir: PolicyIR) throws(DataplaneError) {
        let started = ContinuousClock.now
        let (known, nat) = state.withLock { state in
            let plan = state.plan
            // Taken out while applying: after a failure the next apply reads the kernel back.
            state.plan = nil
            return (plan, state.nat)
        }
        var new: IptablesPlan
        do {
            if Self.onlyMembersChanged(delta), var plan = known {
                let lines = Self.memberChanges(delta, ir: ir, plan: &plan)
                if !lines.isEmpty { try runner.ipsetRestore(lines.joined(separator: "\n") + "\n") }
                new = plan
            } else {
                new = IptablesCompiler.compile(ir, configuration: configuration, nat: nat)
                let old: IptablesPlan
                if let known { old = known } else { old = try readBack() }
                try run(IptablesUpdate.between(old, new))
            }
        } catch {
            state.withLock { $0.lastError = error.description }
            throw error
        }
        let elapsed = ContinuousClock.now - started
        state.withLock {
            $0.plan = new
            $0.ir = ir
            $0.applies += 1
            $0.lastApplySeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            $0.lastError = nil
        }
    }

    static func onlyMembersChanged(_ delta: PolicyDelta) -> Bool {
        var rest = delta
        rest.ipSetMembersAdded = [:]
        rest.ipSetMembersRemoved = [:]
        return rest.isEmpty
    }

    /// `ipset restore` lines for a member-only delta, applied to `plan` too. Host addresses (the
    /// common case: pods joining and leaving) come straight from the delta; other changes
    /// recompute the touched set.
    static func memberChanges(_ delta: PolicyDelta, ir: PolicyIR, plan: inout IptablesPlan) -> [String] {
        var additions: [String] = []
        var removals: [String] = []
        for id in Set(delta.ipSetMembersAdded.keys).union(delta.ipSetMembersRemoved.keys).sorted() {
            guard let set = ir.ipSets[id] else { continue }
            let changes =
                (delta.ipSetMembersAdded[id] ?? []).map { ($0, true) }
                + (delta.ipSetMembersRemoved[id] ?? []).map { ($0, false) }
            let direct =
                set.definition.namedPort == nil
                && changes.allSatisfy { member, _ in
                    if case .net(let cidr) = member { return cidr.prefixLength > 0 }
                    return false
                }
            if direct {
                for (member, adding) in changes {
                    guard case .net(let cidr) = member else { continue }
                    let name = IptablesCompiler.setName(id, cidr.family)
                    guard plan.sets[name] != nil else { continue }
                    let element = cidr.description
                    if adding, plan.sets[name]!.elements.insert(element).inserted {
                        additions.append("add \(name) \(element)")
                    } else if !adding, plan.sets[name]!.elements.remove(element) != nil {
                        removals.append("del \(name) \(element)")
                    }
                }
                continue
            }
            for family in [IPFamily.v4, .v6] {
                let (name, wanted) = IptablesCompiler.set(for: set, family: family)
                guard let before = plan.sets[name] else { continue }
                additions += wanted.elements.subtracting(before.elements).sorted().map { "add \(name) \($0)" }
                removals += before.elements.subtracting(wanted.elements).sorted().map { "del \(name) \($0)" }
                plan.sets[name] = wanted
            }
        }
        return additions + removals
    }

    /// Runs an update in its order: sets and new members, the rules, then what no rule needs.
    func run(_ update: IptablesUpdate) throws(DataplaneError) {
        if !update.ipsetBefore.isEmpty { try runner.ipsetRestore(update.ipsetBefore.joined(separator: "\n") + "\n") }
        for family in [IPFamily.v4, .v6] {
            if let input = update.restores[family] { try runner.restore(family, input) }
        }
        if !update.ipsetAfter.isEmpty { try runner.ipsetRestore(update.ipsetAfter.joined(separator: "\n") + "\n") }
    }

    /// Tabby's chains, hooks and sets as the kernel holds them (both families, filter and nat).
    func readBack(runner: (any IptablesRunner)? = nil, sets: Bool = true) throws(DataplaneError) -> IptablesPlan {
        let runner = runner ?? self.runner
        var plan = IptablesPlan()
        for family in [IPFamily.v4, .v6] {
            for table in ["filter", "nat"] {
                let found = IptablesSaveParser.table(try runner.save(family, table: table))
                if !found.chains.isEmpty || !found.hooks.isEmpty { plan.tables[IptablesTableID(family, table)] = found }
            }
        }
        if sets { plan.sets = IptablesSaveParser.sets(try runner.ipsetSave()) }
        return plan
    }

    public func setOutgoingNAT(_ nat: OutgoingNAT) throws(DataplaneError) {
        let (old, ir, changed) = state.withLock { state -> (IptablesPlan?, PolicyIR?, Bool) in
            let changed = state.nat != nat
            state.nat = nat
            return (state.plan, state.ir, changed)
        }
        // Before the first apply this only records the setting.
        guard changed, let old, let ir else { return }
        let new = IptablesCompiler.compile(ir, configuration: configuration, nat: nat)
        state.withLock { $0.plan = nil }
        try run(IptablesUpdate.between(old, new))
        state.withLock { $0.plan = new }
    }

    /// Reads Tabby's chains (every rule's text), hooks and sets back, reports how they differ
    /// from what `ir` wants, and rewrites only what differs (also removing chains and sets of
    /// Tabby's that are not wanted).
    public func reconcile(_ ir: PolicyIR) throws(DataplaneError) -> [String] {
        let wanted = IptablesCompiler.compile(ir, configuration: configuration, nat: state.withLock { $0.nat })
        let found = try readBack()
        let drift = Self.differences(found: found, wanted: wanted)
        if !drift.isEmpty { try run(IptablesUpdate.between(found, wanted)) }
        state.withLock {
            $0.plan = wanted
            $0.ir = ir
        }
        return drift
    }

    /// Removes what is Tabby's and not wanted: chains, hooks and sets of this flavour (as
    /// reconcile does), the chains and hooks the other flavour holds (a switch from legacy to
    /// nft or back), and the nftables backend's tables (`inet tabby`).
    public func sweep(keeping ir: PolicyIR) throws(DataplaneError) {
        _ = try runner.deleteNftablesTables()
        if let process = runner as? IptablesProcessRunner {
            let other = IptablesProcessRunner(flavour: process.flavour.other, namespacePath: process.namespacePath)
            if FileManager.default.isExecutableFile(atPath: other.flavour.tool(.v4, "restore")) {
                let leftovers = try readBack(runner: other, sets: false)
                for (family, input) in IptablesUpdate.between(leftovers, IptablesPlan()).restores {
                    try other.restore(family, input)
                }
            }
        }
        _ = try reconcile(ir)
    }

    /// Removes every chain, hook and set of Tabby's in this flavour, wanted or not (leaving a
    /// node, switching to another dataplane, benchmarks). The next apply starts from scratch.
    /// Whether the kernel holds any of Tabby's chains, hooks or sets (in this flavour).
    public func hasTabbyState() throws(DataplaneError) -> Bool {
        let plan = try readBack()
        return !plan.tables.isEmpty || !plan.sets.isEmpty
    }

    public func removeEverything() throws(DataplaneError) {
        state.withLock { $0.plan = nil }
        try run(IptablesUpdate.between(try readBack(), IptablesPlan()))
    }

    public func status() -> DataplaneStatus {
        state.withLock { state in
            DataplaneStatus(
                healthy: state.lastError == nil,
                detail: state.lastError
                    ?? "iptables (\(runner.flavour.rawValue)), chains cali-*, ipsets cali40*/cali60*",
                applies: state.applies, lastApplySeconds: state.lastApplySeconds)
        }
    }

    /// How the kernel's state differs from the wanted one, rule text by rule text.
    static func differences(found: IptablesPlan, wanted: IptablesPlan) -> [String] {
        var drift: [String] = []
        for id in Set(found.tables.keys).union(wanted.tables.keys).sorted() {
            let have = found.tables[id] ?? IptablesTable()
            let want = wanted.tables[id] ?? IptablesTable()
            for (name, rules) in want.chains.sorted(by: { $0.key < $1.key }) {
                guard let present = have.chains[name] else {
                    drift.append("\(id): chain \(name) is missing")
                    continue
                }
                guard present != rules else { continue }
                if let index = present.indices.first(where: { $0 < rules.count && present[$0] != rules[$0] }) {
                    drift.append(
                        "\(id): chain \(name) rule \(index + 1) is \"\(present[index])\", want \"\(rules[index])\"")
                } else {
                    drift.append("\(id): chain \(name) has \(present.count) rules, want \(rules.count)")
                }
            }
            for name in have.chains.keys.sorted() where want.chains[name] == nil {
                drift.append("\(id): chain \(name) is not wanted")
            }
            for chain in Set(have.hooks.keys).union(want.hooks.keys).sorted()
            where (have.hooks[chain] ?? []) != (want.hooks[chain] ?? []) {
                drift.append(
                    "\(id): \(chain) has \((have.hooks[chain] ?? []).count) jumps to Tabby's chains, want \((want.hooks[chain] ?? []).count)"
                )
            }
        }
        for (name, set) in wanted.sets.sorted(by: { $0.key < $1.key }) {
            guard let present = found.sets[name] else {
                drift.append("ipset \(name) is missing")
                continue
            }
            let missing = set.elements.subtracting(present.elements).count
            let extra = present.elements.subtracting(set.elements).count
            if missing > 0 || extra > 0 {
                drift.append("ipset \(name): \(missing) members missing, \(extra) not wanted")
            }
        }
        for name in found.sets.keys.sorted() where wanted.sets[name] == nil {
            drift.append("ipset \(name) is not wanted")
        }
        return drift
    }
}
