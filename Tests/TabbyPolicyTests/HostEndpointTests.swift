import TabbyCore
import TabbyPolicy
import Testing

/// Host endpoints: selected by policies through their labels, evaluated by packets to and
/// from their expected addresses, and members of the IP sets of selectors matching them.
@Suite struct HostEndpointTests {
    static let gateway = EndpointKey.hostEndpoint("node-1-eth0")
    static let gatewayAddress = IPAddress("192.168.0.10")!
    static let xa = Topology.Pod(namespace: "x", name: "a")
    static let xb = Topology.Pod(namespace: "x", name: "b")
    static let ya = Topology.Pod(namespace: "y", name: "a")

    static func hostEndpoint(
        labels: [String: String] = ["role": "gateway", "host": "node-1"], profiles: [String]? = nil
    )
        -> PolicyResource
    {
        var spec = HostEndpointSpec()
        spec.node = "node-1"
        spec.interfaceName = "eth0"
        spec.expectedIPs = [gatewayAddress.description]
        spec.profiles = profiles
        spec.ports = [EndpointPort(name: "ssh", protocol: .tcp, port: 22)]
        return .hostEndpoint(HostEndpoint(metadata: ObjectMeta(name: "node-1-eth0", labels: labels), spec: spec))
    }

    static func engine(_ manifest: String, hostEndpoint: PolicyResource = hostEndpoint()) -> PolicyEngine {
        var engine = Topology.engine(Topology.manifest(manifest) + [hostEndpoint])
        #expect(engine.problems.isEmpty, "\(engine.problems)")
        #expect(engine.ir == PolicyIR.compile(engine.state))
        engine.apply([])
        return engine
    }

    static func verdict(
        _ ir: PolicyIR, from source: PacketPeer, to destination: PacketPeer, _ proto: IPProtocol = .tcp,
        port: UInt16
    ) -> Evaluation {
        PolicyEvaluator(ir).evaluate(Packet(from: source, to: destination, protocol: proto, destinationPort: port))
    }

    static let gatewayPolicy = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: gateway}
        spec:
          selector: role == 'gateway'
          types: [Ingress, Egress]
          ingress:
          - {action: Allow, protocol: TCP, source: {selector: pod == 'a'}, destination: {ports: [443, ssh]}}
          egress:
          - {action: Allow, protocol: UDP, destination: {ports: [53]}}
        ---
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata: {name: everything-in-x, namespace: x}
        spec:
          selector: all()
          ingress:
          - {action: Allow}
        """

    @Test func programIsKeyedByNameWithItsInterfaceAndAddresses() throws {
        let engine = Self.engine(Self.gatewayPolicy)
        let program = try #require(engine.ir.endpoints[Self.gateway])
        #expect(Self.gateway.description == "hep/node-1-eth0")
        #expect(program.kind == .host)
        #expect(program.interfaceName == "eth0")
        #expect(program.addresses == [Self.gatewayAddress])
        // Only the global policy selects it: a namespaced policy's `all()` stays in its namespace.
        #expect(program.ingress.map(\.policies) == [[PolicyID(namespace: nil, name: "gateway")]])
        #expect(program.egress.map(\.policies) == [[PolicyID(namespace: nil, name: "gateway")]])
        #expect(program.profiles.isEmpty)
        #expect(engine.ir.endpoint(owning: Self.gatewayAddress) == Self.gateway)
        #expect(engine.ir.endpoints[Self.xa.key]?.kind == .workload)
    }

    struct Probe: Sendable, CustomTestStringConvertible {
        var source: PacketPeer
        var destination: PacketPeer
        var proto: IPProtocol
        var port: UInt16
        var allowed: Bool
        var testDescription: String { "\(source) -> \(destination) \(proto)/\(port)" }
    }

    static let probes: [Probe] = [
        Probe(source: .endpoint(xa.key), destination: .endpoint(gateway), proto: .tcp, port: 443, allowed: true),
        Probe(source: .endpoint(ya.key), destination: .endpoint(gateway), proto: .tcp, port: 22, allowed: true),
        Probe(source: .endpoint(xb.key), destination: .endpoint(gateway), proto: .tcp, port: 443, allowed: false),
        Probe(source: .endpoint(xa.key), destination: .endpoint(gateway), proto: .tcp, port: 80, allowed: false),
        Probe(source: .endpoint(xa.key), destination: .endpoint(gateway), proto: .udp, port: 443, allowed: false),
        Probe(
            source: .endpoint(gateway), destination: .address(IPAddress("8.8.8.8")!), proto: .udp, port: 53,
            allowed: true),
        Probe(
            source: .endpoint(gateway), destination: .address(IPAddress("8.8.8.8")!), proto: .tcp, port: 53,
            allowed: false),
        // Host to pod: the host endpoint's egress (UDP 53 only) drops it before x/a's ingress.
        Probe(source: .endpoint(gateway), destination: .endpoint(xa.key), proto: .tcp, port: 80, allowed: false),
        Probe(
            source: .address(IPAddress("203.0.113.9")!), destination: .endpoint(gateway), proto: .tcp, port: 443,
            allowed: false),
    ]

    @Test(arguments: probes)
    func policiesDecideTrafficToAndFromTheHost(_ probe: Probe) {
        let engine = Self.engine(Self.gatewayPolicy)
        let evaluation = Self.verdict(
            engine.ir, from: probe.source, to: probe.destination, probe.proto, port: probe.port)
        #expect(
            (evaluation.verdict == .allow) == probe.allowed, "\(evaluation.trace.map(\.description))")
    }

    @Test func unselectedHostEndpointIsDecidedByItsProfilesAndDeniedWithout() {
        let closed = Self.engine("")
        let evaluation = Self.verdict(closed.ir, from: .endpoint(Self.xa.key), to: .endpoint(Self.gateway), port: 22)
        #expect(evaluation.verdict == .deny)
        #expect(evaluation.decidedBy == .noProfileMatched(.ingress, Self.gateway))
        let open = Self.engine(
            """
            apiVersion: projectcalico.org/v3
            kind: Profile
            metadata: {name: host-open}
            spec:
              labelsToApply: {zone: dmz}
              ingress: [{action: Allow}]
              egress: [{action: Allow}]
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: dmz-no-udp}
            spec:
              selector: zone == 'dmz'
              ingress:
              - {action: Deny, protocol: UDP}
              - {action: Pass}
            """,
            hostEndpoint: Self.hostEndpoint(profiles: ["host-open"]))
        #expect(open.ir.endpoints[Self.gateway]?.profiles == ["host-open"])
        // The profile's labelsToApply reach the host endpoint: dmz-no-udp selects it.
        #expect(
            Self.verdict(open.ir, from: .endpoint(Self.xa.key), to: .endpoint(Self.gateway), port: 22).verdict == .allow
        )
        #expect(
            Self.verdict(open.ir, from: .endpoint(Self.xa.key), to: .endpoint(Self.gateway), .udp, port: 22).verdict
                == .deny)
    }

    @Test func hostAddressesAreMembersOfMatchingSets() throws {
        let engine = Self.engine(
            """
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: a-from-hosts}
            spec:
              selector: pod == 'a'
              ingress:
              - {action: Allow, source: {selector: has(host)}}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: b-from-global}
            spec:
              selector: pod == 'b'
              ingress:
              - {action: Allow, source: {namespaceSelector: global()}}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: host-open}
            spec:
              selector: has(host)
              types: [Egress]
              egress: [{action: Allow}]
            """)
        let host = try #require(
            engine.ir.ipSets.values.first { $0.definition.selector.canonical == "has(host)" })
        #expect(host.members == [.net(CIDR("192.168.0.10/32")!)])
        #expect(
            Self.verdict(engine.ir, from: .endpoint(Self.gateway), to: .endpoint(Self.xa.key), port: 80).verdict
                == .allow)
        #expect(
            Self.verdict(engine.ir, from: .endpoint(Self.xb.key), to: .endpoint(Self.xa.key), port: 80).verdict == .deny
        )
        #expect(
            Self.verdict(engine.ir, from: .endpoint(Self.gateway), to: .endpoint(Self.xb.key), port: 80).verdict
                == .allow)
        #expect(
            Self.verdict(engine.ir, from: .endpoint(Self.ya.key), to: .endpoint(Self.xb.key), port: 80).verdict == .deny
        )
    }

    @Test func relabellingAndDeletingAHostEndpointIsIncremental() {
        var engine = Self.engine(Self.gatewayPolicy)
        let relabel = engine.upsert(Self.hostEndpoint(labels: ["role": "worker"]))
        #expect(relabel.endpointsBound.map(\.endpoint) == [Self.gateway])
        #expect(relabel.policiesRemoved == [PolicyID(namespace: nil, name: "gateway")])
        #expect(engine.ir.endpoints[Self.gateway]?.ingress.isEmpty == true)
        #expect(engine.ir == PolicyIR.compile(engine.state))
        let removal = engine.delete(PolicyResourceKey(.hostEndpoint, name: "node-1-eth0"))
        #expect(removal.endpointsRemoved == [Self.gateway])
        #expect(engine.ir.endpoints[Self.gateway] == nil)
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }

    @Test func hostEndpointManifestIsRead() throws {
        let resources = Topology.manifest(
            """
            apiVersion: projectcalico.org/v3
            kind: HostEndpoint
            metadata: {name: node-2-eth0, labels: {role: gateway}}
            spec: {node: node-2, interfaceName: eth0, expectedIPs: [192.168.0.20]}
            """)
        let engine = Topology.engine(resources)
        let program = try #require(engine.ir.endpoints[.hostEndpoint("node-2-eth0")])
        #expect(program.addresses == [IPAddress("192.168.0.20")!])
    }

    @Test func doNotTrackAndPreDNATAreReported() {
        let engine = Topology.engine(
            Topology.manifest(
                """
                apiVersion: projectcalico.org/v3
                kind: GlobalNetworkPolicy
                metadata: {name: untracked}
                spec:
                  selector: role == 'gateway'
                  applyOnForward: true
                  doNotTrack: true
                  ingress: [{action: Allow}]
                """) + [Self.hostEndpoint()])
        #expect(engine.problems == ["untracked": "doNotTrack and preDNAT policies are not supported yet"])
        #expect(engine.ir.endpoints[Self.gateway]?.ingress.isEmpty == true)
    }
}
