#if EBPF
    import Testing
    import TabbyCore
    @testable import TabbyEBPF
    import TabbyPolicy

    /// What an apply recompiles (`EBPFDataplane.affectedEndpoints`) and when tables may change in
    /// place (`differsOnlyInAddresses`), on resources through the real policy engine.
    @Suite struct EBPFDeltaTests {
        /// Pods a and b in namespace x; a policy selects a and allows from the network set `others`.
        static func resources(members: [String]) -> [PolicyResource] {
            var result: [PolicyResource] = []
            var profile = ProfileSpec()
            profile.ingress = [Rule(action: .allow)]
            profile.egress = [Rule(action: .allow)]
            result.append(.profile(Profile(metadata: ObjectMeta(name: "kns.x"), spec: profile)))
            for (index, name) in ["a", "b"].enumerated() {
                var spec = WorkloadEndpointSpec()
                spec.node = "n"
                spec.pod = name
                spec.interfaceName = "cali\(name)"
                spec.ipNetworks = ["10.65.0.\(index + 2)/32"]
                spec.profiles = ["kns.x"]
                result.append(
                    .workloadEndpoint(
                        WorkloadEndpoint(
                            metadata: ObjectMeta(name: name, namespace: "x", labels: ["pod": name]), spec: spec)))
            }
            var set = NetworkSetSpec()
            set.nets = members
            result.append(
                .networkSet(
                    NetworkSet(
                        metadata: ObjectMeta(name: "others", namespace: "x", labels: ["role": "other"]), spec: set)))
            var policy = NetworkPolicySpec()
            policy.selector = "pod == 'a'"
            var rule = Rule(action: .allow)
            rule.source = EntityRule()
            rule.source?.selector = "role == 'other'"
            policy.ingress = [rule]
            result.append(.networkPolicy(NetworkPolicy(metadata: ObjectMeta(name: "p", namespace: "x"), spec: policy)))
            return result
        }

        @Test func aMemberChangeAffectsOnlyTheEndpointsWhosePoliciesNameTheSet() throws {
            var engine = PolicyEngine()
            _ = engine.apply(Self.resources(members: ["192.0.2.1/32", "192.0.2.2/32"]).map { .upsert($0) })
            let delta = engine.apply(Self.resources(members: ["192.0.2.1/32", "192.0.2.3/32"]).map { .upsert($0) })
            #expect(!delta.ipSetMembersAdded.isEmpty && delta.endpointsBound.isEmpty)
            let affected = EBPFDataplane.affectedEndpoints(delta, in: engine.ir)
            let names = Set(affected.compactMap { engine.ir.endpoints[$0]?.interfaceName })
            #expect(names == ["calia"], "affected: \(affected)")

            // A new address for b binds it anew: b alone.
            var moved = Self.resources(members: ["192.0.2.1/32", "192.0.2.3/32"])
            if case .workloadEndpoint(var endpoint) = moved[2] {
                endpoint.spec.ipNetworks = ["10.65.0.9/32"]
                moved[2] = .workloadEndpoint(endpoint)
            }
            let rebound = engine.apply(moved.map { .upsert($0) })
            let reboundNames = Set(
                EBPFDataplane.affectedEndpoints(rebound, in: engine.ir).compactMap {
                    engine.ir.endpoints[$0]?.interfaceName
                })
            #expect(reboundNames == ["calib"])
        }

        @Test func aMemberChangeMovesOnlyAddressEntries() throws {
            var engine = PolicyEngine()
            _ = engine.apply(Self.resources(members: ["192.0.2.1/32", "192.0.2.2/32"]).map { .upsert($0) })
            let endpoint = try #require(engine.ir.endpoints.values.first { $0.interfaceName == "calia" })
            let before = try PolicyTableCompiler.compile(endpoint, direction: .ingress, in: engine.ir)
            _ = engine.apply(Self.resources(members: ["192.0.2.1/32", "192.0.2.3/32"]).map { .upsert($0) })
            let after = try PolicyTableCompiler.compile(endpoint, direction: .ingress, in: engine.ir)
            #expect(after.differsOnlyInAddresses(from: before))
            #expect(
                after.verdict(protocol: 6, port: 80, sourcePort: 40000, peer: IPv4Address("192.0.2.3")!).action
                    == .allow)
            #expect(
                after.verdict(protocol: 6, port: 80, sourcePort: 40000, peer: IPv4Address("192.0.2.2")!).action == .deny
            )
            #expect(!before.differsOnlyInAddresses(from: before))
        }
    }
#endif
