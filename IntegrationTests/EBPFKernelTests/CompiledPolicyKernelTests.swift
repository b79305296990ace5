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

        /// Tiers with Pass and defaults, an IP set, a port range, a named port, ICMP, source ports (the
        /// peer's on ingress, one of them named, the endpoint's on egress), then a profile.
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
            // The clients' own named port (their source port on ingress): a relation with their address.
            var clientPorts = IPSet(
                definition: IPSetDefinition(
                    selector: try! Selector.parse("role == 'client'"),
                    namedPort: .init(name: "client", protocolNumber: 6)),
                members: [
                    .addressPort(IPAddress("10.1.2.3")!, protocolNumber: 6, port: 1500),
                    .addressPort(IPAddress("10.2.0.1")!, protocolNumber: 6, port: 2500),
                ])
            clientPorts.id = IPSetID(rawValue: "p:client")
            ir.ipSets = [peers.id: peers, named.id: named, clientPorts.id: clientPorts]

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
            // Source ports: TCP 81 only from unprivileged-looking ports, UDP from 1500 denied
            // whatever the port; egress UDP from the endpoint's ports outside 1000-2000 denied.
            var allow81FromHigh = CompiledRule(action: .allow)
            allow81FromHigh.protocolNumber = 6
            allow81FromHigh.destination.ports = [PortRange(81, 81)]
            allow81FromHigh.source.ports = [PortRange(1024, 65535)]
            var denyUDPFrom1500 = CompiledRule(action: .deny)
            denyUDPFrom1500.protocolNumber = 17
            denyUDPFrom1500.source.ports = [PortRange(1500, 1500)]
            var allowUDPFromClients = CompiledRule(action: .allow)
            allowUDPFromClients.protocolNumber = 17
            allowUDPFromClients.source.ipSets = [peers.id]
            var allowFromClientPort = CompiledRule(action: .allow)
            allowFromClientPort.protocolNumber = 6
            allowFromClientPort.destination.ports = [PortRange(8081, 8081)]
            allowFromClientPort.source.namedPortSets = [clientPorts.id]
            var denyUDPOutsideRange = CompiledRule(action: .deny)
            denyUDPOutsideRange.protocolNumber = 17
            denyUDPOutsideRange.source.notPorts = [PortRange(1000, 2000)]

            let security = PolicyID(namespace: nil, name: "security")
            let web = PolicyID(namespace: "x", name: "web")
            ir.policies[security] = PolicyProgram(
                id: security, tier: "security", order: 1, ingress: [denyHalf, passTen, allowPing], egress: [])
            ir.policies[web] = PolicyProgram(
                id: web, tier: "default", order: 1,
                ingress: [
                    allowWeb, allowMetrics, allow81FromHigh, denyUDPFrom1500, allowUDPFromClients, allowFromClientPort,
                ],
                egress: [denyDNS, denyUDPOutsideRange])
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
            // Source ports apart from every destination port probed, so no probe's flow is another's
            // reply; ICMP echo identifiers unique per probe.
            let sourcePorts: [UInt16] = [1000, 1500, 2500, 40000]
            var echoID: UInt16 = 20000
            var allowedBySourcePort: [UInt16: Int] = [:]
            var allowed = 0
            var checked = 0
            for direction in Direction.allCases {
                for peer in peers {
                    for probe in probes {
                        for sourcePort in probe.proto == 1 ? [UInt16(0)] : sourcePorts {
                            echoID += 1
                            let (from, to) = direction == .ingress ? (peer, Self.pod) : (Self.pod, peer)
                            let frame: [UInt8]
                            switch probe.proto {
                            case 6: frame = Packet.tcp(from, sourcePort, to, probe.port, .syn)
                            case 17: frame = Packet.udp(from, sourcePort, to, probe.port)
                            default:
                                frame =
                                    probe.port == 0x0800
                                    ? Packet.icmpEcho(from, to, id: echoID)
                                    : Packet.icmp(
                                        from, to, type: UInt8(probe.port >> 8), code: UInt8(probe.port & 0xff))
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
                                kernel == expected,
                                "\(direction) \(from):\(sourcePort) -> \(to) proto \(probe.proto) port \(probe.port)")
                            checked += 1
                            if kernel { allowed += 1 }
                            if kernel && sourcePort != 0 { allowedBySourcePort[sourcePort, default: 0] += 1 }
                        }
                    }
                }
            }
            // Not vacuous: both verdicts occur, and the source port changes some of them.
            #expect(checked == 2 * 5 * (7 * 4 + 2))
            #expect(allowed > 30 && allowed < 270)
            #expect(Set(allowedBySourcePort.values).count > 1, "\(allowedBySourcePort)")

            // A client's named source port holds only with that client's address.
            for (client, port, verdict) in [
                ("10.1.2.3", UInt16(1500), tcActionOK), ("10.1.2.3", 2500, tcActionShot),
                ("10.2.0.1", 2500, tcActionOK),
            ] {
                #expect(
                    try fixture.test(tc.egress, Packet.tcp(client, port, Self.pod, 8081, .syn), ifindex: ifindex)
                        == verdict, "\(client):\(port) -> 8081")
            }

            // Removing the tables leaves a program with none: its traffic drops (fail closed).
            try tc.removePolicy(ingress, program: 10)
            #expect(
                try fixture.test(tc.egress, Packet.tcp("10.1.2.3", 30000, Self.pod, 80, .syn), ifindex: ifindex)
                    == tcActionShot)
            #expect(try tc.counters()[.noProgram] == 1)
        }

        /// Replies pass on their flow's conntrack entry though their source port is the server's: the
        /// endpoint's egress denies new connections from its port 80, yet answers from port 80 pass.
        @Test func repliesPassWhateverTheSourcePortRulesSay() throws {
            let fixture = try EBPFFixture("sport")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            var allowWebFromHigh = CompiledRule(action: .allow)
            allowWebFromHigh.protocolNumber = 6
            allowWebFromHigh.destination.ports = [PortRange(80, 80)]
            allowWebFromHigh.source.ports = [PortRange(1024, 65535)]
            var denyFrom80 = CompiledRule(action: .deny)
            denyFrom80.protocolNumber = 6
            denyFrom80.source.ports = [PortRange(80, 80)]
            let id = PolicyID(namespace: "x", name: "web")
            var ir = PolicyIR()
            ir.policies[id] = PolicyProgram(
                id: id, tier: "default", order: 1, ingress: [allowWebFromHigh], egress: [denyFrom80])
            ir.profiles["kns.x"] = ProfileProgram(name: "kns.x", ingress: [], egress: [CompiledRule(action: .allow)])
            let program = EndpointProgram(
                endpoint: Self.endpoint, addresses: [IPAddress(Self.pod)!], interfaceName: "tabw0",
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])],
                egress: [TierBinding(name: "default", order: 1, defaultAction: .pass, policies: [id])],
                profiles: ["kns.x"])
            try tc.writePolicy(try PolicyTableCompiler.compile(program, direction: .ingress, in: ir), program: 20)
            try tc.writePolicy(try PolicyTableCompiler.compile(program, direction: .egress, in: ir), program: 21)
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 20, egressProgram: 21))
            let client = "10.1.2.3"
            // To the workload (tc egress of its veth): from a privileged port refused, from a high one accepted.
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 1000, Self.pod, 80, .syn), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 40000, Self.pod, 80, .syn), ifindex: ifindex)
                    == tcActionOK)
            // The answer leaves from port 80, which the egress policy denies to new connections.
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(Self.pod, 80, client, 40000, [.syn, .ack]), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(Self.pod, 80, client, 40000, .ack), ifindex: ifindex)
                    == tcActionOK)
            #expect(try tc.counters()[.conntrackHit] == 2)
            // A new connection from the endpoint's port 80 meets the policy; from another port it passes.
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(Self.pod, 80, "10.9.9.9", 443, .syn), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(Self.pod, 40001, "10.9.9.9", 443, .syn), ifindex: ifindex)
                    == tcActionOK)
        }
    }
#endif
