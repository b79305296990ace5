import Foundation
import TabbyDataplane
import TabbyDataplaneConformance
import TabbyIptables
import TabbyPolicy
import Testing

/// The iptables backend in a lab of nine pods, in both flavours (nf_tables and legacy): the ten
/// Kubernetes cases and the Calico cases over the full grid (TCP and UDP 80/81 and ICMP between
/// every pair), then seeded random Calico policies.
@Suite(
    "iptables backend conformance",
    .enabled(if: geteuid() == 0, "creates network namespaces, iptables chains and ipsets: needs CAP_NET_ADMIN (root)"),
    .serialized)
struct IptablesConformanceTests {
    static func makeKit(_ flavour: IptablesFlavour) throws -> ConformanceKit {
        try ConformanceKit { node in
            IptablesDataplane(runner: IptablesProcessRunner(flavour: flavour, namespacePath: node))
        }
    }

    @Test(arguments: IptablesFlavour.allCases)
    func kubernetesCases(flavour: IptablesFlavour) throws {
        let kit = try Self.makeKit(flavour)
        defer { kit.tearDown() }
        // Without policies everything is allowed (profiles kns.*), and the grid is not vacuous.
        #expect(try kit.check(kit.grid(), context: "no policy").isEmpty)
        let mismatches = try kit.runKubernetesCases()
        #expect(mismatches.isEmpty, "\(flavour): \(mismatches.joined(separator: "\n"))")
    }

    @Test func calicoCases() throws {
        let kit = try Self.makeKit(.nft)
        defer { kit.tearDown() }
        let mismatches = try kit.runCalicoCases()
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
    }

    /// At least 200 seeded random policy/packet cases (20 policy sets x 12 probes).
    @Test(arguments: IptablesFlavour.allCases)
    func randomCases(flavour: IptablesFlavour) throws {
        let kit = try Self.makeKit(flavour)
        defer { kit.tearDown() }
        let seed =
            ProcessInfo.processInfo.environment["TABBY_CONFORMANCE_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 0...UInt64.max)
        let mismatches = try kit.runRandomCases(seed: seed, count: 20, probesPerCase: 12)
        #expect(
            mismatches.isEmpty,
            "\(flavour), seed \(seed) (rerun with TABBY_CONFORMANCE_SEED=\(seed)):\n\(mismatches.joined(separator: "\n"))"
        )
    }
}
