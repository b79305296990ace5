import Foundation
import Testing

@testable import TabbyCore

/// Reads a fixture from Fixtures/calico-docs.
func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/calico-docs/\(name)", withExtension: nil))
    return try String(contentsOf: url, encoding: .utf8)
}

@Suite("Manifests from Calico's and Kubernetes' documentation")
struct DocumentedManifestTests {
    static let expected: [(file: String, resources: [String])] = [
        ("networkpolicy.yaml", ["NetworkPolicy production/allow-tcp-6379"]),
        (
            "globalnetworkpolicy.yaml",
            [
                "GlobalNetworkPolicy allow-tcp-port-6379", "GlobalNetworkPolicy allow-ping-in-cluster",
                "GlobalNetworkPolicy allow-cluster-internal-ingress", "GlobalNetworkPolicy internal-access.allow-dns",
            ]
        ),
        ("tier.yaml", ["Tier internal-access"]),
        ("networksets.yaml", ["NetworkSet staging/external-database", "GlobalNetworkSet a-name-for-the-set"]),
        ("endpoints.yaml", ["HostEndpoint some.name", "WorkloadEndpoint default/node1-k8s-my--nginx--b1337a-eth0"]),
        ("profile.yaml", ["Profile dev-apps"]),
        (
            "ipam.yaml",
            [
                "IPPool my.ippool-1", "IPPool default-ipv6-ippool", "IPReservation my-ipreservation-1",
                "IPAMConfiguration default",
            ]
        ),
        ("bgp.yaml", ["BGPConfiguration default", "BGPPeer some.name", "BGPPeer peer-with-route-reflectors"]),
        ("felix-and-node.yaml", ["FelixConfiguration default", "Node node-hostname"]),
        (
            "kubernetes.yaml",
            [
                "NetworkPolicy default/test-network-policy", "NetworkPolicy default/multi-port-egress",
                "NetworkPolicy default/default-deny-ingress", "Namespace production",
            ]
        ),
        ("list.yaml", ["NetworkPolicy x/allow-a", "NetworkPolicy x/allow-b"]),
        ("policy.json", ["GlobalNetworkPolicy deny-blue"]),
    ]

    @Test("every documented example is valid", arguments: expected)
    func documentedExampleIsValid(file: String, resources: [String]) throws {
        let manifest = Manifest(text: try fixture(file), source: file)
        #expect(manifest.problems.map(\.description) == [])
        #expect(manifest.resources.map(\.description) == resources)
    }

    @Test("YAML and JSON output read back to the same resources", arguments: expected.map(\.file))
    func roundTrips(file: String) throws {
        let original = Manifest(text: try fixture(file), source: file).resources
        for format in ManifestFormat.allCases {
            let text = try format.render(original)
            let again = Manifest(text: text, source: "rendered.\(format.rawValue)")
            #expect(again.problems.map(\.description) == [], "\(format) output:\n\(text)")
            #expect(again.resources == original, "\(format) output:\n\(text)")
        }
    }

    @Test func fieldsAreDecodedAsWritten() throws {
        let policy = try #require(
            Manifest(text: try fixture("networkpolicy.yaml"), source: "p").resources.first?.as(NetworkPolicy.self)
        )
        #expect(policy.spec.selector == "role == 'database'")
        #expect(policy.spec.types == [.ingress, .egress])
        let rule = try #require(policy.spec.ingress?.first)
        #expect(rule.action == .allow)
        #expect(rule.protocol == .name("TCP"))
        #expect(rule.destination?.ports == [.number(6379)])
        #expect(rule.metadata?.annotations == ["from": "frontend", "to": "database"])

        let list = Manifest(text: try fixture("list.yaml"), source: "l").resources
        let egress = try #require(list.last?.as(NetworkPolicy.self)?.spec.egress?.first)
        #expect(egress.destination?.ports == [.number(53), .range(1000, 2000), .named("serve-81-tcp")])

        let endpoints = Manifest(text: try fixture("endpoints.yaml"), source: "e").resources
        let workload = try #require(endpoints.last?.as(WorkloadEndpoint.self))
        // An unquoted number too large for an integer stays the text that was written.
        #expect(workload.spec.containerID == "1337495556942031415926535")
        #expect(workload.spec.mac == "ca:fe:1d:52:bb:e9")

        let felix = try #require(
            Manifest(text: try fixture("felix-and-node.yaml"), source: "f").resources.first?.as(FelixConfiguration.self)
        )
        #expect(felix.spec.otherFields["ipipMTU"] == .int(1400))
        #expect(felix.spec.otherFields["chainInsertMode"] == .string("Append"))
        #expect(
            felix.spec.failsafeInboundHostPorts == [
                ProtoPort(protocol: "tcp", port: 22), ProtoPort(protocol: "udp", port: 68),
            ])

        let bgp = try #require(
            Manifest(text: try fixture("bgp.yaml"), source: "b").resources.first?.as(BGPConfiguration.self))
        #expect(bgp.spec.asNumber == ASNumber(63400))
        #expect(bgp.spec.listenPort == 178)
    }
}

@Suite("Defaults applied as Calico applies them")
struct DefaultTests {
    static func single<T: ResourceObject>(_ yaml: String, as type: T.Type) throws -> T {
        let manifest = Manifest(text: yaml, source: "test.yaml")
        #expect(manifest.problems.map(\.description) == [])
        return try #require(manifest.resources.first?.as(T.self))
    }

    @Test(
        "policy types follow the rules given",
        arguments: [
            ("ingress: [{action: Allow}]", [PolicyType.ingress]),
            ("egress: [{action: Allow}]", [.egress]),
            ("ingress: [{action: Allow}]\n  egress: [{action: Deny}]", [.ingress, .egress]),
            ("selector: all()", [.ingress]),
            ("types: [Egress]", [.egress]),
        ]
    )
    func policyTypes(spec: String, types: [PolicyType]) throws {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  \(spec)\n"
        let policy = try Self.single(yaml, as: NetworkPolicy.self)
        #expect(policy.spec.types == types)
        #expect(policy.spec.tier == "default")
        #expect(policy.metadata.namespace == "default")
    }

    @Test func ipPoolDefaults() throws {
        let v4 = try Self.single(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.0.0.0/16}",
            as: IPPool.self
        )
        #expect(v4.spec.blockSize == 26)
        #expect(v4.spec.vxlanMode == .never)
        #expect(v4.spec.ipipMode == .never)
        #expect(v4.spec.nodeSelector == "all()")
        #expect(v4.spec.allowedUses == [.workload, .tunnel])
        #expect(v4.spec.assignmentMode == .automatic)
        let v6 = try Self.single(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 'fd00::/48'}",
            as: IPPool.self
        )
        #expect(v6.spec.blockSize == 122)
    }

    @Test func tierAndIPAMDefaults() throws {
        let tier = try Self.single(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}", as: Tier.self)
        #expect(tier.spec.order == 1_000_000)
        #expect(tier.spec.defaultAction == .deny)
        let other = try Self.single(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}", as: Tier.self)
        #expect(other.spec.order == nil)
        let ipam = try Self.single(
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}",
            as: IPAMConfiguration.self
        )
        #expect(ipam.spec.strictAffinity == false)
        #expect(ipam.spec.maxBlocksPerHost == 0)
        #expect(ipam.spec.autoAllocateBlocks == true)
    }

    @Test func kubernetesPolicyDefaults() throws {
        let manifest = Manifest(text: try fixture("kubernetes.yaml"), source: "k")
        let policy = try #require(manifest.resources.first?.as(KubernetesNetworkPolicy.self))
        #expect(policy.spec.ingress?.first?.ports?.first?.protocol == "TCP")
        let egressOnly = try Self.single(
            """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: e, namespace: x}
            spec:
              podSelector: {}
              egress: [{ports: [{port: 53}]}]
            """,
            as: KubernetesNetworkPolicy.self
        )
        #expect(egressOnly.spec.policyTypes == [.ingress, .egress])
        #expect(egressOnly.spec.egress?.first?.ports?.first?.protocol == "TCP")
    }

    @Test func namespaceBecomesProfile() throws {
        let manifest = Manifest(text: try fixture("kubernetes.yaml"), source: "k")
        let namespace = try #require(manifest.resources.last?.as(KubernetesNamespace.self))
        let profile = namespace.profile
        #expect(profile.metadata.name == "kns.production")
        #expect(
            profile.spec.labelsToApply == [
                "pcns.projectcalico.org/name": "production", "pcns.env": "prod",
                "pcns.kubernetes.io/metadata.name": "production",
            ]
        )
        #expect(profile.spec.ingress == [Rule(action: .allow)])
        #expect(profile.spec.egress == [Rule(action: .allow)])
        #expect(profile.validate() == [])
    }
}
