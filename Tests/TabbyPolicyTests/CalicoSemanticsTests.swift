import TabbyCore
import TabbyPolicy
import Testing

/// Calico-only semantics: tiers and Pass, Log, ordering, GNP namespace selectors, notNets,
/// network sets, profiles. Each case is a truth table over the nine pods.
@Suite struct CalicoSemanticsTests {
    private let xa = Topology.Pod(namespace: "x", name: "a")

    private func check(_ manifest: String, expected: (Topology.Connection) -> Bool) -> PolicyEngine {
        let engine = Topology.engine(Topology.manifest(manifest))
        #expect(engine.problems.isEmpty, "\(engine.problems)")
        let mismatches = Topology.mismatches(engine.ir, expected: expected)
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        #expect(engine.ir == PolicyIR.compile(engine.state))
        return engine
    }

    @Test func passSkipsToTheNextTierAndThenProfiles() {
        // security (order 100): pods labelled a pass on, the rest are denied. default tier: x
        // accepts only TCP 80. Passed traffic to y and z reaches the kns profiles (allow).
        _ = check(
            """
            apiVersion: projectcalico.org/v3
            kind: Tier
            metadata: {name: security}
            spec: {order: 100}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: security.gate}
            spec:
              tier: security
              selector: all()
              ingress:
              - {action: Pass, source: {selector: pod == 'a'}}
              - {action: Deny}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: tcp-80, namespace: x}
            spec:
              selector: all()
              ingress:
              - {action: Allow, protocol: TCP, destination: {ports: [80]}}
            """,
            expected: { $0.from.name == "a" && ($0.to.namespace != "x" || ($0.proto == "TCP" && $0.port == 80)) })
    }

    @Test func tierWithDefaultActionPass() {
        let engine = check(
            """
            apiVersion: projectcalico.org/v3
            kind: Tier
            metadata: {name: platform}
            spec: {order: 10, defaultAction: Pass}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: platform.no-b-to-a}
            spec:
              tier: platform
              selector: pod == 'a'
              ingress:
              - {action: Deny, source: {selector: pod == 'b'}}
            """,
            expected: { !($0.to.name == "a" && $0.from.name == "b") })
        let evaluation = Topology.evaluate(
            engine.ir,
            Topology.Connection(from: Topology.Pod(namespace: "y", name: "c"), to: xa, proto: "TCP", port: 80))
        #expect(evaluation.trace.contains(.tierDefault(.ingress, xa.key, tier: "platform", action: .pass)))
        #expect(
            evaluation.decidedBy
                == .profileRule(.ingress, xa.key, profile: "kns.x", index: 0, action: .allow, matched: true))
    }

    @Test func logOnlyPolicyDrops() {
        let engine = check(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: log-everything, namespace: x}
            spec:
              selector: all()
              ingress:
              - {action: Log}
            """,
            expected: { $0.to.namespace != "x" })
        let evaluation = Topology.evaluate(
            engine.ir,
            Topology.Connection(from: Topology.Pod(namespace: "y", name: "a"), to: xa, proto: "UDP", port: 81))
        let policy = PolicyID(namespace: "x", name: "log-everything")
        #expect(
            evaluation.trace == [
                .profileRule(
                    .egress, EndpointKey(namespace: "y", name: "a"), profile: "kns.y", index: 0, action: .allow,
                    matched: true),
                .policyRule(.ingress, xa.key, tier: "default", policy: policy, index: 0, action: .log, matched: true),
                .policyNoMatch(.ingress, xa.key, tier: "default", policy: policy),
                .tierDefault(.ingress, xa.key, tier: "default", action: .deny),
            ])
        #expect(evaluation.decidedBy?.description == "Ingress x/a: default deny of tier default once selected")
    }

    /// Equal orders sort by name; an unset order sorts after every set one.
    @Test(arguments: [
        ("aaa", "Deny", "bbb", "Allow", "10", "10", false),
        ("aaa", "Allow", "bbb", "Deny", "10", "10", true),
        ("aaa", "Allow", "zzz", "Deny", "null", "5", false),
        ("aaa", "Allow", "zzz", "Deny", "5", "null", true),
    ])
    func orderTiesBrokenByName(
        first: String, firstAction: String, second: String, secondAction: String, firstOrder: String,
        secondOrder: String, bToAAllowed: Bool
    ) {
        func policy(_ name: String, _ action: String, _ order: String) -> String {
            """
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: \(name)}
            spec:
              order: \(order)
              selector: pod == 'a'
              ingress:
              - {action: \(action), source: {selector: pod == 'b'}}
              - {action: Allow}
            ---

            """
        }
        _ = check(
            policy(first, firstAction, firstOrder) + policy(second, secondAction, secondOrder),
            expected: { $0.to.name != "a" || $0.from.name != "b" || bToAAllowed })
    }

    @Test func globalPolicyWithNamespaceSelector() {
        _ = check(
            """
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: y-no-c}
            spec:
              namespaceSelector: ns == 'y'
              selector: all()
              ingress:
              - {action: Deny, source: {selector: pod == 'c'}}
              - {action: Allow}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: from-z-only-to-b}
            spec:
              selector: pod == 'b'
              ingress:
              - {action: Allow, source: {namespaceSelector: ns == 'z'}}
            """,
            expected: { connection in
                // Policies selecting one endpoint add up within their tier, first match wins:
                // from-z-only-to-b sorts first, and y-no-c lets y/b accept anything but pods c.
                if connection.to.name == "b" && connection.from.namespace == "z" { return true }
                if connection.to.namespace == "y" { return connection.from.name != "c" }
                return connection.to.name != "b"
            })
    }

    @Test func notNetsAndNamespaceScopedSelectors() {
        // x/a: pods b of every namespace but not from y's addresses; pods c of every namespace.
        _ = check(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: not-y, namespace: x}
            spec:
              selector: pod == 'a'
              ingress:
              - {action: Allow, source: {notNets: [10.0.1.0/24], selector: pod == 'b', namespaceSelector: all()}}
              - {action: Allow, source: {selector: pod == 'c', namespaceSelector: all()}}
            """,
            expected: { $0.to != xa || $0.from.name == "c" || ($0.from.name == "b" && $0.from.namespace != "y") })
    }

    @Test func networkSetsAndGlobalNetworkSets() {
        let engine = check(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkSet
            metadata: {name: trusted, namespace: x, labels: {role: trusted}}
            spec: {nets: [10.0.2.0/24]}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkSet
            metadata: {name: elsewhere, namespace: y, labels: {role: trusted}}
            spec: {nets: [10.0.1.0/24]}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkSet
            metadata: {name: external, labels: {external: 'true'}}
            spec: {nets: [192.0.2.0/24]}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: from-trusted, namespace: x}
            spec:
              selector: pod == 'a'
              ingress:
              - {action: Allow, source: {selector: role == 'trusted'}}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: no-external}
            spec:
              selector: pod == 'a'
              types: [Egress]
              egress:
              - {action: Deny, destination: {selector: external == 'true'}}
              - {action: Allow}
            """,
            // Only x's network set counts: the namespaced policy's selector is scoped to x.
            expected: { $0.to != xa || $0.from.namespace == "z" })
        let evaluator = PolicyEvaluator(engine.ir)
        let blocked = evaluator.evaluate(
            Packet(from: .endpoint(xa.key), to: .address(IPAddress("192.0.2.7")!), protocol: .tcp, destinationPort: 443)
        )
        #expect(blocked.verdict == .deny)
        let open = evaluator.evaluate(
            Packet(
                from: .endpoint(xa.key), to: .address(IPAddress("198.51.100.1")!), protocol: .tcp, destinationPort: 443)
        )
        #expect(open.verdict == .allow)
        let inbound = evaluator.evaluate(
            Packet(from: .address(IPAddress("10.0.2.200")!), to: .endpoint(xa.key), protocol: .udp, destinationPort: 53)
        )
        #expect(inbound.verdict == .allow)
    }

    @Test func profilesDecideForUnselectedEndpoints() {
        // Namespace w has no Namespace resource, so only the pod's own profile applies.
        var resources = Topology.resources
        resources.append(Topology.pod("w", "d", address: IPAddress("10.0.9.4")!, profiles: ["restricted"]))
        resources += Topology.manifest(
            """
            apiVersion: projectcalico.org/v3
            kind: Profile
            metadata: {name: restricted}
            spec:
              labelsToApply: {team: blue}
              ingress:
              - {action: Allow, source: {selector: pod == 'a'}}
              egress:
              - {action: Deny, protocol: UDP}
              - {action: Allow}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: blue-team-tcp-only}
            spec:
              selector: team == 'blue'
              types: [Egress]
              egress:
              - {action: Pass, protocol: TCP}
            """)
        var engine = PolicyEngine()
        engine.apply(resources.map { .upsert($0) })
        #expect(engine.ir == PolicyIR.compile(engine.state))
        let wd = EndpointKey(namespace: "w", name: "d")
        let evaluator = PolicyEvaluator(engine.ir)
        func verdict(_ from: EndpointKey, _ to: EndpointKey, _ proto: IPProtocol) -> Verdict {
            evaluator.evaluate(Packet(from: .endpoint(from), to: .endpoint(to), protocol: proto, destinationPort: 80))
                .verdict
        }
        #expect(verdict(xa.key, wd, .tcp) == .allow)
        #expect(verdict(EndpointKey(namespace: "x", name: "b"), wd, .tcp) == .deny)
        // Egress: the GNP (selecting through the profile's labelsToApply) passes TCP to the
        // profile; UDP hits the tier's default deny.
        #expect(verdict(wd, xa.key, .tcp) == .allow)
        let udp = evaluator.evaluate(
            Packet(from: .endpoint(wd), to: .endpoint(xa.key), protocol: .udp, destinationPort: 80))
        #expect(udp.verdict == .deny)
        #expect(udp.decidedBy == .tierDefault(.egress, wd, tier: "default", action: .deny))
        let refused = evaluator.evaluate(
            Packet(from: .endpoint(EndpointKey(namespace: "x", name: "b")), to: .endpoint(wd), protocol: .tcp))
        #expect(refused.trace.contains(.profileMissing(.ingress, wd, profile: "kns.w")))
        #expect(refused.decidedBy == .noProfileMatched(.ingress, wd))
    }

    @Test func unknownEndpointsFailClosed() {
        let engine = Topology.engine([])
        let ghost = EndpointKey(namespace: "x", name: "ghost")
        let evaluation = PolicyEvaluator(engine.ir).evaluate(
            Packet(from: .endpoint(ghost), to: .endpoint(xa.key), protocol: .tcp, destinationPort: 80))
        #expect(evaluation.verdict == .deny)
        #expect(evaluation.trace == [.unknownEndpoint(ghost)])
    }

    @Test func icmpTypeAndCode() {
        let engine = check(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: ping-only, namespace: x}
            spec:
              selector: pod == 'a'
              ingress:
              - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}
            """,
            expected: { $0.to != xa })
        let evaluator = PolicyEvaluator(engine.ir)
        let yb = EndpointKey(namespace: "y", name: "b")
        func ping(_ type: Int) -> Verdict {
            evaluator.evaluate(
                Packet(from: .endpoint(yb), to: .endpoint(xa.key), protocol: .name("ICMP"), icmpType: type, icmpCode: 0)
            ).verdict
        }
        #expect(ping(8) == .allow)
        #expect(ping(13) == .deny)
    }

    /// A named port means each destination's own port of that name.
    @Test func namedPortsResolvePerDestination() {
        let yb = Topology.Pod(namespace: "y", name: "b")
        let ya = Topology.Pod(namespace: "y", name: "a")
        var resources = Topology.resources.map { resource -> PolicyResource in
            guard case .workloadEndpoint(var endpoint) = resource else { return resource }
            let port: UInt16 = endpoint.metadata.namespace == "y" && endpoint.metadata.name == "b" ? 8080 : 80
            endpoint.spec.ports = [EndpointPort(name: "web", protocol: .tcp, port: port)]
            return .workloadEndpoint(endpoint)
        }
        resources += Topology.manifest(
            """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: web-only, namespace: x}
            spec:
              podSelector: {matchLabels: {pod: a}}
              policyTypes: [Egress]
              egress:
              - ports: [{port: web}]
            """)
        var engine = PolicyEngine()
        engine.apply(resources.map { .upsert($0) })
        let evaluator = PolicyEvaluator(engine.ir)
        func verdict(_ to: Topology.Pod, _ port: UInt16) -> Verdict {
            evaluator.evaluate(
                Packet(from: .endpoint(xa.key), to: .endpoint(to.key), protocol: .tcp, destinationPort: port)
            ).verdict
        }
        #expect(verdict(yb, 8080) == .allow)
        #expect(verdict(yb, 80) == .deny)
        #expect(verdict(ya, 80) == .allow)
        #expect(verdict(ya, 8080) == .deny)
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }

    /// Matches the engine cannot evaluate yet are refused and reported, never ignored.
    @Test func unsupportedMatchesAreReported() {
        let engine = Topology.engine(
            Topology.manifest(
                """
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: by-service, namespace: x}
                spec:
                  selector: all()
                  types: [Egress]
                  egress:
                  - {action: Allow, destination: {services: {name: web}}}
                """))
        #expect(engine.problems == ["x/by-service": "services is not supported yet"])
        #expect(engine.ir.policies.isEmpty)
    }

    @Test func ipSetIDsAreDeterministicAndCanonical() throws {
        let first = IPSetDefinition(selector: try Selector.parse("a == 'b' && c == \"d\""))
        let second = IPSetDefinition(selector: try Selector.parse("(a == \"b\" && c == 'd')"))
        #expect(first.id == second.id)
        #expect(first.id.rawValue.hasPrefix("s:") && first.id.rawValue.count == 18)
        #expect(first.id != IPSetDefinition(selector: try Selector.parse("a == 'b'")).id)
        let named = IPSetDefinition(selector: .all, namedPort: .init(name: "http", protocolNumber: 6))
        #expect(named.id.rawValue.hasPrefix("p:"))
    }
}
