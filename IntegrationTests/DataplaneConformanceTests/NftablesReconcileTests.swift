import Foundation
import TabbyDataplane
import TabbyNetlink
import TabbyNftables
import TabbyPolicy
import Testing

/// reconcile repairs what someone changed behind the backend's back; sweep removes what is
/// Tabby's and not wanted, and nothing else.
@Suite(
    "nftables reconcile and sweep",
    .enabled(if: geteuid() == 0, "creates a network namespace and nftables tables: needs CAP_NET_ADMIN (root)"),
    .serialized)
struct NftablesReconcileTests {
    func nft(_ namespace: String, _ arguments: [String], input: String = "") -> (Int32, String) {
        runInNamespace(namespace, ["/usr/sbin/nft"] + arguments, input: input)
    }

    @Test func reconcileRepairsAFlushedChainAndSweepRemovesOnlyTabbysLeftovers() throws {
        let name = "tabby-t-nftrec-\(UUID().uuidString.prefix(6).lowercased())"
        let path = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let dataplane = NftablesDataplane(committer: try NftNetlinkCommitter(namespacePath: path))
        let ir = PolicyIR()
        // First start: nothing there, so it is written.
        #expect(try dataplane.reconcile(ir) == ["table inet tabby is missing"])
        // Unchanged: nothing to repair, nothing sent.
        #expect(try dataplane.reconcile(ir).isEmpty)
        // Someone flushes the forward chain: reconcile notices and repairs.
        #expect(nft(path, ["flush", "chain", "inet", "tabby", "forward"]).0 == 0)
        let repaired = try dataplane.reconcile(ir)
        #expect(repaired.contains { $0.hasPrefix("chain forward") }, "\(repaired)")
        #expect(
            nft(path, ["list", "chain", "inet", "tabby", "forward"]).1.contains("ct state established,related accept"))

        // Leftovers: an old Tabby table in another family, and someone else's table.
        #expect(
            nft(
                path, ["-f", "-"],
                input: "table ip tabby_old {\n chain c {\n }\n}\ntable ip filter {\n chain c {\n }\n}\n"
            ).0 == 0)
        try dataplane.sweep(keeping: ir)
        let tables = nft(path, ["list", "tables"]).1
        #expect(!tables.contains("tabby_old"), "\(tables)")
        #expect(tables.contains("table ip filter"), "not Tabby's, so it stays: \(tables)")
        #expect(tables.contains("table inet tabby"), "\(tables)")
    }

    /// A rule or set element changed in place (the same counts) is drift too: reconcile compares
    /// content, reports it and rewrites; what it wrote itself reads back as equal.
    @Test func reconcileComparesRulesAndElementsNotOnlyCounts() throws {
        let name = "tabby-t-nftcmp-\(UUID().uuidString.prefix(6).lowercased())"
        let path = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let dataplane = NftablesDataplane(committer: try NftNetlinkCommitter(namespacePath: path))
        let ir = IptablesReconcileTests.ir()
        #expect(try dataplane.reconcile(ir) == ["table inet tabby is missing"])
        let again = try dataplane.reconcile(ir)
        #expect(again.isEmpty, "what was written must read back as equal: \(again)")

        let listing = nft(path, ["-a", "list", "table", "inet", "tabby"]).1
        // The policy chain's first rule becomes a plain accept (same number of rules).
        let lines = listing.split(separator: "\n").map(String.init)
        let chainLine = try #require(lines.firstIndex { $0.contains("chain pi-") })
        let chain = String(lines[chainLine].split(separator: " ")[1])
        let ruleLine = try #require(lines[(chainLine + 1)...].first { $0.contains("# handle ") })
        let handle = String(try #require(ruleLine.components(separatedBy: "# handle ").last))
        #expect(nft(path, ["replace", "rule", "inet", "tabby", chain, "handle", handle, "accept"]).0 == 0)
        // A set member swapped for another (same number of elements).
        let setLine = try #require(lines.first { $0.contains("set s-") && $0.contains("-v4") })
        let set = String(setLine.trimmingCharacters(in: .whitespaces).split(separator: " ")[1])
        #expect(nft(path, ["delete", "element", "inet", "tabby", set, "{ 10.0.0.2 }"]).0 == 0)
        #expect(nft(path, ["add", "element", "inet", "tabby", set, "{ 10.0.0.9 }"]).0 == 0)

        let drift = try dataplane.reconcile(ir)
        #expect(drift.contains { $0.hasPrefix("chain \(chain) rule 1 differs") }, "\(drift)")
        #expect(drift.contains("set \(set): 1 elements missing, 1 not wanted"), "\(drift)")
        #expect(try dataplane.reconcile(ir).isEmpty, "repaired")
        let repaired = nft(path, ["list", "set", "inet", "tabby", set]).1
        #expect(repaired.contains("10.0.0.2") && !repaired.contains("10.0.0.9"), "\(repaired)")
    }
}
