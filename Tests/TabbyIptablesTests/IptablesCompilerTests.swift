import Foundation
import TabbyCore
import TabbyDataplane
import TabbyPolicy
import TabbyTestSupport
import Testing

@testable import TabbyIptables

/// Records what the backend would run, and answers reads with canned kernel state.
final class RecordingRunner: IptablesRunner, @unchecked Sendable {
    // @unchecked: tests call from one task.
    let flavour = IptablesFlavour.nft
    var restores: [(IPFamily, String)] = []
    var ipsetInputs: [String] = []
    /// `iptables-save -t <table>` output by family and table (empty: nothing of Tabby's).
    var saved: [IptablesTableID: String] = [:]
    var ipsetSaved = ""

    func restore(_ family: IPFamily, _ input: String) throws(DataplaneError) { restores.append((family, input)) }
    func save(_ family: IPFamily, table: String) throws(DataplaneError) -> String {
        saved[IptablesTableID(family, table)] ?? ""
    }
    func ipsetRestore(_ input: String) throws(DataplaneError) { ipsetInputs.append(input) }
    func ipsetSave() throws(DataplaneError) -> String { ipsetSaved }
    func deleteNftablesTables() throws(DataplaneError) -> [String] { [] }
}

@Suite("iptables compiler")
struct IptablesCompilerTests {
    static let policyChain = IptablesCompiler.chainName(policy: PolicyID(namespace: "x", name: "db"), .ingress)

    @Test func theSampleBecomesCalicosLayout() throws {
        let ir = SamplePolicy.ir()
        let plan = IptablesCompiler.compile(ir)
        #expect(Array(plan.tables.keys) == [IptablesTableID(.v4, "filter")], "no IPv6 endpoint, no NAT")
        let filter = try #require(plan.tables[IptablesTableID(.v4, "filter")])
        func rules(_ chain: String) -> [String] {
            (filter.chains[chain] ?? []).map { $0.replacing(#/-m comment --comment "cali:[0-9a-f]{16}" /#, with: "") }
        }
        #expect(
            rules("cali-FORWARD") == [
                "-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-i cali+ -m conntrack --ctstate INVALID -j DROP",
                "-o cali+ -m conntrack --ctstate INVALID -j DROP",
                "-i cali+ -j cali-from-wl-dispatch",
                "-o cali+ -j cali-to-wl-dispatch",
                "-i cali+ -j ACCEPT",
                "-o cali+ -j ACCEPT",
            ])
        #expect(
            rules("cali-from-wl-dispatch") == [
                "-i cali0000000000a -g cali-fw-cali0000000000a",
                "-i cali0000000000b -g cali-fw-cali0000000000b",
                "-j DROP",
            ])
        #expect(
            rules("cali-tw-cali0000000000a") == [
                "-j MARK --set-xmark 0x0/0x30000",
                "-j MARK --set-xmark 0x0/0x20000",
                "-m mark --mark 0x0/0x30000 -j \(Self.policyChain)",
                "-m mark --mark 0x10000/0x10000 -j RETURN",
                "-m mark --mark 0x0/0x20000 -j DROP",
                "-j MARK --set-xmark 0x0/0x20000",
                "-j \(IptablesCompiler.chainName(profile: "kns.x", .ingress))",
                "-m mark --mark 0x10000/0x10000 -j RETURN",
                "-j DROP",
            ])
        let set = try #require(ir.ipSets.keys.first)
        let v4 = IptablesCompiler.setName(set, .v4)
        #expect(v4.hasPrefix("cali40s:") && v4.count == 24)
        #expect(
            rules(Self.policyChain) == [
                "-p tcp -m set --match-set \(v4) src -m multiport --dports 80,8000:8080 -j MARK --set-xmark 0x10000/0x10000",
                "-m mark --mark 0x10000/0x10000 -j RETURN",
                "-s 192.168.0.0/16 -j DROP",
            ])
        #expect(plan.sets[v4] == Ipset(kind: .net, family: .v4, elements: ["10.0.0.2/32"]))
        #expect(
            rules("cali-INPUT").suffix(2) == ["-i cali+ -j DROP", "! -i cali+ -j cali-failsafe-in"],
            "workloads to host: Drop (Calico's default)")
        #expect(rules("cali-failsafe-in").first == "-p tcp -m tcp --dport 22 -j ACCEPT")
        #expect(filter.hooks["FORWARD"]?.count == 1 && filter.hooks["FORWARD"]?[0].hasSuffix("-j cali-FORWARD") == true)
        // Every rule carries its hash; names within iptables' and ipset's limits.
        for (name, chain) in filter.chains {
            #expect(name.count <= 28, "\(name)")
            #expect(chain.allSatisfy { $0.contains("-m comment --comment \"cali:") }, "\(name)")
        }
        #expect(plan.sets.keys.allSatisfy { $0.count <= 31 })
    }

    /// The exact first restore input for the sample: what `iptables-restore --noflush` gets.
    @Test func theFirstApplyWritesOneRestorePerFamilyAndTheSets() throws {
        let runner = RecordingRunner()
        let dataplane = IptablesDataplane(runner: runner)
        let ir = SamplePolicy.ir()
        try dataplane.apply(PolicyDelta.between(PolicyIR(), ir), resulting: ir)
        #expect(runner.restores.count == 1 && runner.restores.first?.0 == .v4)
        let text = try #require(runner.restores.first?.1)
        let expected = try String(
            contentsOf: Bundle.module.url(forResource: "sample-restore", withExtension: "txt")!, encoding: .utf8)
        if text != expected, let out = ProcessInfo.processInfo.environment["TABBY_IPTABLES_RESTORE_OUT"] {
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        }
        #expect(text == expected)
        let set = IptablesCompiler.setName(try #require(ir.ipSets.keys.first), .v4)
        #expect(
            runner.ipsetInputs == [
                "create \(set) hash:net family inet hashsize 1024 maxelem 1048576\nadd \(set) 10.0.0.2/32\n"
            ])
        // Nothing changed: nothing runs.
        try dataplane.apply(PolicyDelta(), resulting: ir)
        #expect(runner.restores.count == 1 && runner.ipsetInputs.count == 1)
    }

    /// A change of set members runs `ipset restore` with those members, and no iptables-restore.
    @Test func aMemberChangeTouchesOnlyTheIpset() throws {
        let runner = RecordingRunner()
        let dataplane = IptablesDataplane(runner: runner)
        var engine = PolicyEngine()
        try dataplane.apply(engine.apply(SamplePolicy.updates), resulting: engine.ir)
        var nets = NetworkSetSpec()
        nets.nets = ["192.0.2.0/24", "0.0.0.0/0"]
        let join = engine.apply([
            .upsert(
                .networkSet(
                    NetworkSet(metadata: ObjectMeta(name: "more-b", namespace: "x", labels: ["pod": "b"]), spec: nets)))
        ])
        #expect(join.ipSetMembersAdded.count == 1 && join.policiesReplaced.isEmpty && join.endpointsBound.isEmpty)
        try dataplane.apply(join, resulting: engine.ir)
        let set = IptablesCompiler.setName(try #require(engine.ir.ipSets.keys.first), .v4)
        #expect(runner.restores.count == 1, "no iptables-restore for a member change")
        #expect(
            runner.ipsetInputs.last
                == "add \(set) 0.0.0.0/1\nadd \(set) 128.0.0.0/1\nadd \(set) 192.0.2.0/24\n",
            "a /0 is stored as its halves (hash:net refuses /0)")
        // b leaves the set (relabelled): one del.
        var spec = WorkloadEndpointSpec()
        spec.node = "n"
        spec.pod = "b"
        spec.interfaceName = "cali0000000000b"
        spec.ipNetworks = ["10.0.0.2/32"]
        spec.profiles = ["kns.x"]
        let leave = engine.apply([
            .upsert(
                .workloadEndpoint(
                    WorkloadEndpoint(metadata: ObjectMeta(name: "b", namespace: "x", labels: ["pod": "c"]), spec: spec))
            )
        ])
        try dataplane.apply(leave, resulting: engine.ir)
        #expect(runner.ipsetInputs.last == "del \(set) 10.0.0.2/32\n")
        #expect(dataplane.appliedPlan?.sets == IptablesCompiler.compile(engine.ir).sets)
    }

    /// A restarted agent reads the kernel back: when it already holds the plan, nothing runs.
    @Test func aRestartAdoptsWhatTheKernelHolds() throws {
        let ir = SamplePolicy.ir()
        let plan = IptablesCompiler.compile(ir)
        let runner = RecordingRunner()
        runner.saved[IptablesTableID(.v4, "filter")] = Self.save(plan.tables[IptablesTableID(.v4, "filter")]!)
        runner.ipsetSaved = plan.sets.map { name, set in
            "create \(name) \(set.kind.rawValue) family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1\n"
                + set.elements.map { "add \(name) \($0.replacingOccurrences(of: "/32", with: ""))\n" }.joined()
        }.joined()
        let dataplane = IptablesDataplane(runner: runner)
        #expect(try dataplane.reconcile(ir) == [])
        #expect(runner.restores.isEmpty && runner.ipsetInputs.isEmpty)

        // Someone edits a rule in place (same comment, other text) and deletes a chain's last rule.
        let policyRules = plan.tables[IptablesTableID(.v4, "filter")]!.chains[Self.policyChain]!
        var edited = plan.tables[IptablesTableID(.v4, "filter")]!
        edited.chains[Self.policyChain]![2] = policyRules[2].replacingOccurrences(
            of: "192.168.0.0/16", with: "192.168.0.0/24")
        edited.chains["cali-FORWARD"]!.removeLast()
        runner.saved[IptablesTableID(.v4, "filter")] = Self.save(edited)
        let drift = try dataplane.reconcile(ir)
        #expect(
            drift == [
                "iptables -t filter: chain cali-FORWARD has 7 rules, want 8",
                "iptables -t filter: chain \(Self.policyChain) rule 3 is \"\(edited.chains[Self.policyChain]![2])\", want \"\(policyRules[2])\"",
            ])
        // Exactly those two chains are rewritten.
        let restore = try #require(runner.restores.last?.1)
        #expect(restore.hasPrefix("*filter\n:cali-FORWARD - [0:0]\n:\(Self.policyChain) - [0:0]\n-A cali-FORWARD "))
        #expect(restore.split(separator: "\n").filter { $0.hasPrefix(":") }.count == 2)
    }

    /// `iptables-save` text for a table (hooks first, as the built-in chains come first).
    static func save(_ table: IptablesTable) -> String {
        var lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        lines += table.chains.keys.sorted().map { ":\($0) - [0:0]" }
        // Someone else's rule in FORWARD: not Tabby's, never read as such.
        lines.append("-A FORWARD -i eth9 -j ACCEPT")
        for (chain, rules) in table.hooks.sorted(by: { $0.key < $1.key }) {
            lines += rules.map { "-A \(chain) \($0)" }
        }
        for (chain, rules) in table.chains.sorted(by: { $0.key < $1.key }) {
            lines += rules.map { "-A \(chain) \($0)" }
        }
        lines.append("COMMIT")
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func removedChainsAreFlushedThenDeletedAfterTheirReferencesGo() throws {
        let ir = SamplePolicy.ir()
        var smaller = ir
        smaller.policies = [:]
        smaller.ipSets = [:]
        for key in smaller.endpoints.keys { smaller.endpoints[key]!.ingress = [] }
        let old = IptablesCompiler.compile(ir)
        let new = IptablesCompiler.compile(smaller)
        let update = IptablesUpdate.between(old, new)
        let text = try #require(update.restores[.v4])
        let lines = text.split(separator: "\n").map(String.init)
        let ingress = Self.policyChain
        let egress = IptablesCompiler.chainName(policy: PolicyID(namespace: "x", name: "db"), .egress)
        #expect(lines.first == "*filter" && lines.last == "COMMIT")
        #expect(lines.contains(":\(ingress) - [0:0]") && lines.contains(":cali-tw-cali0000000000a - [0:0]"))
        #expect(lines.suffix(3) == ["-X \(min(ingress, egress))", "-X \(max(ingress, egress))", "COMMIT"])
        #expect(update.ipsetAfter == ["destroy \(IptablesCompiler.setName(ir.ipSets.keys.first!, .v4))"])
        #expect(!lines.contains { $0.hasPrefix("-A cali-FORWARD") }, "unchanged chains are not rewritten")
    }

    @Test func manyEndpointsSplitTheDispatchIntoAPrefixTree() throws {
        var engine = PolicyEngine()
        let endpoints = (0..<40).map { index -> PolicyUpdate in
            var spec = WorkloadEndpointSpec()
            spec.node = "n"
            spec.pod = "p\(index)"
            // The first hex digit after "cali" is index / 16: 16, 16 and 8 interfaces.
            spec.interfaceName = "cali" + String(format: "%x%010x", index / 16, index)
            spec.ipNetworks = ["10.1.0.\(index + 1)/32"]
            return .upsert(
                .workloadEndpoint(WorkloadEndpoint(metadata: ObjectMeta(name: "p\(index)", namespace: "x"), spec: spec))
            )
        }
        _ = engine.apply(endpoints)
        let ir = engine.ir
        #expect(ir.endpoints.count == 40)
        let filter = try #require(IptablesCompiler.compile(ir).tables[IptablesTableID(.v4, "filter")])
        let root = try #require(filter.chains["cali-from-wl-dispatch"])
        // 40 interfaces by their first hex digit after "cali": 0, 1, 2 (16 + 16 + 8).
        #expect(root.count == 4, "\(root)")
        #expect(root[0].hasPrefix("-i cali0+ ") && root[0].hasSuffix("-g cali-from-wl-dispatch-0"))
        #expect(filter.chains["cali-from-wl-dispatch-0"]?.count == 16)
        #expect(filter.chains["cali-from-wl-dispatch-2"]?.count == 8)
        #expect(root.last?.hasSuffix("-j DROP") == true)
        #expect(filter.chains["cali-to-wl-dispatch-1"]?.first?.hasPrefix("-o cali1") == true)
    }

    @Test func outgoingNATMasqueradesFromNatPoolsToOutsideAllPools() throws {
        let nat = OutgoingNAT(
            natPools: [CIDR("10.65.0.0/16")!], allPools: [CIDR("10.65.0.0/16")!, CIDR("10.66.0.0/16")!])
        let plan = IptablesCompiler.compile(SamplePolicy.ir(), nat: nat)
        let table = try #require(plan.tables[IptablesTableID(.v4, "nat")])
        #expect(table.hooks["POSTROUTING"]?.first?.hasSuffix("-j cali-POSTROUTING") == true)
        #expect(
            table.chains["cali-nat-outgoing"]?.first?.hasSuffix(
                "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE"
            )
                == true)
        #expect(plan.sets["cali40all-ipam-pools"]?.elements == ["10.65.0.0/16", "10.66.0.0/16"])

        let runner = RecordingRunner()
        let dataplane = IptablesDataplane(runner: runner)
        let ir = SamplePolicy.ir()
        try dataplane.apply(PolicyDelta.between(PolicyIR(), ir), resulting: ir)
        try dataplane.setOutgoingNAT(nat)
        let restore = try #require(runner.restores.last?.1)
        #expect(restore.hasPrefix("*nat\n:cali-POSTROUTING - [0:0]\n:cali-nat-outgoing - [0:0]\n"))
        #expect(!restore.contains("*filter"), "the filter table did not change")
        try dataplane.setOutgoingNAT(nat)
        #expect(runner.restores.count == 2, "an unchanged setting runs nothing")
    }

    @Test func ipv6EndpointsAddIp6tablesAndCali60Sets() throws {
        var ir = SamplePolicy.ir()
        let key = try #require(ir.endpoints.keys.first { $0.name == "a" })
        ir.endpoints[key]!.addresses.append(IPAddress("fd00:1::1")!)
        let plan = IptablesCompiler.compile(ir)
        let filter6 = try #require(plan.tables[IptablesTableID(.v6, "filter")])
        // The deny of rule 1 has an IPv6 net: it is the only rule of its kind in ip6tables.
        let rules = try #require(filter6.chains[Self.policyChain])
        #expect(rules.last?.hasPrefix("-s fd00::/8 ") == true && rules.last?.hasSuffix("-j DROP") == true)
        #expect(rules.first?.contains("--match-set cali60s:") == true)
        #expect(plan.sets.keys.contains { $0.hasPrefix("cali60s:") })
    }

    @Test(arguments: [
        ("iptables v1.8.9 (nf_tables)", IptablesFlavour.nft), ("iptables v1.8.9 (legacy)", .legacy),
    ])
    func theFlavourFollowsIptablesV(output: String, flavour: IptablesFlavour) throws {
        #expect(IptablesFlavour.parse(version: output) == flavour)
        #expect(try IptablesFlavour.detect(environment: ["TABBY_IPTABLES_BACKEND": "legacy"]) == .legacy)
        #expect(throws: DataplaneError.self) {
            try IptablesFlavour.detect(environment: ["TABBY_IPTABLES_BACKEND": "x"])
        }
    }

    @Test func saveOutputIsReadAsTabbysOnly() {
        let table = IptablesSaveParser.table(
            """
            # Generated by iptables-nft-save v1.8.9 (nf_tables)
            *filter
            :FORWARD ACCEPT [0:0]
            :cali-pi-x - [0:0]
            :DOCKER - [0:0]
            -A FORWARD -j DOCKER
            -A FORWARD -m comment --comment "cali:abc" -j cali-FORWARD
            -A DOCKER -j cali-pi-x
            -A cali-pi-x -p gre -m comment --comment "cali:def" -j DROP
            COMMIT
            """)
        #expect(table.hooks == ["FORWARD": ["-m comment --comment \"cali:abc\" -j cali-FORWARD"]])
        #expect(table.chains == ["cali-pi-x": ["-p 47 -m comment --comment \"cali:def\" -j DROP"]])
        let sets = IptablesSaveParser.sets(
            """
            create cali40s:1 hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
            add cali40s:1 10.0.0.1
            add cali40s:1 10.0.0.0/8
            create other hash:net family inet hashsize 1024 maxelem 65536
            add other 10.0.0.1
            create cali60p:2 hash:ip,port family inet6 hashsize 1024 maxelem 1048576
            add cali60p:2 fd00::1,tcp:80
            """)
        #expect(
            sets == [
                "cali40s:1": Ipset(kind: .net, family: .v4, elements: ["10.0.0.1/32", "10.0.0.0/8"]),
                "cali60p:2": Ipset(kind: .addressPort, family: .v6, elements: ["fd00::1,tcp:80"]),
            ])
    }
}
