import TabbyCore
import TabbyPolicy
import Testing

@Suite struct KubernetesConversionTests {
    private func convert(_ spec: String) -> NetworkPolicy {
        let resources = Topology.manifest(
            """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: web, namespace: x}
            spec:
            \(spec)
            """)
        guard case .kubernetesNetworkPolicy(let policy) = resources.first else {
            Issue.record("not a Kubernetes NetworkPolicy: \(resources)")
            return NetworkPolicy(metadata: ObjectMeta(name: "none"))
        }
        return KubernetesPolicyConversion.convert(policy)
    }

    @Test func metadataTierOrderAndSelector() {
        let policy = convert(
            """
              podSelector:
                matchLabels: {role: db, app: web}
                matchExpressions:
                - {key: tier, operator: In, values: [a, b]}
                - {key: env, operator: NotIn, values: [prod]}
                - {key: team, operator: Exists}
                - {key: legacy, operator: DoesNotExist}
              policyTypes: [Ingress, Egress]
            """)
        #expect(policy.metadata.name == "knp.default.web")
        #expect(policy.metadata.namespace == "x")
        #expect(policy.spec.tier == "default")
        #expect(policy.spec.order == 1000)
        #expect(policy.spec.types == [.ingress, .egress])
        #expect(
            policy.spec.selector
                == "projectcalico.org/orchestrator == 'k8s' && app == 'web' && role == 'db' && tier in { 'a', 'b' }"
                + " && env not in { 'prod' } && has(team) && ! has(legacy)")
        #expect((try? Selector.parse(policy.spec.selector!)) != nil)
        // Types without rules: no rules, so the selected pods are isolated.
        #expect(policy.spec.ingress == [])
        #expect(policy.spec.egress == [])
    }

    @Test func peersPortsAndBlocks() {
        let policy = convert(
            """
              podSelector: {}
              ingress:
              - from:
                - podSelector: {matchLabels: {pod: b}}
                - namespaceSelector: {}
                - namespaceSelector: {matchLabels: {ns: y}}
                  podSelector: {}
                ports:
                - {port: 80}
                - {port: serve-81-udp, protocol: UDP}
                - {port: 1000, endPort: 2000}
              egress:
              - to:
                - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
              - {}
            """)
        #expect(policy.spec.selector == "projectcalico.org/orchestrator == 'k8s'")
        #expect(policy.spec.types == [.ingress, .egress])
        let tcpPorts = EntityRule(ports: [.number(80), .range(1000, 2000)])
        let udpPorts = EntityRule(ports: [.named("serve-81-udp")])
        let peers = [
            EntityRule(selector: "projectcalico.org/orchestrator == 'k8s' && pod == 'b'"),
            EntityRule(namespaceSelector: "all()"),
            EntityRule(selector: "projectcalico.org/orchestrator == 'k8s'", namespaceSelector: "ns == 'y'"),
        ]
        var expected: [Rule] = []
        for (proto, ports) in [(IPProtocol.tcp, tcpPorts), (IPProtocol.udp, udpPorts)] {
            for peer in peers {
                expected.append(Rule(action: .allow, protocol: proto, source: peer, destination: ports))
            }
        }
        #expect(policy.spec.ingress == expected)
        #expect(
            policy.spec.egress == [
                Rule(action: .allow, destination: EntityRule(nets: ["10.0.0.0/8"], notNets: ["10.1.0.0/16"])),
                Rule(action: .allow),
            ])
    }

    @Test func emptyIngressRuleAllowsEverything() {
        let policy = convert(
            """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - {}
            """)
        #expect(policy.spec.types == [.ingress])
        #expect(policy.spec.ingress == [Rule(action: .allow)])
        #expect(policy.spec.egress == nil)
    }
}
