import Foundation
import Synchronization
import TabbyCore
import TabbyDataplane
import TabbyPolicy

/// Sends a list of changes to the kernel as one transaction, and reads Tabby's table back.
public protocol NftCommitter: Sendable {
    func commit(_ changes: [NftChange]) throws(DataplaneError)
    /// Chains (with their rule counts) and sets (with their element counts) of `inet tabby`;
    /// nil when the table does not exist.
    func readBack() throws(DataplaneError) -> NftKernelSummary?
    /// Deletes `inet tabby` if present.
    func deleteTable() throws(DataplaneError)
    /// Deletes nftables tables of Tabby's other than `inet tabby` (`ip tabby`, `ip6 tabby-*`, ...:
    /// what an older layout or another backend left); returns what it deleted.
    func deleteOtherTabbyTables() throws(DataplaneError) -> [String]
}

public struct NftKernelSummary: Sendable, Hashable {
    public var chainRuleCounts: [String: Int]
    public var setElementCounts: [String: Int]
    /// What the table holds, when the committer reads it back in full (netlink): each chain's rules
    /// (expressions and comment, handles cleared), each set's and verdict map's elements. nil:
    /// counts only (`nft -j` text).
    public var content: Content?

    public struct Content: Sendable, Hashable {
        public var rules: [String: [NftRule]]
        public var elements: [String: Set<NftSetElement>]
        public init(rules: [String: [NftRule]], elements: [String: Set<NftSetElement>]) {
            self.rules = rules
            self.elements = elements
        }
    }

    public init(chainRuleCounts: [String: Int], setElementCounts: [String: Int], content: Content? = nil) {
        self.chainRuleCounts = chainRuleCounts
        self.setElementCounts = setElementCounts
        self.content = content
    }
}

/// The nftables backend: compiles the IR to an `NftPlan`, diffs it against the last applied plan
/// and sends only the difference, in one transaction. A delta that changes nothing but IP set
/// members never recompiles chains: it becomes element additions and removals only.
public final class NftablesDataplane: Dataplane {
    public let name = "nftables"
    public let configuration: DataplaneConfiguration
    let committer: any NftCommitter

    struct State {
        var plan: NftPlan?
        /// The IR of the last apply or reconcile (what a NAT change recompiles against).
        var ir: PolicyIR?
        var nat = OutgoingNAT.none
        var applies = 0
        var lastApplySeconds: Double?
        var lastError: String?
    }
    // Mutex: the agent applies from one task, status may be read from another.
    private let state = Mutex(State())

    public init(committer: any NftCommitter, configuration: DataplaneConfiguration = .calicoDefaults) {
        self.committer = committer
        self.configuration = configuration
    }

    /// The plan last applied (nil before the first apply).
    public var appliedPlan: NftPlan? { state.withLock { $0.plan } }

    public func apply(_ delta: PolicyDelta, resulting ir: PolicyIR) throws(DataplaneError) {
        let started = ContinuousClock.now
        var new: NftPlan
        var changes: [NftChange]
        let memberOnly = Self.onlyMembersChanged(delta)
        // A member-only apply edits the plan in place: taken out of the state so that it is not
        // copied (a 10,000-element set would be), put back (or, after a failure, left out so the
        // next apply rewrites the table) below.
        var old = state.withLock { state -> NftPlan? in
            let plan = state.plan
            if memberOnly { state.plan = nil }
            return plan
        }
        if memberOnly, old != nil {
            // Only the touched sets are recomputed and diffed: chains and rules stay as they are.
            new = old!
            old = nil
            changes = []
            var removals: [NftChange] = []
            for id in Set(delta.ipSetMembersAdded.keys).union(delta.ipSetMembersRemoved.keys).sorted() {
                guard let set = ir.ipSets[id] else { continue }
                // The common case, host addresses (pods) joining or leaving: element edits from the
                // delta alone, without recomputing a set of 10,000 members.
                if let fast = Self.hostMemberChanges(
                    added: delta.ipSetMembersAdded[id] ?? [], removed: delta.ipSetMembersRemoved[id] ?? [], set: set,
                    plan: &new)
                {
                    changes += fast.additions
                    removals += fast.removals
                    continue
                }
                for (name, planSet) in NftCompiler.sets(for: set) {
                    let before = new.sets[name]?.elements ?? []
                    let added = planSet.elements.subtracting(before).sorted()
                    let removed = before.subtracting(planSet.elements).sorted()
                    if !added.isEmpty { changes.append(.addElements(set: name, added)) }
                    if !removed.isEmpty { removals.append(.deleteElements(set: name, removed)) }
                    new.sets[name] = planSet
                }
            }
            changes += removals
        } else {
            new = NftCompiler.compile(ir, configuration: configuration, nat: state.withLock { $0.nat })
            changes = NftChange.between(old, new)
        }
        do {
            if !changes.isEmpty { try committer.commit(changes) }
        } catch {
            state.withLock { $0.lastError = error.description }
            throw error
        }
        let elapsed = ContinuousClock.now - started
        state.withLock {
            $0.plan = new
            $0.ir = ir
            $0.applies += 1
            $0.lastApplySeconds =
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            $0.lastError = nil
        }
    }

    /// Element edits for a change of /32 and /128 members of a CIDR set, when no element of the
    /// set covers them (then the merged set is the old one plus or minus exactly these); nil
    /// otherwise (the caller recomputes the set).
    static func hostMemberChanges(
        added: Set<IPSetMember>, removed: Set<IPSetMember>, set: IPSet, plan: inout NftPlan
    ) -> (additions: [NftChange], removals: [NftChange])? {
        guard set.definition.namedPort == nil else { return nil }
        var edits: [String: (add: [String], remove: [String])] = [:]
        for (member, adding) in added.map({ ($0, true) }) + removed.map({ ($0, false) }) {
            guard case .net(let cidr) = member, cidr.prefixLength == cidr.network.bitWidth else { return nil }
            let family: NftFamily = cidr.family == .v4 ? .ipv4 : .ipv6
            let name = NftCompiler.setName(set.id, family)
            guard let elements = plan.sets[name]?.elements else { return nil }
            // Covered by a wider element: the merged set does not change by this member alone.
            for length in 0..<cidr.prefixLength
            where elements.contains(CIDR(network: cidr.network, prefixLength: length).description) {
                return nil
            }
            if adding {
                edits[name, default: ([], [])].add.append(cidr.description)
            } else {
                edits[name, default: ([], [])].remove.append(cidr.description)
            }
        }
        var additions: [NftChange] = []
        var removals: [NftChange] = []
        for (name, edit) in edits.sorted(by: { $0.key < $1.key }) {
            let before = plan.sets[name]!.elements
            let add = edit.add.filter { !before.contains($0) }.sorted()
            let remove = edit.remove.filter { before.contains($0) }.sorted()
            plan.sets[name]!.elements.formUnion(add)
            plan.sets[name]!.elements.subtract(remove)
            if !add.isEmpty { additions.append(.addElements(set: name, add)) }
            if !remove.isEmpty { removals.append(.deleteElements(set: name, remove)) }
        }
        return (additions, removals)
    }

    static func onlyMembersChanged(_ delta: PolicyDelta) -> Bool {
        var rest = delta
        rest.ipSetMembersAdded = [:]
        rest.ipSetMembersRemoved = [:]
        return rest.isEmpty
    }

    public func setOutgoingNAT(_ nat: OutgoingNAT) throws(DataplaneError) {
        let (old, ir, changed) = state.withLock { state -> (NftPlan?, PolicyIR?, Bool) in
            let changed = state.nat != nat
            state.nat = nat
            return (state.plan, state.ir, changed)
        }
        // Before the first apply this only records the setting.
        guard changed, let old, let ir else { return }
        let new = NftCompiler.compile(ir, configuration: configuration, nat: nat)
        let changes = NftChange.between(old, new)
        if !changes.isEmpty { try committer.commit(changes) }
        state.withLock { $0.plan = new }
    }

    public func reconcile(_ ir: PolicyIR) throws(DataplaneError) -> [String] {
        let wanted = NftCompiler.compile(ir, configuration: configuration, nat: state.withLock { $0.nat })
        var drift: [String] = []
        if let found = try committer.readBack() {
            for (name, chain) in wanted.chains where found.chainRuleCounts[name] != chain.rules.count {
                drift.append(
                    "chain \(name): \(found.chainRuleCounts[name].map { "\($0) rules" } ?? "missing"), want \(chain.rules.count)"
                )
            }
            for name in found.chainRuleCounts.keys where wanted.chains[name] == nil {
                drift.append("chain \(name) is not wanted")
            }
            for (name, set) in wanted.sets where found.setElementCounts[name] != set.elements.count {
                drift.append(
                    "set \(name): \(found.setElementCounts[name].map { "\($0) elements" } ?? "missing"), want \(set.elements.count)"
                )
            }
            // Same counts: compare what the rules and elements are (a rule or element changed in place).
            if drift.isEmpty, let content = found.content {
                drift += try NftNetlinkCommitter.differences(wanted, found: content)
            }
        } else {
            drift.append("table inet \(NftPlan.tableName) is missing")
        }
        if !drift.isEmpty { try committer.commit([.replaceTable(wanted)]) }
        // Matching or repaired, the kernel now holds `wanted`: later applies diff against it (a
        // restarted agent adopts its rules instead of rebuilding them).
        state.withLock {
            $0.plan = wanted
            $0.ir = ir
        }
        return drift.sorted()
    }

    public func sweep(keeping ir: PolicyIR) throws(DataplaneError) {
        _ = try committer.deleteOtherTabbyTables()
        // Everything of Tabby's lives in one table: an empty IR still keeps the table (its base
        // chains fail closed for unknown workloads), so sweeping means rewriting it to `ir`.
        let wanted = NftCompiler.compile(ir, configuration: configuration, nat: state.withLock { $0.nat })
        try committer.commit([.replaceTable(wanted)])
        state.withLock {
            $0.plan = wanted
            $0.ir = ir
        }
    }

    public func status() -> DataplaneStatus {
        state.withLock { state in
            DataplaneStatus(
                healthy: state.lastError == nil, detail: state.lastError ?? "nftables table inet \(NftPlan.tableName)",
                applies: state.applies, lastApplySeconds: state.lastApplySeconds)
        }
    }
}

/// Commits through `nft -f -` run inside a network namespace. Not the agent's path (that is
/// libnftnl over netlink, with no process per apply): this is the reference the benchmarks
/// compare against and what the conformance tests can cross-check with.
public struct NftScriptCommitter: NftCommitter {
    public let namespacePath: String?

    public init(namespacePath: String?) {
        self.namespacePath = namespacePath
    }

    func run(_ arguments: [String], input: String) throws(DataplaneError) -> String {
        let process = Process()
        var command = ["/usr/sbin/nft"] + arguments
        if let namespacePath { command = ["/usr/bin/nsenter", "--net=\(namespacePath)"] + command }
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        do {
            try process.run()
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        } catch {
            throw .kernel("nft \(arguments.joined(separator: " ")): cannot run: \(error)")
        }
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw .kernel("nft \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }

    public func commit(_ changes: [NftChange]) throws(DataplaneError) {
        _ = try run(["-f", "-"], input: changes.map(\.nftText).joined())
    }

    public func deleteOtherTabbyTables() throws(DataplaneError) -> [String] {
        var deleted: [String] = []
        for line in try run(["list", "tables"], input: "").split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count == 3, words[2].hasPrefix("tabby"), !(words[1] == "inet" && words[2] == "tabby") else {
                continue
            }
            _ = try run(["delete", "table", String(words[1]), String(words[2])], input: "")
            deleted.append("\(words[1]) \(words[2])")
        }
        return deleted
    }

    public func deleteTable() throws(DataplaneError) {
        _ = try run(
            ["-f", "-"], input: "add table inet \(NftPlan.tableName)\ndelete table inet \(NftPlan.tableName)\n")
    }

    public func readBack() throws(DataplaneError) -> NftKernelSummary? {
        let text: String
        do {
            text = try run(["-j", "list", "table", "inet", NftPlan.tableName], input: "")
        } catch {
            if error.description.contains("No such file or directory") { return nil }
            throw error
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let items = object["nftables"] as? [[String: Any]]
        else { throw .kernel("nft -j list table: unreadable output") }
        var chains: [String: Int] = [:]
        var sets: [String: Int] = [:]
        for item in items {
            if let chain = item["chain"] as? [String: Any], let name = chain["name"] as? String {
                chains[name, default: 0] += 0
            } else if let rule = item["rule"] as? [String: Any], let chain = rule["chain"] as? String {
                chains[chain, default: 0] += 1
            } else if let set = item["set"] as? [String: Any], let name = set["name"] as? String {
                sets[name] = (set["elem"] as? [Any])?.count ?? 0
            }
        }
        return NftKernelSummary(chainRuleCounts: chains, setElementCounts: sets)
    }
}
