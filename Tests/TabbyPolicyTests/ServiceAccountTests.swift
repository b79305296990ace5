import TabbyCore
import TabbyPolicy
import Testing

/// Service accounts in policy: a policy's `serviceAccountSelector` and a rule's
/// `serviceAccounts {names, selector}`, as truth tables over the nine pods. x/c, y/b and z/c
/// run as `frontend`, x/a as `db`; the other pods have no service account. Profile
/// `ksa.<ns>.<account>` stands for a ServiceAccount: its `labelsToApply` are the `pcsa.` labels.
@Suite struct ServiceAccountTests {
    static let accounts: [String: String] = ["x/c": "frontend", "y/b": "frontend", "z/c": "frontend", "x/a": "db"]

    static func account(_ pod: Topology.Pod) -> String? { accounts[pod.description] }

    /// The topology with the service accounts, and profiles labelling `db` in x `tier: data`
    /// and `frontend` in y `team: web`.
    static var resources: [PolicyResource] {
        Topology.namespaces.map { Topology.namespace($0) }
            + Topology.allPods.map {
                Topology.pod($0.namespace, $0.name, serviceAccount: account($0))
            }
            + Topology.manifest(
                """
                apiVersion: projectcalico.org/v3
                kind: Profile
                metadata: {name: ksa.x.db}
                spec: {labelsToApply: {pcsa.tier: data}}
                ---
                apiVersion: projectcalico.org/v3
                kind: Profile
                metadata: {name: ksa.y.frontend}
                spec: {labelsToApply: {pcsa.team: web}}
                """)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var manifest: String
        var expected: @Sendable (Topology.Connection) -> Bool
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "policy serviceAccountSelector isolates only the db pod",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: data, namespace: x}
                spec:
                  selector: all()
                  serviceAccountSelector: tier == 'data'
                  ingress:
                  - {action: Allow, source: {namespaceSelector: ns == 'y'}}
                """,
            expected: { $0.to.description != "x/a" || $0.from.namespace == "y" }),
        Case(
            name: "rule serviceAccounts names, cluster-wide",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: GlobalNetworkPolicy
                metadata: {name: a-from-frontend}
                spec:
                  selector: pod == 'a'
                  ingress:
                  - {action: Allow, source: {serviceAccounts: {names: [frontend]}}}
                """,
            expected: { $0.to.name != "a" || account($0.from) == "frontend" }),
        Case(
            name: "rule serviceAccounts names in a namespaced policy: its own namespace only",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: a-from-frontend, namespace: x}
                spec:
                  selector: pod == 'a'
                  ingress:
                  - {action: Allow, source: {serviceAccounts: {names: [frontend, nobody]}}}
                """,
            expected: { $0.to.description != "x/a" || $0.from.description == "x/c" }),
        Case(
            name: "rule serviceAccounts selector reads pcsa labels",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: GlobalNetworkPolicy
                metadata: {name: a-from-web}
                spec:
                  selector: pod == 'a'
                  ingress:
                  - {action: Allow, source: {serviceAccounts: {selector: team == 'web'}}}
                """,
            expected: { $0.to.name != "a" || $0.from.description == "y/b" }),
        Case(
            name: "serviceAccounts ANDed with selector and names with selector",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: GlobalNetworkPolicy
                metadata: {name: a-from-frontend-c}
                spec:
                  selector: pod == 'a'
                  ingress:
                  - action: Allow
                    source:
                      selector: pod == 'c'
                      serviceAccounts: {names: [frontend, db]}
                """,
            expected: { $0.to.name != "a" || ["x/c", "z/c"].contains($0.from.description) }),
        Case(
            name: "egress to service accounts by names and selector",
            manifest: """
                apiVersion: projectcalico.org/v3
                kind: GlobalNetworkPolicy
                metadata: {name: b-to-web-frontend}
                spec:
                  selector: pod == 'b'
                  types: [Egress]
                  egress:
                  - {action: Allow, destination: {serviceAccounts: {names: [frontend], selector: team == 'web'}}}
                """,
            expected: { $0.from.name != "b" || $0.to.description == "y/b" }),
    ]

    @Test(arguments: cases)
    func truthTable(_ testCase: Case) {
        var engine = PolicyEngine()
        engine.apply((Self.resources + Topology.manifest(testCase.manifest)).map { .upsert($0) })
        #expect(engine.problems.isEmpty, "\(engine.problems)")
        let mismatches = Topology.mismatches(engine.ir, expected: testCase.expected)
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }

    @Test func endpointsCarryTheirServiceAccountAndItsProfile() {
        let state = ClusterState(Self.resources)
        let xa = state.workloadEndpoints[EndpointKey(namespace: "x", name: "a")]!
        #expect(state.profileNames(of: xa) == ["kns.x", "ksa.x.db"])
        let labels = state.labels(of: xa)
        #expect(labels["projectcalico.org/serviceaccount"] == "db")
        #expect(labels["pcsa.tier"] == "data")
        let xb = state.workloadEndpoints[EndpointKey(namespace: "x", name: "b")]!
        #expect(state.profileNames(of: xb) == ["kns.x"])
        #expect(state.labels(of: xb)["projectcalico.org/serviceaccount"] == nil)
    }

    @Test func ruleServiceAccountsBecomeOneScopedIPSet() throws {
        var engine = PolicyEngine()
        engine.apply((Self.resources + Topology.manifest(Self.cases[2].manifest)).map { .upsert($0) })
        let policy = try #require(engine.ir.policies[PolicyID(namespace: "x", name: "a-from-frontend")])
        let sets = policy.ingress[0].source.ipSets
        #expect(sets.count == 1)
        let set = try #require(engine.ir.ipSets[sets[0]])
        #expect(
            set.definition.selector.canonical
                == "(projectcalico.org/namespace == \"x\" && projectcalico.org/serviceaccount in {\"frontend\", \"nobody\"})"
        )
        #expect(set.members == [.net(CIDR("10.0.0.3/32")!)])
    }

    @Test func relabellingAServiceAccountMovesItsEndpoints() {
        var engine = PolicyEngine()
        engine.apply((Self.resources + Topology.manifest(Self.cases[3].manifest)).map { .upsert($0) })
        // The frontend account of z gains team: web: z/c joins the set, and may now reach */a.
        var profile = Profile(metadata: ObjectMeta(name: "ksa.z.frontend"), spec: ProfileSpec())
        profile.spec.labelsToApply = ["pcsa.team": "web"]
        let delta = engine.upsert(.profile(profile))
        #expect(delta.ipSetMembersAdded.values.flatMap { $0 } == [.net(CIDR("10.0.2.3/32")!)])
        #expect(engine.ir == PolicyIR.compile(engine.state))
        let zc = Topology.Pod(namespace: "z", name: "c")
        let xa = Topology.Pod(namespace: "x", name: "a")
        #expect(Topology.evaluate(engine.ir, .init(from: zc, to: xa, proto: "TCP", port: 80)).verdict == .allow)
    }

    @Test func badServiceAccountSelectorIsAProblem() {
        var engine = PolicyEngine()
        var policy = NetworkPolicy(metadata: ObjectMeta(name: "bad", namespace: "x"), spec: NetworkPolicySpec())
        policy.spec.serviceAccountSelector = "tier =="
        engine.apply((Self.resources + [.networkPolicy(policy)]).map { .upsert($0) })
        #expect(engine.problems["x/bad"]?.hasPrefix("serviceAccountSelector:") == true, "\(engine.problems)")
        #expect(engine.ir.policies.isEmpty)
    }
}
