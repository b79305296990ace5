import Foundation
import TabbyDataplane
import TabbyDataplaneConformance
import TabbyNftables
import TabbyPolicy
import Testing

/// The nftables backend in a lab of nine pods: the ten Kubernetes cases over the full grid
/// (TCP and UDP 80/81 and ICMP between every pair), then seeded random Calico policies.
@Suite(
    "nftables backend conformance",
    .enabled(if: geteuid() == 0, "creates network namespaces and nftables tables: needs CAP_NET_ADMIN (root)"),
    .serialized)
struct NftablesConformanceTests {
    static func makeKit(_ commit: @escaping (String) throws -> any NftCommitter) throws -> ConformanceKit {
        try ConformanceKit { node in NftablesDataplane(committer: try commit(node)) }
    }

    @Test func kubernetesCasesWithTheScriptCommitter() throws {
        let kit = try Self.makeKit { NftScriptCommitter(namespacePath: $0) }
        defer { kit.tearDown() }
        // Without policies everything is allowed (profiles kns.*), and the grid is not vacuous.
        #expect(try kit.check(kit.grid(), context: "no policy").isEmpty)
        let mismatches = try kit.runKubernetesCases()
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
    }

    @Test func randomCasesWithTheScriptCommitter() throws {
        let kit = try Self.makeKit { NftScriptCommitter(namespacePath: $0) }
        defer { kit.tearDown() }
        let seed =
            ProcessInfo.processInfo.environment["TABBY_CONFORMANCE_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 0...UInt64.max)
        let mismatches = try kit.runRandomCases(seed: seed, count: 20, probesPerCase: 12)
        #expect(
            mismatches.isEmpty,
            "seed \(seed) (rerun with TABBY_CONFORMANCE_SEED=\(seed)):\n\(mismatches.joined(separator: "\n"))")
    }

    /// The agent's path: libnftnl batches over netlink, no nft process.
    @Test func kubernetesCasesOverNetlink() throws {
        let kit = try Self.makeKit { try NftNetlinkCommitter(namespacePath: $0) }
        defer { kit.tearDown() }
        #expect(try kit.check(kit.grid(), context: "no policy").isEmpty)
        let mismatches = try kit.runKubernetesCases()
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
    }

    @Test func calicoCasesOverNetlink() throws {
        let kit = try Self.makeKit { try NftNetlinkCommitter(namespacePath: $0) }
        defer { kit.tearDown() }
        let mismatches = try kit.runCalicoCases()
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
    }

    /// At least 200 seeded random policy/packet cases over netlink (20 policy sets x 12 probes).
    @Test func randomCasesOverNetlink() throws {
        let kit = try Self.makeKit { try NftNetlinkCommitter(namespacePath: $0) }
        defer { kit.tearDown() }
        let seed =
            ProcessInfo.processInfo.environment["TABBY_CONFORMANCE_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 0...UInt64.max)
        let mismatches = try kit.runRandomCases(seed: seed, count: 20, probesPerCase: 12)
        #expect(
            mismatches.isEmpty,
            "seed \(seed) (rerun with TABBY_CONFORMANCE_SEED=\(seed)):\n\(mismatches.joined(separator: "\n"))")
    }
}
