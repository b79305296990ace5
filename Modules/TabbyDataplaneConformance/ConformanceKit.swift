import Foundation
import TabbyCore
import TabbyDataplane
import TabbyPolicy

/// The conformance kit every dataplane backend passes: the upstream e2e topology (namespaces x,
/// y, z; pods a, b, c) in a `ConformanceLab`, policies compiled by the policy engine and applied
/// to the backend as deltas, real TCP, UDP and ICMP packets, and every verdict compared with the
/// reference evaluator's (`PolicyEvaluator`). A mismatch is reported with the packet, what the
/// kernel did, and the evaluator's trace.
public final class ConformanceKit: @unchecked Sendable {
    // @unchecked: used from one test at a time; `engine` changes only inside `update`.
    public static let namespaces = ["x", "y", "z"]
    public static let podNames = ["a", "b", "c"]

    public let lab: ConformanceLab
    public let dataplane: any Dataplane
    public private(set) var engine = PolicyEngine()
    /// Resources a case added, removed before the next case.
    private var caseKeys: [PolicyResourceKey] = []

    /// Builds the lab and hands the backend the base state (namespaces, pods, their profiles).
    public init(makeDataplane: (_ nodeNamespacePath: String) throws -> any Dataplane) throws {
        lab = try ConformanceLab(namespaces: Self.namespaces, pods: Self.podNames)
        do {
            dataplane = try makeDataplane(lab.nodePath)
            try update(baseResources().map { .upsert($0) })
        } catch {
            lab.tearDown()
            throw error
        }
    }

    public func tearDown() { lab.tearDown() }

    func baseResources() -> [PolicyResource] {
        var resources: [PolicyResource] = []
        for namespace in Self.namespaces {
            resources.append(
                .namespace(
                    KubernetesNamespace(
                        metadata: ObjectMeta(
                            name: namespace, labels: ["ns": namespace, "kubernetes.io/metadata.name": namespace]))))
            var profile = ProfileSpec()
            profile.ingress = [Rule(action: .allow)]
            profile.egress = [Rule(action: .allow)]
            resources.append(.profile(Profile(metadata: ObjectMeta(name: "kns.\(namespace)"), spec: profile)))
        }
        for pod in lab.pods {
            var spec = WorkloadEndpointSpec()
            spec.orchestrator = "k8s"
            spec.pod = pod.name
            spec.node = "conformance"
            spec.interfaceName = pod.interface
            spec.ipNetworks = ["\(pod.address)/32"]
            spec.profiles = ["kns.\(pod.namespace)"]
            spec.ports = [
                EndpointPort(name: "serve-80-tcp", protocol: .tcp, port: 80),
                EndpointPort(name: "serve-80-udp", protocol: .udp, port: 80),
                EndpointPort(name: "serve-81-tcp", protocol: .tcp, port: 81),
                EndpointPort(name: "serve-81-udp", protocol: .udp, port: 81),
            ]
            let metadata = ObjectMeta(name: pod.name, namespace: pod.namespace, labels: ["pod": pod.name])
            resources.append(.workloadEndpoint(WorkloadEndpoint(metadata: metadata, spec: spec)))
        }
        return resources
    }

    /// Feeds the engine and applies the resulting delta to the backend.
    public func update(_ updates: [PolicyUpdate]) throws {
        let delta = engine.apply(updates)
        try dataplane.apply(delta, resulting: engine.ir)
    }

    /// Replaces the previous case's policies with `manifest`'s.
    public func load(_ manifest: String) throws {
        let parsed = Manifest(text: manifest, source: "conformance case")
        guard parsed.problems.isEmpty else {
            throw LabError("case manifest is invalid: \(parsed.problems.map(\.description).joined(separator: "; "))")
        }
        let resources = parsed.resources.compactMap(PolicyResource.init)
        let keys = resources.map(\.key)
        try update(caseKeys.filter { !keys.contains($0) }.map { .delete($0) } + resources.map { .upsert($0) })
        caseKeys = keys
    }

    /// Every pair of distinct pods on TCP and UDP 80 and 81, plus ICMP echo.
    public func grid() -> [ConformanceLab.Probe] {
        var probes: [ConformanceLab.Probe] = []
        for from in lab.pods {
            for to in lab.pods where to != from {
                for kind in [ConformanceLab.Probe.Kind.tcp, .udp] {
                    for port: UInt16 in [80, 81] {
                        probes.append(.init(from: from, to: to.address, kind: kind, port: port))
                    }
                }
                probes.append(.init(from: from, to: to.address, kind: .icmp, port: 0))
            }
        }
        return probes
    }

    /// The evaluator's verdict for a probe, with its trace.
    public func expected(_ probe: ConformanceLab.Probe) -> Evaluation {
        let destination = lab.pods.first { $0.address == probe.to }
        let packet = Packet(
            from: .endpoint(probe.from.key),
            to: destination.map { .endpoint($0.key) } ?? .address(probe.to),
            protocol: probe.kind == .tcp ? .tcp : probe.kind == .udp ? .udp : .name("ICMP"),
            sourcePort: probe.kind == .icmp ? nil : 40000,
            destinationPort: probe.kind == .icmp ? nil : probe.port,
            icmpType: probe.kind == .icmp ? 8 : nil, icmpCode: probe.kind == .icmp ? 0 : nil)
        return PolicyEvaluator(engine.ir).evaluate(packet)
    }

    /// Sends the probes and returns every disagreement with the evaluator.
    public func check(_ probes: [ConformanceLab.Probe], context: String) throws -> [String] {
        let results = try lab.probe(probes)
        return probes.compactMap { probe in
            let evaluation = expected(probe)
            let allowed = evaluation.verdict == .allow
            guard let got = results[probe], got != allowed else { return nil }
            return "\(context): \(probe): kernel \(got ? "allowed" : "denied"), evaluator \(evaluation.verdict): "
                + evaluation.trace.map(\.description).joined(separator: "; ")
        }
    }

    // MARK: Cases

    /// REFERENCE.md section 10, as Kubernetes NetworkPolicy manifests.
    public static let kubernetesCases: [(name: String, manifest: String)] = [
        ("1 deny all ingress in x", knp("deny-ingress", "x", "podSelector: {}\npolicyTypes: [Ingress]")),
        ("2 deny all in and out of x", knp("deny-all", "x", "podSelector: {}\npolicyTypes: [Ingress, Egress]")),
        (
            "3 x/a from namespace y",
            knp(
                "from-y", "x",
                "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: y}}"
            )
        ),
        (
            "4 x/a from one peer: ns y,z AND pod b",
            knp(
                "and-peer", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                ingress:
                - from:
                  - namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y, z]}]}
                    podSelector: {matchLabels: {pod: b}}
                """)
        ),
        (
            "4 x/a from two peers: ns y,z OR pod b",
            knp(
                "or-peers", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                ingress:
                - from:
                  - namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y, z]}]}
                  - podSelector: {matchLabels: {pod: b}}
                """)
        ),
        (
            "5 x/a from y on TCP 81",
            knp(
                "y-tcp-81", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                ingress:
                - from:
                  - namespaceSelector: {matchLabels: {ns: y}}
                  ports: [{protocol: TCP, port: 81}]
                """)
        ),
        (
            "6 x on named port serve-81-tcp",
            knp("named", "x", "podSelector: {}\ningress:\n- ports: [{port: serve-81-tcp}]")
        ),
        (
            "7 x/a TCP 53-80",
            knp(
                "end-80", "x",
                "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports: [{protocol: TCP, port: 53, endPort: 80}]")
        ),
        (
            "7 x/a TCP 53-84",
            knp(
                "end-84", "x",
                "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports: [{protocol: TCP, port: 53, endPort: 84}]")
        ),
        (
            "8 x/a egress except x/b",
            knp(
                "except-xb", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.2/32]}
                """)
        ),
        (
            "8 x/a egress except x/b, plus allow x/b",
            knp(
                "except-xb", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.2/32]}
                """)
                + knp(
                    "allow-xb", "x",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- to:\n  - ipBlock: {cidr: 10.0.0.2/32}"
                )
        ),
        (
            "9 x/a egress only to y/a; y ingress only from x/a",
            knp(
                "xa-to-ya", "x",
                """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {matchLabels: {ns: y}}
                    podSelector: {matchLabels: {pod: a}}
                """)
                + knp(
                    "y-from-xa", "y",
                    """
                    podSelector: {}
                    ingress:
                    - from:
                      - namespaceSelector: {matchLabels: {ns: x}}
                        podSelector: {matchLabels: {pod: a}}
                    """)
        ),
        (
            "10 x/a only UDP 81",
            knp("udp-81", "x", "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports: [{protocol: UDP, port: 81}]")
        ),
    ]

    /// Calico's own semantics: tiers with Pass, a tier whose default is Pass, a Log-only policy
    /// (which drops: being selected isolates), order ties broken by name, NetworkSets and
    /// notNets, a GlobalNetworkPolicy with a namespaceSelector; profiles decide everything the
    /// policies leave.
    public static let calicoCases: [(name: String, manifest: String)] = [
        (
            "tier security passes pods a, x allows TCP 80",
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
            """
        ),
        (
            "tier platform with defaultAction Pass denies b -> a",
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
            """
        ),
        (
            "a Log-only policy isolates x",
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: log-everything, namespace: x}
            spec:
              selector: all()
              ingress:
              - {action: Log}
            """
        ),
        (
            "equal orders: the policy named first decides (aaa denies before bbb allows)",
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: aaa, namespace: x}
            spec:
              selector: pod == 'b'
              order: 10
              ingress:
              - {action: Deny, source: {selector: pod == 'a'}}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: bbb, namespace: x}
            spec:
              selector: pod == 'b'
              order: 10
              ingress:
              - {action: Allow}
            """
        ),
        (
            "a NetworkSet as a source, and notNets",
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkSet
            metadata: {name: trusted, namespace: x, labels: {role: trusted}}
            spec: {nets: [10.0.0.0/24, 10.65.0.0/16]}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: from-trusted, namespace: x}
            spec:
              selector: pod == 'c'
              ingress:
              - {action: Allow, protocol: TCP, source: {selector: role == 'trusted'}}
              - {action: Allow, protocol: UDP, source: {notNets: [10.0.1.0/24]}}
            """
        ),
        (
            "global policy: pods a in x refuse namespace y",
            """
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: a-in-x-not-from-y}
            spec:
              selector: pod == 'a'
              namespaceSelector: ns == 'x'
              ingress:
              - {action: Deny, source: {namespaceSelector: ns == 'y'}}
              - {action: Allow}
            """
        ),
        (
            // The probes' source ports are 10000 and up (the evaluator sees 40000).
            "source ports: x takes TCP 80 from high ports, UDP from low ones; y/a sends no UDP 81 from high ones",
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: from-high-ports, namespace: x}
            spec:
              selector: all()
              ingress:
              - {action: Allow, protocol: TCP, source: {ports: ["1024:65535"]}, destination: {ports: [80]}}
              - {action: Allow, protocol: UDP, source: {ports: ["1:1023"]}}
            ---
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: not-from-high-ports, namespace: y}
            spec:
              selector: pod == 'a'
              types: [Egress]
              egress:
              - {action: Deny, protocol: UDP, source: {notPorts: ["1:1023"]}, destination: {ports: [81]}}
              - {action: Allow}
            """
        ),
    ]

    /// Runs every Calico case over the full grid; returns the mismatches.
    public func runCalicoCases() throws -> [String] {
        var mismatches: [String] = []
        for (name, manifest) in Self.calicoCases {
            try load(manifest)
            mismatches += try check(grid(), context: "case \(name)")
        }
        try load("")
        return mismatches
    }

    static func knp(_ name: String, _ namespace: String, _ spec: String) -> String {
        let indented = spec.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
            .joined(separator: "\n")
        return """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: \(name), namespace: \(namespace)}
            spec:
            \(indented)
            ---

            """
    }

    /// Runs every Kubernetes case over the full grid; returns the mismatches.
    public func runKubernetesCases() throws -> [String] {
        var mismatches: [String] = []
        for (name, manifest) in Self.kubernetesCases {
            try load(manifest)
            mismatches += try check(grid(), context: "case \(name)")
        }
        try load("")
        return mismatches
    }

    /// `count` seeded random cases: each a random set of Calico NetworkPolicies and
    /// GlobalNetworkPolicies (selectors, namespace selectors, nets, protocols, destination and
    /// source ports, actions, orders, both directions), checked with random probes
    /// (`probesPerCase` each; every probe is a policy/packet case). Mismatches carry the seed.
    public func runRandomCases(seed: UInt64, count: Int, probesPerCase: Int = 12) throws -> [String] {
        var random = SplitMix(seed: seed)
        var mismatches: [String] = []
        for index in 0..<count {
            try load(randomManifest(&random))
            var probes: [ConformanceLab.Probe] = []
            let grid = grid()
            for _ in 0..<probesPerCase { probes.append(grid[Int(random.next() % UInt64(grid.count))]) }
            mismatches += try check(Array(Set(probes)), context: "seed \(seed) case \(index)")
        }
        try load("")
        return mismatches
    }

    func randomManifest(_ random: inout SplitMix) -> String {
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        var text = ""
        for index in 0..<Int(1 + random.next() % 3) {
            let global = random.next() % 4 == 0
            let namespace = pick(Self.namespaces)
            let selector = pick(["all()", "pod == 'a'", "pod == 'b'", "pod in {'a', 'c'}", "pod != 'b'"])
            let direction = pick(["ingress", "egress"])
            var rules: [String] = []
            for _ in 0..<Int(1 + random.next() % 3) {
                let action = pick(["Allow", "Allow", "Deny", "Pass", "Log"])
                var rule = "  - action: \(action)\n"
                let proto = pick(["", "TCP", "UDP", "ICMP"])
                if !proto.isEmpty { rule += "    protocol: \(proto)\n" }
                // The peer is the source of ingress and the destination of egress.
                var peer: [String] = []
                var destinationPorts: [String] = []
                switch random.next() % 5 {
                case 0: peer.append("selector: \"\(pick(["pod == 'a'", "pod == 'c'", "all()"]))\"")
                case 1: peer.append("namespaceSelector: \"ns == '\(pick(Self.namespaces))'\"")
                case 2: peer.append("nets: [\(pick(["10.0.0.0/24", "10.0.1.2/32", "10.0.0.0/16"]))]")
                case 3: peer.append("notNets: [\(pick(["10.0.2.0/24", "10.0.0.1/32"]))]")
                default: break
                }
                // Source ports: the lab's probes come from ports 10000 and up (the evaluator sees
                // 40000), so these ranges hold for every probe or for none, in the kernel as in the
                // evaluator.
                var sourcePorts: [String] = []
                if proto == "TCP" || proto == "UDP" {
                    destinationPorts.append("ports: [\(pick(["80", "81", "\"80:81\""]))]")
                    if random.next() % 3 == 0 {
                        sourcePorts.append(
                            pick([
                                "ports: [\"1024:65535\"]", "ports: [\"1:1023\"]", "notPorts: [\"1:1023\"]",
                                "notPorts: [\"1024:65535\"]",
                            ]))
                    }
                }
                let source = (direction == "ingress" ? peer : []) + sourcePorts
                let destination = (direction == "egress" ? peer : []) + destinationPorts
                if !source.isEmpty { rule += "    source: {\(source.joined(separator: ", "))}\n" }
                if !destination.isEmpty { rule += "    destination: {\(destination.joined(separator: ", "))}\n" }
                rules.append(rule)
            }
            let order = random.next() % 3 == 0 ? "" : "  order: \(random.next() % 200)\n"
            let kind = global ? "GlobalNetworkPolicy" : "NetworkPolicy"
            let metadata = global ? "{name: random-\(index)}" : "{name: random-\(index), namespace: \(namespace)}"
            text += """
                apiVersion: projectcalico.org/v3
                kind: \(kind)
                metadata: \(metadata)
                spec:
                  selector: \(selector)
                \(order)  types: [\(direction == "ingress" ? "Ingress" : "Egress")]
                  \(direction):
                \(rules.joined())---

                """
        }
        return text
    }
}

/// splitmix64: reproducible random cases from a printed seed.
public struct SplitMix {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
