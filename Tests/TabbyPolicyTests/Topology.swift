import TabbyCore
import TabbyPolicy
import Testing

/// The upstream e2e / cyclonus topology: namespaces x, y, z, pods a, b, c in each, every pod
/// serving TCP and UDP on 80 and 81 with named ports `serve-<port>-<proto>`.
enum Topology {
    static let namespaces = ["x", "y", "z"]
    static let pods = ["a", "b", "c"]

    struct Pod: Hashable, CustomStringConvertible {
        var namespace: String
        var name: String
        var description: String { "\(namespace)/\(name)" }
        var key: EndpointKey { EndpointKey(namespace: namespace, name: name) }
        var address: IPAddress { Topology.address(namespace, name) }
    }

    static var allPods: [Pod] { namespaces.flatMap { ns in pods.map { Pod(namespace: ns, name: $0) } } }

    /// x/a is 10.0.0.1, y/b 10.0.1.2, z/c 10.0.2.3.
    static func address(_ namespace: String, _ pod: String) -> IPAddress {
        let nsIndex = namespaces.firstIndex(of: namespace) ?? 9
        let podIndex = (pods.firstIndex(of: pod) ?? 9) + 1
        return IPAddress("10.0.\(nsIndex).\(podIndex)")!
    }

    static func namespace(_ name: String, labels: [String: String]? = nil) -> PolicyResource {
        var labels = labels ?? ["ns": name]
        labels["kubernetes.io/metadata.name"] = name
        return .namespace(KubernetesNamespace(metadata: ObjectMeta(name: name, labels: labels)))
    }

    static func pod(
        _ namespace: String, _ name: String, labels: [String: String]? = nil, address: IPAddress? = nil,
        profiles: [String]? = nil, serviceAccount: String? = nil
    ) -> PolicyResource {
        var spec = WorkloadEndpointSpec()
        spec.serviceAccountName = serviceAccount
        spec.orchestrator = "k8s"
        spec.pod = name
        spec.node = "node-1"
        spec.ipNetworks = ["\(address ?? Self.address(namespace, name))/32"]
        spec.profiles = profiles
        spec.ports = [
            EndpointPort(name: "serve-80-tcp", protocol: .tcp, port: 80),
            EndpointPort(name: "serve-80-udp", protocol: .udp, port: 80),
            EndpointPort(name: "serve-81-tcp", protocol: .tcp, port: 81),
            EndpointPort(name: "serve-81-udp", protocol: .udp, port: 81),
        ]
        let metadata = ObjectMeta(name: name, namespace: namespace, labels: labels ?? ["pod": name])
        return .workloadEndpoint(WorkloadEndpoint(metadata: metadata, spec: spec))
    }

    /// The nine pods and three namespaces.
    static var resources: [PolicyResource] {
        namespaces.map { namespace($0) } + allPods.map { pod($0.namespace, $0.name) }
    }

    /// Resources read from a YAML manifest (which must be valid).
    static func manifest(_ text: String) -> [PolicyResource] {
        let manifest = Manifest(text: text, source: "test")
        #expect(manifest.problems.isEmpty, "\(manifest.problems)")
        return manifest.resources.compactMap(PolicyResource.init)
    }

    /// The engine after loading the topology and `extra`.
    static func engine(_ extra: [PolicyResource]) -> PolicyEngine {
        var engine = PolicyEngine()
        engine.apply((resources + extra).map { .upsert($0) })
        return engine
    }

    struct Connection: Hashable, CustomStringConvertible {
        var from: Pod
        var to: Pod
        var proto: String
        var port: UInt16
        var description: String { "\(from) -> \(to) \(proto)/\(port)" }
    }

    /// Every pair of distinct pods on TCP and UDP 80 and 81.
    static var connections: [Connection] {
        var result: [Connection] = []
        for from in allPods {
            for to in allPods where from != to {
                for proto in ["TCP", "UDP"] {
                    for port: UInt16 in [80, 81] {
                        result.append(Connection(from: from, to: to, proto: proto, port: port))
                    }
                }
            }
        }
        return result
    }

    static func evaluate(_ ir: PolicyIR, _ connection: Connection) -> Evaluation {
        let packet = Packet(
            from: .endpoint(connection.from.key), to: .endpoint(connection.to.key),
            protocol: .name(connection.proto), sourcePort: 40000, destinationPort: connection.port)
        return PolicyEvaluator(ir).evaluate(packet)
    }

    /// The connections whose verdict differs from `expected`, described with their traces.
    static func mismatches(_ ir: PolicyIR, expected: (Connection) -> Bool) -> [String] {
        connections.compactMap { connection in
            let evaluation = evaluate(ir, connection)
            let allowed = evaluation.verdict == .allow
            guard allowed != expected(connection) else { return nil }
            return "\(connection): got \(evaluation.verdict), trace: "
                + evaluation.trace.map(\.description).joined(separator: "; ")
        }
    }
}
