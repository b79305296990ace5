import Foundation
import Glibc
import Testing

@testable import TabbyNftables

/// Real-kernel tests. Each test creates its own `tabby-t-nft-*` namespaces and deletes them on exit;
/// nothing touches the root namespace.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs CAP_NET_ADMIN to create network namespaces"))
struct NftablesKernelTests {
    @Test func committedBatchIsWhatNftLists() throws {
        let namespace = try TestNamespace("list")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        try socket.commit(SampleRuleset.batch)

        print(try namespace.exec(["nft", "list", "ruleset"]).output)
        let ruleset = try namespace.ruleset()
        let tables = objects("table", in: ruleset)
        #expect(tables.count == 1)
        #expect(tables.first?["family"] as? String == "inet")
        #expect(tables.first?["name"] as? String == "tabby")

        let chains = Dictionary(uniqueKeysWithValues: objects("chain", in: ruleset).map { ($0["name"] as! String, $0) })
        #expect(Set(chains.keys) == ["forward", "from-a"])
        #expect(chains["forward"]?["hook"] as? String == "forward")
        #expect(chains["forward"]?["prio"] as? Int == 0)
        #expect(chains["forward"]?["policy"] as? String == "accept")
        #expect(chains["forward"]?["type"] as? String == "filter")
        #expect(chains["from-a"]?["hook"] == nil)

        let sets = objects("set", in: ruleset)
        #expect(sets.count == 1)
        let cidrs = try #require(sets.first)
        #expect(cidrs["name"] as? String == "cidrs")
        #expect(cidrs["type"] as? String == "ipv4_addr")
        #expect(cidrs["flags"] as? [String] == ["interval"])
        let prefixes = (cidrs["elem"] as? [[String: Any]] ?? []).compactMap { $0["prefix"] as? [String: Any] }
            .map { "\($0["addr"]!)/\($0["len"]!)" }
        #expect(prefixes.sorted() == ["10.1.0.0/16", "192.168.5.0/24"])

        let maps = objects("map", in: ruleset)
        let dispatch = try #require(maps.first)
        #expect(dispatch["name"] as? String == "dispatch")
        #expect(dispatch["type"] as? String == "ifname")
        #expect(dispatch["map"] as? String == "verdict")
        let element = try #require((dispatch["elem"] as? [[Any]])?.first)
        #expect(element[0] as? String == "veth-a")
        #expect(((element[1] as? [String: Any])?["jump"] as? [String: Any])?["target"] as? String == "from-a")

        let rules = objects("rule", in: ruleset)
        #expect(rules.map { $0["comment"] as? String } == ["tabby:est", "tabby:dispatch", "tabby:web"])
        let text = try namespace.exec(["nft", "list", "ruleset"]).output
        #expect(text.contains("ct state established,related accept comment \"tabby:est\""))
        #expect(text.contains("iifname vmap @dispatch comment \"tabby:dispatch\""))
        #expect(text.contains("ip saddr @cidrs tcp dport 80 accept comment \"tabby:web\""))
    }

    @Test func readBackMatchesWhatWasCommitted() throws {
        let namespace = try TestNamespace("read")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        try socket.commit(SampleRuleset.batch)

        let tables = try socket.tables()
        #expect(tables.map { NftTable(family: $0.family, name: $0.name, flags: $0.flags) } == [SampleRuleset.table])

        var chains = try socket.chains(table: "tabby")
        for index in chains.indices { chains[index].handle = nil }
        #expect(Set(chains) == [SampleRuleset.forward, SampleRuleset.fromA])

        var sets = try socket.sets(table: "tabby")
        for index in sets.indices { sets[index].handle = nil }
        #expect(Set(sets) == [SampleRuleset.cidrs, SampleRuleset.dispatch])

        #expect(Set(try socket.elements(of: SampleRuleset.cidrs)) == Set(SampleRuleset.cidrElements))
        #expect(try socket.elements(of: SampleRuleset.dispatch) == SampleRuleset.dispatchElements)

        let forward = try socket.rules(table: "tabby", chain: "forward")
        #expect(forward.allSatisfy { $0.handle != nil })
        #expect(forward.map { withoutHandle($0) } == [SampleRuleset.established, SampleRuleset.dispatchRule])
        let fromA = try socket.rules(table: "tabby", chain: "from-a")
        #expect(fromA.map { withoutHandle($0) } == [SampleRuleset.web])
    }

    @Test func oneElementUpdateLeavesChainsAndRulesAlone() throws {
        let namespace = try TestNamespace("elem")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        try socket.commit(SampleRuleset.batch)
        let chainsBefore = try socket.chains(table: "tabby")
        let rulesBefore =
            try socket.rules(table: "tabby", chain: "forward") + socket.rules(table: "tabby", chain: "from-a")

        let extra = NftSetElement.ipv4("10.9.8.0/24")!
        var add = NftBatch()
        add.addElements([extra], to: SampleRuleset.cidrs)
        try socket.commit(add)
        #expect(Set(try socket.elements(of: SampleRuleset.cidrs)) == Set(SampleRuleset.cidrElements + [extra]))
        #expect(try namespace.exec(["nft", "list", "set", "inet", "tabby", "cidrs"]).output.contains("10.9.8.0/24"))

        var remove = NftBatch()
        remove.deleteElements([extra], from: SampleRuleset.cidrs)
        try socket.commit(remove)
        #expect(Set(try socket.elements(of: SampleRuleset.cidrs)) == Set(SampleRuleset.cidrElements))

        #expect(try socket.chains(table: "tabby") == chainsBefore)
        let rulesAfter =
            try socket.rules(table: "tabby", chain: "forward") + socket.rules(table: "tabby", chain: "from-a")
        #expect(rulesAfter == rulesBefore)
        #expect(rulesAfter.compactMap(\.handle) == rulesBefore.compactMap(\.handle))
    }

    @Test func failingBatchIsAtomicAndNamesTheRule() throws {
        let namespace = try TestNamespace("atomic")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        try socket.commit(SampleRuleset.batch)
        let before = try namespace.exec(["nft", "list", "ruleset"]).output

        var batch = NftBatch()
        let newChain = NftChain(table: "tabby", name: "from-b")
        batch.add(newChain)
        batch.addElements([NftSetElement.ipv4("10.2.0.0/16")!], to: SampleRuleset.cidrs)
        batch.add(NftRule(table: "tabby", chain: "from-b", comment: "tabby:ok", [.verdict(.accept)]))
        batch.add(NftRule(table: "tabby", chain: "forward", comment: "tabby:broken", [.verdict(.jump("missing"))]))
        #expect {
            try socket.commit(batch)
        } throws: { error in
            guard case Nft.Error.kernel(let code, let request) = error else { return false }
            print("deliberate failure reported as: \(error)")
            return code == ENOENT && request.contains("NFT_MSG_NEWRULE") && request.contains("tabby:broken")
                && request.contains("jump missing")
        }
        #expect(try namespace.exec(["nft", "list", "ruleset"]).output == before)
        #expect(!(try socket.chains(table: "tabby").contains { $0.name == "from-b" }))
    }

    @Test func destroyAndDeleteTable() throws {
        let namespace = try TestNamespace("del")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        var destroyMissing = NftBatch()
        destroyMissing.delete(table: SampleRuleset.table, ifExists: true)
        try socket.commit(destroyMissing)
        try socket.commit(SampleRuleset.batch)
        var delete = NftBatch()
        delete.delete(table: SampleRuleset.table)
        try socket.commit(delete)
        #expect(try socket.tables().isEmpty)
        #expect(throws: Nft.Error.kernel(errno: ENOENT, request: "NFT_MSG_DELTABLE inet tabby")) {
            try socket.commit(delete)
        }
    }

    @Test func rulesByHandleAndConcatenatedSets() throws {
        let namespace = try TestNamespace("handles")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        try socket.commit(SampleRuleset.batch)
        let chain = SampleRuleset.fromA
        let original = try #require(try socket.rules(table: "tabby", chain: "from-a").first)

        var edits = NftBatch()
        var replacement = NftRule(
            table: "tabby", chain: "from-a", comment: "tabby:web2", .match(.tcpDport(8080)), .verdict(.accept))
        replacement.handle = original.handle
        edits.replace(replacement)
        edits.add(NftRule(table: "tabby", chain: "from-a", comment: "tabby:first", .verdict(.continue)), at: .prepend)
        edits.add(NftRule(table: "tabby", chain: "from-a", comment: "tabby:last", .verdict(.drop)))
        try socket.commit(edits)
        let rules = try socket.rules(table: "tabby", chain: "from-a")
        #expect(rules.map(\.comment) == ["tabby:first", "tabby:web2", "tabby:last"])
        #expect(rules[1].handle == original.handle)
        #expect(rules[1].expressions == replacement.expressions)

        var delete = NftBatch()
        delete.deleteRule(table: "tabby", chain: "from-a", handle: rules[0].handle!)
        try socket.commit(delete)
        #expect(try socket.rules(table: "tabby", chain: "from-a").map(\.comment) == ["tabby:web2", "tabby:last"])

        var flush = NftBatch()
        flush.flush(chain: chain)
        try socket.commit(flush)
        #expect(try socket.rules(table: "tabby", chain: "from-a").isEmpty)

        let namedPorts = NftSet(table: "tabby", name: "named-ports", keyType: [.ipv4Addr, .inetProto, .inetService])
        let member = NftSetElement(.concat([.address([10, 0, 0, 1]), .inetProto(6), .inetService(443)]))
        var concat = NftBatch()
        concat.add(namedPorts)
        concat.addElements([member], to: namedPorts)
        try socket.commit(concat)
        #expect(try socket.elements(of: namedPorts) == [member])
        let listed = try namespace.exec(["nft", "list", "set", "inet", "tabby", "named-ports"]).output
        #expect(listed.contains("type ipv4_addr . inet_proto . inet_service"))
        #expect(listed.contains("10.0.0.1 . tcp . 443"))
    }

    private func withoutHandle(_ rule: NftRule) -> NftRule {
        var copy = rule
        copy.handle = nil
        return copy
    }
}
