import TabbyCore
import TabbyPolicy
import Testing

/// REFERENCE.md section 10: every case as a full truth table over the nine pods, TCP and UDP,
/// ports 80 and 81.
struct KubernetesCase: Sendable, CustomTestStringConvertible {
    var name: String
    var manifest: String
    var expected: @Sendable (Topology.Connection) -> Bool

    var testDescription: String { name }
}

private func knp(_ name: String, namespace: String = "x", _ spec: String) -> String {
    """
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata:
      name: \(name)
      namespace: \(namespace)
    spec:
    \(spec)
    ---

    """
}

private let xa = Topology.Pod(namespace: "x", name: "a")
private let xb = Topology.Pod(namespace: "x", name: "b")
private let ya = Topology.Pod(namespace: "y", name: "a")

let kubernetesCases: [KubernetesCase] = [
    KubernetesCase(
        name: "1 deny all ingress in x",
        manifest: knp(
            "deny-ingress",
            """
              podSelector: {}
              policyTypes: [Ingress]
            """),
        expected: { $0.to.namespace != "x" }),
    KubernetesCase(
        name: "2 deny all ingress and egress in x",
        manifest: knp(
            "deny-all",
            """
              podSelector: {}
              policyTypes: [Ingress, Egress]
            """),
        expected: { $0.from.namespace != "x" && $0.to.namespace != "x" }),
    KubernetesCase(
        name: "3 x/a from namespace y",
        manifest: knp(
            "from-y",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - from:
                - namespaceSelector: {matchLabels: {ns: y}}
            """),
        expected: { $0.to != xa || $0.from.namespace == "y" }),
    KubernetesCase(
        name: "4 x/a from one peer: namespaces y, z AND pod b",
        manifest: knp(
            "and-peer",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - from:
                - namespaceSelector:
                    matchExpressions: [{key: ns, operator: In, values: [y, z]}]
                  podSelector: {matchLabels: {pod: b}}
            """),
        expected: { $0.to != xa || (["y", "z"].contains($0.from.namespace) && $0.from.name == "b") }),
    KubernetesCase(
        name: "4 x/a from two peers: namespaces y, z OR pod b in x",
        manifest: knp(
            "or-peers",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - from:
                - namespaceSelector:
                    matchExpressions: [{key: ns, operator: In, values: [y, z]}]
                - podSelector: {matchLabels: {pod: b}}
            """),
        expected: { $0.to != xa || ["y", "z"].contains($0.from.namespace) || $0.from == xb }),
    KubernetesCase(
        name: "5 x/a from namespace y on TCP 81 only",
        manifest: knp(
            "y-tcp-81",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - from:
                - namespaceSelector: {matchLabels: {ns: y}}
                ports:
                - {protocol: TCP, port: 81}
            """),
        expected: { $0.to != xa || ($0.from.namespace == "y" && $0.proto == "TCP" && $0.port == 81) }),
    KubernetesCase(
        name: "6 all of x on named port serve-81-tcp",
        manifest: knp(
            "named-port",
            """
              podSelector: {}
              ingress:
              - ports:
                - {port: serve-81-tcp}
            """),
        expected: { $0.to.namespace != "x" || ($0.proto == "TCP" && $0.port == 81) }),
    KubernetesCase(
        name: "7 x/a TCP 53 to endPort 80",
        manifest: knp(
            "end-port-80",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - ports:
                - {protocol: TCP, port: 53, endPort: 80}
            """),
        expected: { $0.to != xa || ($0.proto == "TCP" && $0.port == 80) }),
    KubernetesCase(
        name: "7 x/a TCP 53 to endPort 84",
        manifest: knp(
            "end-port-84",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - ports:
                - {protocol: TCP, port: 53, endPort: 84}
            """),
        expected: { $0.to != xa || $0.proto == "TCP" }),
    KubernetesCase(
        name: "8 x/a egress to 0.0.0.0/0 except x/b",
        manifest: knp(
            "except-xb",
            """
              podSelector: {matchLabels: {pod: a}}
              policyTypes: [Egress]
              egress:
              - to:
                - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.2/32]}
            """),
        expected: { $0.from != xa || $0.to != xb }),
    KubernetesCase(
        name: "8 x/a egress except x/b, plus a policy allowing x/b",
        manifest: knp(
            "except-xb",
            """
              podSelector: {matchLabels: {pod: a}}
              policyTypes: [Egress]
              egress:
              - to:
                - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.2/32]}
            """)
            + knp(
                "allow-xb",
                """
                  podSelector: {matchLabels: {pod: a}}
                  policyTypes: [Egress]
                  egress:
                  - to:
                    - ipBlock: {cidr: 10.0.0.2/32}
                """),
        expected: { _ in true }),
    KubernetesCase(
        name: "9 x/a egress only to y/a, y ingress only from x/a",
        manifest: knp(
            "xa-to-ya",
            """
              podSelector: {matchLabels: {pod: a}}
              policyTypes: [Egress]
              egress:
              - to:
                - namespaceSelector: {matchLabels: {ns: y}}
                  podSelector: {matchLabels: {pod: a}}
            """)
            + knp(
                "y-from-xa",
                namespace: "y",
                """
                  podSelector: {}
                  ingress:
                  - from:
                    - namespaceSelector: {matchLabels: {ns: x}}
                      podSelector: {matchLabels: {pod: a}}
                """),
        expected: { ($0.from != xa || $0.to == ya) && ($0.to.namespace != "y" || $0.from == xa) }),
    KubernetesCase(
        name: "10 x/a allows only UDP 81",
        manifest: knp(
            "udp-81",
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - ports:
                - {protocol: UDP, port: 81}
            """),
        expected: { $0.to != xa || ($0.proto == "UDP" && $0.port == 81) }),
]

@Suite struct KubernetesCaseTests {
    @Test(arguments: kubernetesCases)
    func truthTable(_ testCase: KubernetesCase) {
        let engine = Topology.engine(Topology.manifest(testCase.manifest))
        #expect(engine.problems.isEmpty)
        let mismatches = Topology.mismatches(engine.ir, expected: testCase.expected)
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        // The incrementally built IR is the one compiled from scratch.
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }

    @Test func withoutPoliciesEverythingIsAllowedAndLoopbackToo() {
        let engine = Topology.engine([])
        #expect(Topology.mismatches(engine.ir, expected: { _ in true }).isEmpty)
        let loopback = PolicyEvaluator(engine.ir).evaluate(
            Packet(from: .endpoint(xa.key), to: .endpoint(xa.key), protocol: .tcp, destinationPort: 80))
        #expect(loopback.verdict == .allow)
        #expect(loopback.trace == [.loopback(xa.key)])
    }

    @Test func loopbackIsAllowedEvenWhenIsolated() {
        let engine = Topology.engine(Topology.manifest(kubernetesCases[1].manifest))
        let evaluation = PolicyEvaluator(engine.ir).evaluate(
            Packet(from: .endpoint(xa.key), to: .endpoint(xa.key), protocol: .tcp, destinationPort: 80))
        #expect(evaluation.verdict == .allow)
    }

    /// The dynamic steps: relabelling a namespace flips traffic, deleting a policy restores it,
    /// an allow-all beside a port-80 policy opens port 81.
    @Test func dynamicSteps() {
        var engine = Topology.engine(Topology.manifest(kubernetesCases[2].manifest))
        let za = Topology.Pod(namespace: "z", name: "a")
        let zToXA = Topology.Connection(from: za, to: xa, proto: "TCP", port: 80)
        #expect(Topology.evaluate(engine.ir, zToXA).verdict == .deny)

        let relabel = engine.upsert(Topology.namespace("z", labels: ["ns": "y"]))
        #expect(Topology.evaluate(engine.ir, zToXA).verdict == .allow)
        // z's pods joined the set for `ns == y`, nothing else changed.
        #expect(relabel.ipSetMembersAdded.values.flatMap { $0 }.count == 3)
        #expect(relabel.ipSetsCreated.isEmpty && relabel.ipSetMembersRemoved.isEmpty)

        engine.upsert(Topology.namespace("z"))
        #expect(Topology.evaluate(engine.ir, zToXA).verdict == .deny)
        let deleted = engine.delete(PolicyResourceKey(.kubernetesNetworkPolicy, namespace: "x", name: "from-y"))
        #expect(deleted.policiesRemoved == [PolicyID(namespace: "x", name: "knp.default.from-y")])
        #expect(!deleted.ipSetsRemoved.isEmpty)
        #expect(Topology.mismatches(engine.ir, expected: { _ in true }).isEmpty)

        engine.apply(
            Topology.manifest(
                knp(
                    "port-80",
                    """
                      podSelector: {matchLabels: {pod: a}}
                      ingress:
                      - ports: [{port: 80}]
                    """)
            ).map { .upsert($0) })
        #expect(
            Topology.mismatches(engine.ir, expected: { $0.to != xa || ($0.proto == "TCP" && $0.port == 80) }).isEmpty)
        engine.apply(
            Topology.manifest(
                knp(
                    "allow-all",
                    """
                      podSelector: {matchLabels: {pod: a}}
                      ingress:
                      - {}
                    """)
            ).map { .upsert($0) })
        #expect(Topology.mismatches(engine.ir, expected: { _ in true }).isEmpty)
    }

    @Test func relabellingAPodFlipsTraffic() {
        var engine = Topology.engine(Topology.manifest(kubernetesCases[2].manifest))
        let xc = Topology.Pod(namespace: "x", name: "c")
        let connection = Topology.Connection(from: xa, to: xc, proto: "TCP", port: 80)
        #expect(Topology.evaluate(engine.ir, connection).verdict == .allow)
        // x/c relabelled pod=a is now selected by the policy, and x/a is no longer a source from y.
        engine.upsert(Topology.pod("x", "c", labels: ["pod": "a"]))
        #expect(Topology.evaluate(engine.ir, connection).verdict == .deny)
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }
}
