#if EBPF
    import Glibc
    import Testing
    import TabbyCore
    import TabbyEBPF
    @testable import TabbyPolicy

    /// IR -> `PolicyTableCompiler` -> the maps -> the real program on crafted packets, every verdict
    /// compared with `PolicyEvaluator`.
    @Suite(
        .serialized,
        .enabled(if: geteuid() == 0, "needs CAP_BPF and CAP_SYS_ADMIN: loads BPF programs, creates namespaces"))
    struct CompiledPolicyKernelTests {
        static let endpoint = EndpointKey(namespace: "x", name: "a")
        static let pod = "10.65.0.2"

        /// Tiers with Pass and defaults, an IP set, a port range, a named port, ICMP, then a profile.
        static func ir() -> PolicyIR {
            var ir = PolicyIR()
            var peers = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("role == 'client'")),
                members: [.net(CIDR("10.1.0.0/16")!), .net(CIDR("192.168.0.0/16")!)])
            peers.id = IPSetID(rawValue: "s:clients")
            var named = IPSet(
                definition: IPSetDefinition(
                    selector: try! Selector.parse("all()"), namedPort: .init(name: "metrics", protocolNumber: 6)),
                members: [.addressPort(IPAddress(pod)!, protocolNumber: 6, port: 9090)])
            named.id = IPSetID(rawValue: "p:metrics")
            ir.ipSets = [peers.id: peers, named.id: named]

            var denyHalf = CompiledRule(action: .deny)
            denyHalf.source.nets = [CIDR("10.1.2.128/25")!]
            var passTen = CompiledRule(action: .pass)
            passTen.source.nets = [CIDR("10.0.0.0/8")!]
            var allowPing = CompiledRule(action: .allow)
            allowPing.protocolNumber = 1
            allowPing.icmp = ICMPMatch(type: 8)
            allowPing.source.nets = [CIDR("192.168.0.0/16")!]
            var allowWeb = CompiledRule(action: .allow)
            allowWeb.protocolNumber = 6
            allowWeb.destination.ports = [PortRange(80, 80), PortRange(8000, 8080)]
            allowWeb.source.ipSets = [peers.id]
            var allowMetrics = CompiledRule(action: .allow)
            allowMetrics.protocolNumber = 6
            allowMetrics.destination.namedPortSets = [named.id]
            var denyDNS = CompiledRule(action: .deny)
            denyDNS.protocolNumber = 17
            denyDNS.destination.ports = [PortRange(53, 53)]
            denyDNS.destination.nets = [CIDR("8.8.8.8/32")!]

            let security = PolicyID(namespace: nil, name: "security")
            let web = PolicyID(namespace: "x", name: "web")
            ir.policies[security] = PolicyProgram(
                id: security, tier: "security", order: 1, ingress: [denyHalf, passTen, allowPing], egress: [])
            ir.policies[web] = PolicyProgram(
                id: web, tier: "default", order: 1, ingress: [allowWeb, allowMetrics], egress: [denyDNS])
            ir.profiles["kns.x"] = ProfileProgram(name: "kns.x", ingress: [], egress: [CompiledRule(action: .allow)])
            ir.endpoints[endpoint] = EndpointProgram(
                endpoint: endpoint, addresses: [IPAddress(pod)!], interfaceName: "tabw0",
                ingress: [
                    TierBinding(name: "security", order: 1, defaultAction: .deny, policies: [security]),
                    TierBinding(name: "default", order: 2, defaultAction: .deny, policies: [web]),
                ],
                egress: [TierBinding(name: "default", order: 2, defaultAction: .pass, policies: [web])],
                profiles: ["kns.x"])
            return ir
        }

        @Test func compiledTablesInTheKernelAgreeWithTheEvaluator() throws {
            let fixture = try EBPFFixture("compiled")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let ir = Self.ir()
            let program = ir.endpoints[Self.endpoint]!
            let ingress = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            let egress = try PolicyTableCompiler.compile(program, direction: .egress, in: ir)
            try tc.writePolicy(ingress, program: 10)
            try tc.writePolicy(egress, program: 11)
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 10, egressProgram: 11))
            let evaluator = PolicyEvaluator(ir)

            let peers = ["10.1.2.3", "10.1.2.200", "10.2.0.1", "192.168.1.1", "8.8.8.8"]
            let probes: [(proto: UInt8, port: UInt16)] = [
                (6, 80), (6, 81), (6, 8080), (6, 8081), (6, 9090), (17, 53), (17, 80), (1, 0x0800), (1, 0x0301),
            ]
            var sourcePort: UInt16 = 20000
            var allowed = 0
            var checked = 0
            for direction in Direction.allCases {
                for peer in peers {
                    for probe in probes {
                        sourcePort += 1
                        let (from, to) = direction == .ingress ? (peer, Self.pod) : (Self.pod, peer)
                        let frame: [UInt8]
                        switch probe.proto {
                        case 6: frame = Packet.tcp(from, sourcePort, to, probe.port, .syn)
                        case 17: frame = Packet.udp(from, sourcePort, to, probe.port)
                        default:
                            frame =
                                probe.port == 0x0800
                                ? Packet.icmpEcho(from, to, id: sourcePort)
                                : Packet.icmp(from, to, type: UInt8(probe.port >> 8), code: UInt8(probe.port & 0xff))
                        }
                        // To the workload: tc egress of its veth; from it: tc ingress.
                        let hook = direction == .ingress ? tc.egress : tc.ingress
                        let kernel = try fixture.test(hook, frame, ifindex: ifindex) == tcActionOK
                        let packet = TabbyPolicy.Packet(
                            from: direction == .ingress ? .address(IPAddress(peer)!) : .endpoint(Self.endpoint),
                            to: direction == .ingress ? .endpoint(Self.endpoint) : .address(IPAddress(peer)!),
                            protocol: .number(Int(probe.proto)),
                            sourcePort: probe.proto == 1 ? nil : sourcePort,
                            destinationPort: probe.proto == 1 ? nil : probe.port,
                            icmpType: probe.proto == 1 ? Int(probe.port >> 8) : nil,
                            icmpCode: probe.proto == 1 ? Int(probe.port & 0xff) : nil)
                        let expected = evaluator.evaluate(packet).verdict == .allow
                        #expect(
                            kernel == expected, "\(direction) \(from) -> \(to) proto \(probe.proto) port \(probe.port)")
                        checked += 1
                        if kernel { allowed += 1 }
                    }
                }
            }
            // Not vacuous: both verdicts occur in both directions' grid.
            #expect(checked == 90)
            #expect(allowed > 10 && allowed < 80)

            // Removing the tables leaves a program with none: its traffic drops (fail closed).
            try tc.removePolicy(ingress, program: 10)
            #expect(
                try fixture.test(tc.egress, Packet.tcp("10.1.2.3", 30000, Self.pod, 80, .syn), ifindex: ifindex)
                    == tcActionShot)
            #expect(try tc.counters()[.noProgram] == 1)
        }
    }
#endif
