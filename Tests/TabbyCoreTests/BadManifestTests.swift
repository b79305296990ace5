import Testing

@testable import TabbyCore

/// One expected problem: the line it is reported on, the field path and part of the message.
struct ExpectedProblem: CustomStringConvertible, Sendable {
    var line: Int
    var path: String
    var fragment: String
    var description: String { "\(line) \(path): …\(fragment)…" }
}

func problem(_ line: Int, _ path: String, _ fragment: String) -> ExpectedProblem {
    ExpectedProblem(line: line, path: path, fragment: fragment)
}

let calicoHeader = "apiVersion: projectcalico.org/v3\n"

@Suite("Bad manifests: every problem, with its line and field")
struct BadManifestTests {
    static let cases: [(name: String, yaml: String, expected: [ExpectedProblem])] = [
        (
            "unknown kind",
            calicoHeader + "kind: NetworkPolcy\nmetadata: {name: a}\n",
            [problem(2, "kind", "unknown kind \"NetworkPolcy\"")]
        ),
        (
            "missing kind",
            calicoHeader + "metadata: {name: a}\n",
            [problem(1, "kind", "kind is missing")]
        ),
        (
            "wrong apiVersion for the kind",
            "apiVersion: projectcalico.org/v1\nkind: IPPool\nmetadata: {name: a}\n",
            [problem(1, "apiVersion", "IPPool needs apiVersion projectcalico.org/v3")]
        ),
        (
            "not a mapping",
            "- just\n- a list\n",
            [problem(1, "(document)", "must be a mapping")]
        ),
        (
            "YAML syntax error",
            calicoHeader + "kind: Tier\nmetadata:\n  name: [a\n",
            [problem(5, "(document)", "YAML syntax error")]
        ),
        (
            "unknown fields, each reported",
            calicoHeader + "kind: Tier\nmetadata: {name: a}\nspec:\n  ordr: 1\n  defaultAction: Deny\n  colour: red\n",
            [problem(5, "spec.ordr", "unknown field \"ordr\""), problem(7, "spec.colour", "unknown field \"colour\"")]
        ),
        (
            "type mismatch and enum value",
            calicoHeader + "kind: Tier\nmetadata: {name: a}\nspec:\n  order: first\n  defaultAction: Allow\n",
            [
                problem(5, "spec.order", "expected a number, found a string"),
                problem(6, "spec.defaultAction", "must be one of Deny, Pass (got \"Allow\")"),
            ]
        ),
        (
            "bad selector names its column",
            calicoHeader + "kind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec:\n  selector: role == database\n",
            [problem(5, "spec.selector", "column 9: expected a string literal")]
        ),
        (
            "rule problems",
            calicoHeader + """
                kind: GlobalNetworkPolicy
                metadata: {name: a}
                spec:
                  ingress:
                    - action: Allow
                      destination:
                        ports: [80]
                    - action: Allow
                      protocol: UDP
                      icmp: {type: 8}
                    - action: Allow
                      protocol: TCP
                      ipVersion: 6
                      source:
                        nets: [10.0.0.0/8, 10.0.0.0/33]
                        selector: a =
                      destination:
                        ports: [Bad_Name]
                    - action: Allow
                      protocol: ICMP
                      icmp: {code: 300}

                """,
            [
                problem(8, "spec.ingress[0].destination.ports", "ports need protocol TCP, UDP or SCTP"),
                problem(11, "spec.ingress[1].icmp", "ICMP type and code need protocol ICMP or ICMPv6"),
                problem(16, "spec.ingress[2].source.nets[0]", "not an IPv6 network"),
                problem(16, "spec.ingress[2].source.nets[1]", "prefix length 33 exceeds 32"),
                problem(17, "spec.ingress[2].source.selector", "invalid selector"),
                problem(19, "spec.ingress[2].destination.ports[0]", "neither a port number"),
                problem(22, "spec.ingress[3].icmp.code", "an ICMP code needs an ICMP type"),
                problem(22, "spec.ingress[3].icmp.code", "ICMP code 300 is out of range 0-255"),
            ]
        ),
        (
            "bad port range and protocol",
            calicoHeader + """
                kind: NetworkPolicy
                metadata: {name: a, namespace: x}
                spec:
                  ingress:
                    - action: Allow
                      protocol: TCPP
                      destination:
                        ports: ["90:80", 70000]

                """,
            [
                problem(9, "spec.ingress[0].destination.ports[0]", "minimum above its maximum"),
                problem(9, "spec.ingress[0].destination.ports[1]", "port 70000 is out of range"),
                problem(7, "spec.ingress[0].protocol", "unknown protocol \"TCPP\""),
            ]
        ),
        (
            "unknown protocol",
            calicoHeader + "kind: Profile\nmetadata: {name: a}\nspec:\n  egress: [{action: Allow, protocol: TCPP}]\n",
            [problem(5, "spec.egress[0].protocol", "unknown protocol \"TCPP\"")]
        ),
        (
            "policy types against rules",
            calicoHeader
                + "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  types: [Egress]\n  ingress: [{action: Allow}]\n",
            [problem(6, "spec.ingress", "types does not include Ingress")]
        ),
        (
            "preDNAT and doNotTrack rules",
            calicoHeader + """
                kind: GlobalNetworkPolicy
                metadata: {name: a}
                spec:
                  preDNAT: true
                  doNotTrack: true
                  egress: [{action: Allow}]

                """,
            [
                problem(5, "spec.preDNAT", "preDNAT and doNotTrack cannot both be true"),
                // Missing fields are reported where their parent starts.
                problem(5, "spec.applyOnForward", "doNotTrack needs applyOnForward: true"),
                problem(5, "spec.applyOnForward", "preDNAT needs applyOnForward: true"),
                problem(7, "spec.egress", "a preDNAT policy cannot have egress rules"),
                problem(5, "spec.types", "a preDNAT policy can only be of type Ingress"),
            ]
        ),
        (
            "IP pool problems",
            calicoHeader + """
                kind: IPPool
                metadata: {name: Pool_1}
                spec:
                  cidr: 10.0.0.1/16
                  blockSize: 34
                  vxlanMode: Always
                  ipipMode: CrossSubnet
                  nodeSelector: "has(x"

                """,
            [
                problem(3, "metadata.name", "\"Pool_1\" is not a valid name"),
                problem(5, "spec.cidr", "host bits are set; the network is 10.0.0.0/16"),
                problem(6, "spec.blockSize", "must be 20-32 for an IPv4 pool (got 34)"),
                problem(8, "spec.ipipMode", "vxlanMode and ipipMode cannot both be enabled"),
                problem(9, "spec.nodeSelector", "invalid selector"),
            ]
        ),
        (
            "pool smaller than a block, IPv6 IPIP, link-local",
            calicoHeader + "kind: IPPool\nmetadata: {name: a}\nspec: {cidr: 'fd00::/124', ipipMode: Always}\n---\n"
                + calicoHeader + "kind: IPPool\nmetadata: {name: b}\nspec: {cidr: 169.254.0.0/16}\n---\n"
                + calicoHeader + "kind: IPPool\nmetadata: {name: c}\nspec: {blockSize: 26}\n",
            [
                problem(4, "spec.blockSize", "the pool fd00::/124 is smaller than one /122 block"),
                problem(4, "spec.ipipMode", "IPIP is not supported for IPv6 pools"),
                problem(9, "spec.cidr", "overlaps the link-local range"),
                problem(14, "spec.cidr", "is required"),
            ]
        ),
        (
            "metadata problems",
            calicoHeader + """
                kind: GlobalNetworkSet
                metadata:
                  name: ""
                  namespace: x
                  labels:
                    -bad: v
                    good: "also bad!"
                    version: 2

                """,
            [
                problem(9, "metadata.labels.version", "expected a string, found an integer (quote it: \"2\")"),
                problem(4, "metadata.name", "is required"),
                problem(5, "metadata.namespace", "GlobalNetworkSet is not namespaced"),
            ]
        ),
        (
            "labels and namespace problems",
            calicoHeader + """
                kind: GlobalNetworkSet
                metadata:
                  name: ok
                  namespace: x
                  labels:
                    -bad: v
                    good: "also bad!"
                spec:
                  nets: [300.0.0.0/8]

                """,
            [
                problem(5, "metadata.namespace", "GlobalNetworkSet is not namespaced"),
                problem(7, "metadata.labels.-bad", "invalid label key"),
                problem(8, "metadata.labels.good", "invalid label value \"also bad!\""),
                problem(10, "spec.nets[0]", "invalid CIDR \"300.0.0.0/8\""),
            ]
        ),
        (
            "IPAM configuration must be named default",
            calicoHeader + "kind: IPAMConfiguration\nmetadata: {name: mine}\nspec: {maxBlocksPerHost: -1}\n",
            [
                problem(4, "spec", "IPAMConfiguration must be named \"default\""),
                problem(4, "spec.maxBlocksPerHost", "must be 0 (no limit) or more"),
            ]
        ),
        (
            "BGP peer problems",
            calicoHeader + """
                kind: BGPPeer
                metadata: {name: a}
                spec:
                  node: n1
                  nodeSelector: all()
                  peerIP: 10.0.0.300
                  asNumber: "1.2.3"

                """,
            [
                problem(8, "spec.asNumber", "is not an AS number"),
                problem(6, "spec.nodeSelector", "node and nodeSelector cannot both be set"),
                problem(7, "spec.peerIP", "is not an IP address, IP:port or [IPv6]:port"),
            ]
        ),
        (
            "BGP peer selecting nodes, and a misnamed BGP configuration",
            calicoHeader + """
                kind: BGPPeer
                metadata: {name: b}
                spec: {peerSelector: has(route-reflector), asNumber: 64512}
                ---
                apiVersion: projectcalico.org/v3
                kind: BGPConfiguration
                metadata: {name: cluster}
                spec: {nodeToNodeMeshEnabled: false}

                """,
            [
                problem(4, "spec.asNumber", "cannot be set with peerSelector"),
                problem(9, "spec", "BGPConfiguration must be named \"default\" or \"node.<node name>\""),
            ]
        ),
        (
            "endpoint problems",
            calicoHeader + """
                kind: WorkloadEndpoint
                metadata: {name: w, namespace: x}
                spec:
                  interfaceName: a-very-long-interface-name
                  mac: zz:zz:zz:zz:zz:zz
                  ipNetworks: [10.0.0.1/40]
                  ports:
                    - {name: http, port: 0, protocol: ICMP}

                """,
            [
                problem(5, "spec.interfaceName", "must be 1-15 characters"),
                problem(7, "spec.ipNetworks[0]", "prefix length 40 exceeds 32"),
                problem(9, "spec.ports[0].protocol", "a named port needs protocol TCP, UDP or SCTP"),
                problem(9, "spec.ports[0].port", "must be 1-65535"),
                problem(6, "spec.mac", "is not a MAC address"),
            ]
        ),
        (
            "Kubernetes policy problems",
            """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: k, namespace: x}
            spec:
              podSelector:
                matchExpressions:
                  - {key: app, operator: In}
              ingress:
                - from:
                    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}
                      podSelector: {}
                  ports:
                    - {protocol: TCP, port: 80, endPort: 79}
                    - {protocol: ICMP, port: http, endPort: 90}

            """,
            [
                problem(7, "spec.podSelector.matchExpressions[0].values", "must not be empty for operator In"),
                problem(10, "spec.ingress[0].from[0].ipBlock", "ipBlock cannot be combined with podSelector"),
                problem(10, "spec.ingress[0].from[0].ipBlock.except[0]", "must be strictly inside the ipBlock cidr"),
                problem(13, "spec.ingress[0].ports[0].endPort", "must be between port (80) and 65535"),
                problem(14, "spec.ingress[0].ports[1].protocol", "must be TCP, UDP or SCTP"),
                problem(14, "spec.ingress[0].ports[1].endPort", "endPort needs a numeric port"),
            ]
        ),
        (
            "Kubernetes policy without podSelector",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k}\nspec:\n  policyTypes: [Ingress]\n",
            [problem(5, "spec.podSelector", "required field \"podSelector\" is missing")]
        ),
        (
            "default tier rules",
            calicoHeader + "kind: Tier\nmetadata: {name: default}\nspec: {order: 5, defaultAction: Pass}\n---\n"
                + calicoHeader
                + "kind: Tier\nmetadata: {name: a.b}\n",
            [
                problem(4, "spec.order", "the default tier's order is fixed at 1000000"),
                problem(4, "spec.defaultAction", "the default tier's defaultAction must be Deny"),
                problem(6, "spec", "cannot contain '.'"),
            ]
        ),
    ]

    @Test("reports every problem at its line and field", arguments: cases)
    func reportsEveryProblem(name: String, yaml: String, expected: [ExpectedProblem]) {
        let manifest = Manifest(text: yaml, source: "bad.yaml")
        #expect(manifest.resources.isEmpty, "\(name): a resource with problems must not be accepted")
        let found = manifest.problems
        #expect(found.count == expected.count, "\(name): \(found.map(\.description))")
        for want in expected {
            let match = found.contains { problem in
                problem.location?.line == want.line && problem.path == want.path
                    && problem.message.contains(want.fragment)
            }
            #expect(match, "\(name): expected \(want) among \(found.map(\.description))")
        }
    }

    @Test func problemsNameTheFileAndDocument() throws {
        let yaml =
            calicoHeader + "kind: Tier\nmetadata: {name: ok}\n---\n" + calicoHeader
            + "kind: Tier\nmetadata: {name: bad}\nspec: {order: x}\n"
        let manifest = Manifest(text: yaml, source: "tiers.yaml")
        #expect(manifest.resources.map(\.description) == ["Tier ok"])
        #expect(
            manifest.problems.map(\.description) == [
                "tiers.yaml:8:15: document 2: spec.order: expected a number, found a string"
            ])
    }

    @Test func listItemsAreNamedByIndex() throws {
        let yaml =
            calicoHeader + "kind: List\nitems:\n  - " + calicoHeader.replacingOccurrences(of: "\n", with: "\n    ")
            + "kind: Tier\n    metadata: {name: t}\n    spec: {order: x}\n"
        let manifest = Manifest(text: yaml, source: "list.yaml")
        #expect(
            manifest.problems.map(\.description) == [
                "list.yaml:7:19: document 1: items[0].spec.order: expected a number, found a string"
            ])
    }

    @Test func emptyDocumentsAreIgnored() {
        let manifest = Manifest(text: "---\n---\n# nothing\n", source: "empty.yaml")
        #expect(manifest.problems.isEmpty)
        #expect(manifest.resources.isEmpty)
    }
}
