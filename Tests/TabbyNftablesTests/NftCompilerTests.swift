import Foundation
import TabbyCore
import TabbyDataplane
import TabbyPolicy
import TabbyTestSupport
import Testing

@testable import TabbyNftables

/// The IR as nft objects, pinned as `nft -f` text.
@Suite("nftables compiler")
struct NftCompilerTests {
    /// The sample shared with the iptables tests (TabbyTestSupport).
    static let manifest = SamplePolicy.manifest

    static func ir() -> PolicyIR {
        let manifest = Manifest(text: manifest, source: "test")
        #expect(manifest.problems.isEmpty, "\(manifest.problems)")
        var engine = PolicyEngine()
        _ = engine.apply(manifest.resources.compactMap(PolicyResource.init).map { .upsert($0) })
        return engine.ir
    }

    @Test func endpointsPoliciesAndSetsBecomeChainsMapsAndSets() throws {
        let plan = NftCompiler.compile(Self.ir())
        let policyChain = NftCompiler.chainName(policy: PolicyID(namespace: "x", name: "db"), .ingress)
        // Dispatch: both endpoints in both maps; unknown cali interfaces fail closed.
        #expect(
            plan.maps["from-wl"] == ["cali0000000000a": "fw-cali0000000000a", "cali0000000000b": "fw-cali0000000000b"])
        #expect(plan.maps["to-wl"]?["cali0000000000a"] == "tw-cali0000000000a")
        let forward = try #require(plan.chains["forward"]).rules.map(\.nftText)
        #expect(
            forward == [
                "ct state established,related accept",
                "ct state invalid drop",
                "meta mark set meta mark & 0xfffcffff",
                "iifname vmap @from-wl",
                "iifname \"cali*\" meta mark & 0x10000 == 0 drop comment \"unknown workload interface or egress denied\"",
                "meta mark set meta mark & 0xfffcffff",
                "oifname vmap @to-wl",
                "oifname \"cali*\" meta mark & 0x10000 == 0 drop comment \"unknown workload interface or ingress denied\"",
            ])
        // a's ingress: the default tier with the policy, default deny, then the profile.
        let ingressOfA = try #require(plan.chains["tw-cali0000000000a"]).rules.map(\.nftText)
        #expect(
            ingressOfA == [
                "meta mark set meta mark & 0xfffcffff",
                "meta mark set meta mark & 0xfffdffff",
                "meta mark & 0x30000 == 0 jump \(policyChain) comment \"policy x/db\"",
                "meta mark & 0x10000 != 0 return",
                "meta mark & 0x20000 == 0 drop comment \"default deny of tier default\"",
                "jump \(NftCompiler.chainName(profile: "kns.x", .ingress)) comment \"profile kns.x\"",
                "meta mark & 0x10000 != 0 return",
                "drop comment \"no profile matched\"",
            ])
        // b is not selected: only its profile.
        #expect(plan.chains["tw-cali0000000000b"]?.rules.count == 4)
        // The policy: two port alternatives, per family; then the deny per CIDR family.
        let rules = try #require(plan.chains[policyChain]).rules.map(\.nftText)
        let set = try #require(Self.ir().ipSets.keys.first)
        let v4 = NftCompiler.setName(set, .ipv4)
        #expect(
            rules == [
                "meta nfproto ipv4 meta l4proto 6 ip saddr @\(v4) th dport 80 meta mark set meta mark | 0x10000 return comment \"policy x/db rule 0\"",
                "meta nfproto ipv4 meta l4proto 6 ip saddr @\(v4) th dport 8000-8080 meta mark set meta mark | 0x10000 return comment \"policy x/db rule 0\"",
                "meta nfproto ipv6 meta l4proto 6 ip6 saddr @\(NftCompiler.setName(set, .ipv6)) th dport 80 meta mark set meta mark | 0x10000 return comment \"policy x/db rule 0\"",
                "meta nfproto ipv6 meta l4proto 6 ip6 saddr @\(NftCompiler.setName(set, .ipv6)) th dport 8000-8080 meta mark set meta mark | 0x10000 return comment \"policy x/db rule 0\"",
                "meta nfproto ipv4 ip saddr 192.168.0.0/16 drop comment \"policy x/db rule 1\"",
                "meta nfproto ipv6 ip6 saddr fd00::/8 drop comment \"policy x/db rule 1\"",
            ])
        #expect(plan.sets[v4]?.elements == ["10.0.0.2/32"])
        #expect(plan.sets[v4]?.kind == .ipv4Net)
    }

    @Test func overlappingCIDRsAreMerged() {
        let merged = NftCompiler.merged(
            ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "192.168.1.0/24"].map { CIDR($0)! })
        #expect(merged.map(\.description) == ["10.0.0.0/8", "192.168.1.0/24"])
    }

    @Test func namesAreStableAcrossRuns() {
        let id = PolicyID(namespace: "x", name: "db")
        #expect(NftCompiler.chainName(policy: id, .ingress) == NftCompiler.chainName(policy: id, .ingress))
        #expect(NftCompiler.chainName(policy: id, .ingress).count == 19)
        #expect(NftCompiler.chainName(policy: id, .egress).hasPrefix("po-"))
    }
}

extension NftCompilerTests {
    /// Writes the plan's text for a manual `nft -c -f` check (used while developing).
    @Test func planTextIsWritten() throws {
        let text = NftCompiler.compile(Self.ir()).nftText
        #expect(text.hasPrefix("table inet tabby {"))
        if let path = ProcessInfo.processInfo.environment["TABBY_NFT_PLAN_OUT"] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}

/// Records what a backend sends instead of sending it.
final class RecordingCommitter: NftCommitter, @unchecked Sendable {
    // @unchecked: tests call from one task.
    var commits: [[NftChange]] = []
    var tableDeletions = 0
    func commit(_ changes: [NftChange]) throws(DataplaneError) { commits.append(changes) }
    func readBack() throws(DataplaneError) -> NftKernelSummary? { nil }
    func deleteTable() throws(DataplaneError) { tableDeletions += 1 }
    func deleteOtherTabbyTables() throws(DataplaneError) -> [String] { [] }
}

extension NftCompilerTests {
    /// natOutgoing for the eBPF backend: the first call replaces the table (another backend's
    /// leftovers go), an unchanged setting sends nothing, a new pool only its element, and no NAT
    /// pool at all deletes the table.
    @Test func outgoingNATAloneReplacesThenSendsDifferences() throws {
        let committer = RecordingCommitter()
        let nat = NftOutgoingNAT(committer: committer)
        let pools = [CIDR("10.65.0.0/16")!]
        try nat.set(OutgoingNAT(natPools: pools, allPools: pools))
        #expect(committer.commits.count == 1)
        guard case .replaceTable(let plan) = committer.commits.first?.first else {
            Issue.record("the first set should write the whole table: \(committer.commits)")
            return
        }
        #expect(Set(plan.chains.keys) == ["nat-outgoing"])
        #expect(plan.chains["nat-outgoing"]?.rules.count == 1)
        try nat.set(OutgoingNAT(natPools: pools, allPools: pools))
        #expect(committer.commits.count == 1)
        let more = pools + [CIDR("10.66.0.0/16")!]
        try nat.set(OutgoingNAT(natPools: pools, allPools: more))
        #expect(committer.commits.count == 2)
        #expect(committer.commits.last == [.addElements(set: "pools-all-v4", ["10.66.0.0/16"])])
        try nat.set(.none)
        #expect(committer.tableDeletions == 1)
        try nat.set(.none)
        #expect(committer.tableDeletions == 1)
    }

    /// A change of set members sends those elements and nothing else.
    @Test func aMemberChangeSendsOnlyThatElement() throws {
        let manifest = Manifest(text: Self.manifest, source: "test")
        var engine = PolicyEngine()
        let committer = RecordingCommitter()
        let dataplane = NftablesDataplane(committer: committer)
        try dataplane.apply(
            engine.apply(manifest.resources.compactMap(PolicyResource.init).map { .upsert($0) }), resulting: engine.ir)
        #expect(committer.commits.count == 1)
        guard case .replaceTable = committer.commits[0].first else {
            Issue.record("the first apply should write the whole table")
            return
        }
        // A network set in x labelled pod=b joins the set of `pod == 'b'`: members change, nothing else.
        var nets = NetworkSetSpec()
        nets.nets = ["192.0.2.0/24"]
        let relabel = engine.apply([
            .upsert(
                .networkSet(
                    NetworkSet(metadata: ObjectMeta(name: "more-b", namespace: "x", labels: ["pod": "b"]), spec: nets)))
        ])
        #expect(
            relabel.ipSetMembersAdded.count == 1 && relabel.policiesReplaced.isEmpty && relabel.endpointsBound.isEmpty)
        try dataplane.apply(relabel, resulting: engine.ir)
        let sent = committer.commits.last ?? []
        let set = NftCompiler.setName(try #require(engine.ir.ipSets.keys.first), .ipv4)
        #expect(sent == [.addElements(set: set, ["192.0.2.0/24"])], "\(sent)")
        #expect(
            !sent.contains { change in
                if case .rewriteChain = change { return true }
                if case .replaceTable = change { return true }
                return false
            })
    }
}

extension NftCompilerTests {
    /// natOutgoing: a nat chain at postrouting; turning it on adds that chain without rewriting
    /// the table.
    @Test func outgoingNATAddsANatChainIncrementally() throws {
        let nat = OutgoingNAT(
            natPools: [CIDR("10.65.0.0/16")!], allPools: [CIDR("10.65.0.0/16")!, CIDR("10.66.0.0/16")!])
        let plan = NftCompiler.compile(Self.ir(), nat: nat)
        let chain = try #require(plan.chains["nat-outgoing"])
        #expect(chain.base?.type == .nat && chain.base?.hook == .postrouting)
        #expect(
            chain.rules.map(\.nftText) == [
                "meta nfproto ipv4 ip saddr @pools-nat-v4 ip daddr != @pools-all-v4 masquerade comment \"natOutgoing\""
            ])
        #expect(plan.sets["pools-all-v4"]?.elements == ["10.65.0.0/16", "10.66.0.0/16"])
        #expect(plan.nftText.contains("type nat hook postrouting priority 100; policy accept;"))

        let committer = RecordingCommitter()
        let dataplane = NftablesDataplane(committer: committer)
        try dataplane.apply(PolicyDelta.between(PolicyIR(), Self.ir()), resulting: Self.ir())
        try dataplane.setOutgoingNAT(nat)
        let sent = try #require(committer.commits.last)
        #expect(!sent.contains { if case .replaceTable = $0 { return true } else { return false } })
        #expect(sent.contains { if case .addChain("nat-outgoing", _) = $0 { return true } else { return false } })
        try dataplane.setOutgoingNAT(nat)
        #expect(committer.commits.count == 2, "an unchanged setting sends nothing")
    }
}

extension NftCompilerTests {
    /// Member-only applies (fast path for host addresses, recompute otherwise) leave exactly the
    /// sets a from-scratch compile would make, over random joins and leaves with nested CIDRs.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func incrementalSetsEqualFromScratch(seed: UInt64) throws {
        var random = seed
        func next(_ bound: Int) -> Int {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((random >> 33) % UInt64(bound))
        }
        let manifest = Manifest(text: Self.manifest, source: "test")
        var engine = PolicyEngine()
        let dataplane = NftablesDataplane(committer: RecordingCommitter())
        try dataplane.apply(
            engine.apply(manifest.resources.compactMap(PolicyResource.init).map { .upsert($0) }), resulting: engine.ir)
        var nets: Set<String> = []
        for _ in 0..<60 {
            let candidates = ["192.0.2.0/24", "192.0.2.\(next(8))/32", "198.51.100.\(next(8))/32", "10.0.0.9/32"]
            let pick = candidates[next(candidates.count)]
            if nets.contains(pick) { nets.remove(pick) } else { nets.insert(pick) }
            var spec = NetworkSetSpec()
            spec.nets = nets.sorted()
            let delta = engine.apply([
                .upsert(
                    .networkSet(
                        NetworkSet(
                            metadata: ObjectMeta(name: "more-b", namespace: "x", labels: ["pod": "b"]), spec: spec)))
            ])
            try dataplane.apply(delta, resulting: engine.ir)
            #expect(dataplane.appliedPlan?.sets == NftCompiler.compile(engine.ir).sets, "after \(spec.nets ?? [])")
        }
    }
}

extension NftCompilerTests {
    /// DefaultEndpointToHostAction: Drop (Calico's default) ends the input chain for workloads;
    /// Return leaves them to the host's own rules.
    @Test func workloadToHostFollowsTheConfiguredAction() throws {
        let dropped = try #require(NftCompiler.compile(Self.ir()).chains["input"]).rules.map(\.nftText)
        #expect(dropped.last == "iifname \"cali*\" drop comment \"workload to host: Drop\"")
        var configuration = DataplaneConfiguration.calicoDefaults
        configuration.endpointToHostAction = .return
        let returned = try #require(NftCompiler.compile(Self.ir(), configuration: configuration).chains["input"])
        #expect(!returned.rules.contains { $0.comment?.hasPrefix("workload to host") == true })
    }
}
