import Foundation
import TabbyCore
import TabbyDataplane
import TabbyIptables
import TabbyNetlink
import TabbyPolicy
import Testing

/// reconcile repairs what someone changed behind the backend's back (compared rule by rule, as
/// text); sweep removes what is Tabby's and not wanted (also the nftables backend's table and the
/// other iptables flavour's chains), and nothing else.
@Suite(
    "iptables reconcile and sweep",
    .enabled(if: geteuid() == 0, "creates a network namespace, iptables chains and ipsets: needs CAP_NET_ADMIN (root)"),
    .serialized)
struct IptablesReconcileTests {
    func run(_ namespace: String, _ command: [String], input: String = "") -> (Int32, String) {
        runInNamespace(namespace, command, input: input)
    }

    /// An IR with one policy, so that there are policy chains and an ipset to damage.
    static func ir() -> PolicyIR {
        let manifest = Manifest(
            text: """
                apiVersion: projectcalico.org/v3
                kind: WorkloadEndpoint
                metadata: {name: a, namespace: x, labels: {pod: a}}
                spec: {node: n, pod: a, interfaceName: cali0000000000a, ipNetworks: [10.0.0.1/32], profiles: [kns.x]}
                ---
                apiVersion: projectcalico.org/v3
                kind: WorkloadEndpoint
                metadata: {name: b, namespace: x, labels: {pod: b}}
                spec: {node: n, pod: b, interfaceName: cali0000000000b, ipNetworks: [10.0.0.2/32], profiles: [kns.x]}
                ---
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: db, namespace: x}
                spec:
                  selector: pod == 'a'
                  ingress:
                  - {action: Allow, protocol: TCP, source: {selector: pod == 'b'}, destination: {ports: [80]}}
                """, source: "test")
        var engine = PolicyEngine()
        _ = engine.apply(manifest.resources.compactMap(PolicyResource.init).map { .upsert($0) })
        return engine.ir
    }

    @Test(arguments: IptablesFlavour.allCases)
    func reconcileRepairsAFlushedChainAnEditedRuleAndMembers(flavour: IptablesFlavour) throws {
        let name = "tabby-t-iptrec-\(UUID().uuidString.prefix(6).lowercased())"
        let path = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let tool = "/usr/sbin/iptables-\(flavour.rawValue)"
        let dataplane = IptablesDataplane(runner: IptablesProcessRunner(flavour: flavour, namespacePath: path))
        let ir = Self.ir()
        // First start: nothing there, so everything is written.
        let first = try dataplane.reconcile(ir)
        #expect(first.contains("iptables -t filter: chain cali-FORWARD is missing"), "\(first)")
        // Unchanged: the kernel's text is exactly the compiled text, nothing to repair.
        #expect(try dataplane.reconcile(ir) == [])

        // Someone flushes cali-FORWARD: reconcile notices and repairs.
        #expect(run(path, [tool, "-F", "cali-FORWARD"]).0 == 0)
        let repaired = try dataplane.reconcile(ir)
        #expect(repaired == ["iptables -t filter: chain cali-FORWARD has 0 rules, want 8"])
        #expect(run(path, [tool + "-save", "-t", "filter"]).1.contains("-A cali-FORWARD -i cali+ -m comment"))

        // Someone replaces a rule in place, keeping its comment (same count, other text).
        let policy = IptablesCompiler.chainName(policy: PolicyID(namespace: "x", name: "db"), .ingress)
        let save = run(path, [tool + "-save", "-t", "filter"]).1
        let original = try #require(save.split(separator: "\n").first { $0.hasPrefix("-A \(policy) ") })
        let edited = original.replacingOccurrences(of: "--dports 80", with: "--dports 81")
        #expect(edited != original)
        let replaced = run(
            path,
            [tool, "-R", policy, "1"]
                + edited.dropFirst("-A \(policy) ".count).split(separator: " ").map {
                    String($0).replacingOccurrences(of: "\"", with: "")
                })
        #expect(replaced.0 == 0, "\(replaced.1)")
        let drift = try dataplane.reconcile(ir)
        #expect(drift.count == 1 && drift[0].hasPrefix("iptables -t filter: chain \(policy) rule 1 is "), "\(drift)")
        #expect(run(path, [tool + "-save", "-t", "filter"]).1.contains(String(original)))

        // Someone removes a member from a set and adds one: the set is repaired, element by element.
        let set = IptablesCompiler.setName(try #require(ir.ipSets.keys.first), .v4)
        #expect(run(path, ["/usr/sbin/ipset", "del", set, "10.0.0.2"]).0 == 0)
        #expect(run(path, ["/usr/sbin/ipset", "add", set, "10.9.9.9"]).0 == 0)
        #expect(try dataplane.reconcile(ir) == ["ipset \(set): 1 members missing, 1 not wanted"])
        let members = run(path, ["/usr/sbin/ipset", "list", set]).1
        #expect(members.contains("10.0.0.2") && !members.contains("10.9.9.9"), "\(members)")
        #expect(try dataplane.reconcile(ir) == [])
    }

    /// IPv6: an endpoint with an IPv6 address brings ip6tables tables and cali60 sets; what is
    /// written reads back as exactly the compiled text (no packets: the conformance lab is IPv4).
    @Test(arguments: IptablesFlavour.allCases)
    func ipv6RulesLoadAndReadBackUnchanged(flavour: IptablesFlavour) throws {
        let name = "tabby-t-ipt6-\(UUID().uuidString.prefix(6).lowercased())"
        let path = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let manifest = Manifest(
            text: """
                apiVersion: projectcalico.org/v3
                kind: WorkloadEndpoint
                metadata: {name: a, namespace: x, labels: {pod: a}}
                spec:
                  node: n
                  pod: a
                  interfaceName: cali0000000000a
                  ipNetworks: [10.0.0.1/32, "fd00:1::1/128"]
                  ports: [{name: web, protocol: TCP, port: 8080}]
                ---
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: v6, namespace: x}
                spec:
                  selector: all()
                  ingress:
                  - {action: Allow, protocol: ICMPv6, icmp: {type: 128, code: 0}}
                  - {action: Allow, protocol: TCP, source: {nets: ["fd00::/8", 10.0.0.0/8]}, destination: {ports: [web, 80]}}
                  - {action: Deny, source: {notNets: ["fd00:1::/64", "fd00:2::/64"]}}
                  - {action: Log, ipVersion: 6}
                """, source: "test")
        #expect(manifest.problems.isEmpty, "\(manifest.problems)")
        var engine = PolicyEngine()
        _ = engine.apply(manifest.resources.compactMap(PolicyResource.init).map { .upsert($0) })
        let dataplane = IptablesDataplane(runner: IptablesProcessRunner(flavour: flavour, namespacePath: path))
        #expect(try dataplane.reconcile(engine.ir).contains("ip6tables -t filter: chain cali-FORWARD is missing"))
        #expect(try dataplane.reconcile(engine.ir) == [])
        let saved = run(path, ["/usr/sbin/ip6tables-\(flavour.rawValue)-save", "-t", "filter"]).1
        #expect(saved.contains("-m icmp6 --icmpv6-type 128/0") && saved.contains("--match-set cali60p:"), "\(saved)")
        #expect(saved.contains("-m set ! --match-set cali60n:"), "two notNets become a set: \(saved)")
    }

    @Test func sweepRemovesTabbysLeftoversOnly() throws {
        let name = "tabby-t-iptswp-\(UUID().uuidString.prefix(6).lowercased())"
        let path = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let ir = Self.ir()
        // Leftovers: the legacy flavour's chains (a switch of flavours), a stale Tabby chain and
        // set, the nftables backend's table; and someone else's chain, rule and table.
        try IptablesDataplane(runner: IptablesProcessRunner(flavour: .legacy, namespacePath: path)).reconcile(ir)
        let nft = IptablesDataplane(runner: IptablesProcessRunner(flavour: .nft, namespacePath: path))
        _ = try nft.reconcile(ir)
        #expect(
            run(
                path, ["/usr/sbin/iptables-nft-restore", "--noflush"],
                input:
                    "*filter\n:cali-pi-stale - [0:0]\n:other - [0:0]\n-A other -j ACCEPT\n-A FORWARD -j other\nCOMMIT\n"
            ).0 == 0)
        #expect(run(path, ["/usr/sbin/ipset", "create", "cali40s:stale", "hash:net"]).0 == 0)
        #expect(run(path, ["/usr/sbin/ipset", "create", "someone-else", "hash:net"]).0 == 0)
        #expect(
            run(
                path, ["/usr/sbin/nft", "-f", "-"],
                input: "table inet tabby {\n chain c {\n }\n}\ntable ip mine {\n chain c {\n }\n}\n"
            ).0 == 0)

        try nft.sweep(keeping: ir)
        let saved = run(path, ["/usr/sbin/iptables-nft-save", "-t", "filter"]).1
        #expect(!saved.contains("cali-pi-stale"), "\(saved)")
        #expect(saved.contains("-A FORWARD -j other") && saved.contains(":other"), "not Tabby's, so it stays")
        #expect(saved.contains("-j cali-FORWARD"), "what is wanted stays")
        let legacy = run(path, ["/usr/sbin/iptables-legacy-save", "-t", "filter"]).1
        #expect(!legacy.contains("cali-"), "the legacy flavour's chains are gone: \(legacy)")
        let sets = run(path, ["/usr/sbin/ipset", "list", "-n"]).1
        #expect(!sets.contains("cali40s:stale") && sets.contains("someone-else"), "\(sets)")
        let tables = run(path, ["/usr/sbin/nft", "list", "tables"]).1
        #expect(!tables.contains("inet tabby") && tables.contains("table ip mine"), "\(tables)")
    }
}
