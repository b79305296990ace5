#if EBPF
    import Glibc
    import Testing
    import TabbyCore
    import TabbyDataplane
    import TabbyEBPF
    import TabbyNetlink
    @testable import TabbyPolicy

    /// IPv6 through the real program (BPF_PROG_TEST_RUN on crafted frames, the skb's device a veth
    /// of a namespace the test made): verdicts of compiled dual-stack tables against
    /// `PolicyEvaluator`, conntrack of replies and echo, neighbour discovery, extension headers,
    /// fragments, host endpoints.
    @Suite(
        .serialized,
        .enabled(if: geteuid() == 0, "needs CAP_BPF and CAP_SYS_ADMIN: loads BPF programs, creates namespaces"))
    struct IPv6KernelTests {
        static let endpoint = EndpointKey(namespace: "x", name: "a")
        static let pod = "10.65.0.2"
        static let pod6 = "fd65::2"

        /// A dual-stack endpoint: an IP set with members of both families, nets of each family, a
        /// rule for IPv4 only, ICMPv6 echo, a named port of both addresses, egress UDP 53 denied to
        /// one IPv6 server.
        static func ir() -> PolicyIR {
            var ir = PolicyIR()
            var clients = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("role == 'client'")),
                members: [.net(CIDR("10.1.0.0/16")!), .net(CIDR("fd00:1::/64")!)])
            clients.id = IPSetID(rawValue: "s:clients")
            var metrics = IPSet(
                definition: IPSetDefinition(
                    selector: try! Selector.parse("all()"), namedPort: .init(name: "metrics", protocolNumber: 6)),
                members: [
                    .addressPort(IPAddress(pod)!, protocolNumber: 6, port: 9090),
                    .addressPort(IPAddress(pod6)!, protocolNumber: 6, port: 9091),
                ])
            metrics.id = IPSetID(rawValue: "p:metrics")
            ir.ipSets = [clients.id: clients, metrics.id: metrics]

            var denyHalf = CompiledRule(action: .deny)
            denyHalf.source.nets = [CIDR("fd00:1::80/121")!, CIDR("10.1.2.128/25")!]
            var denyTen = CompiledRule(action: .deny)
            denyTen.protocolNumber = 17
            denyTen.source.nets = [CIDR("10.0.0.0/8")!]  // IPv4 only: never an IPv6 peer
            var allowWeb = CompiledRule(action: .allow)
            allowWeb.protocolNumber = 6
            allowWeb.destination.ports = [PortRange(80, 80)]
            allowWeb.source.ipSets = [clients.id]
            var allow8080V4 = CompiledRule(action: .allow)
            allow8080V4.ipVersion = 4
            allow8080V4.protocolNumber = 6
            allow8080V4.destination.ports = [PortRange(8080, 8080)]
            var allowPing6 = CompiledRule(action: .allow)
            allowPing6.protocolNumber = 58
            allowPing6.icmp = ICMPMatch(type: 128)
            var allowMetrics = CompiledRule(action: .allow)
            allowMetrics.protocolNumber = 6
            allowMetrics.destination.namedPortSets = [metrics.id]
            var allowUDPNotTen = CompiledRule(action: .allow)
            allowUDPNotTen.protocolNumber = 17
            allowUDPNotTen.source.notNets = [CIDR("10.0.0.0/8")!]  // IPv4 only: excludes no IPv6 peer
            var denyDNS = CompiledRule(action: .deny)
            denyDNS.protocolNumber = 17
            denyDNS.destination.ports = [PortRange(53, 53)]
            denyDNS.destination.nets = [CIDR("2001:db8::53/128")!]

            let web = PolicyID(namespace: "x", name: "web")
            ir.policies[web] = PolicyProgram(
                id: web, tier: "default", order: 1,
                ingress: [denyHalf, denyTen, allowWeb, allow8080V4, allowPing6, allowMetrics, allowUDPNotTen],
                egress: [denyDNS])
            ir.profiles["kns.x"] = ProfileProgram(name: "kns.x", ingress: [], egress: [CompiledRule(action: .allow)])
            ir.endpoints[endpoint] = EndpointProgram(
                endpoint: endpoint, addresses: [IPAddress(pod)!, IPAddress(pod6)!], interfaceName: "tabw0",
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [web])],
                egress: [TierBinding(name: "default", order: 1, defaultAction: .pass, policies: [web])],
                profiles: ["kns.x"])
            return ir
        }

        @Test func dualStackTablesInTheKernelAgreeWithTheEvaluator() throws {
            let fixture = try EBPFFixture("v6grid")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let ir = Self.ir()
            let program = ir.endpoints[Self.endpoint]!
            var id: UInt32 = 10
            var ids: [UInt32] = []
            for family in [IPFamily.v4, .v6] {
                for direction in [Direction.ingress, .egress] {
                    let tables = try PolicyTableCompiler.compile(program, direction: direction, in: ir, family: family)
                    try tc.writePolicy(tables, program: id)
                    ids.append(id)
                    id += 1
                }
            }
            try tc.setEndpoint(
                ifindex: ifindex,
                .init(ingressProgram: ids[0], egressProgram: ids[1], ingress6Program: ids[2], egress6Program: ids[3]))
            let evaluator = PolicyEvaluator(ir)

            let peers = ["fd00:1::3", "fd00:1::81", "fd00:2::1", "2001:db8::53", "10.1.2.3", "10.1.2.200", "10.2.0.1"]
            let probes: [(proto: UInt8, port: UInt16)] = [
                (6, 80), (6, 8080), (6, 9090), (6, 9091), (17, 53), (17, 80), (58, 128 << 8), (58, 1 << 8),
                (1, 8 << 8),
            ]
            var echoID: UInt16 = 20000
            var allowed = 0
            var checked = 0
            for direction in Direction.allCases {
                for peer in peers {
                    let v6 = peer.contains(":")
                    let local = v6 ? Self.pod6 : Self.pod
                    for probe in probes
                    where (probe.proto == 58) == v6 || probe.proto != 58 && probe.proto != 1 || probe.proto == 1 && !v6
                    {
                        echoID += 1
                        let sourcePort: UInt16 = 40000 + echoID % 1000
                        let (from, to) = direction == .ingress ? (peer, local) : (local, peer)
                        let icmp = probe.proto == 1 || probe.proto == 58
                        let frame: [UInt8]
                        switch (probe.proto, v6) {
                        case (6, true): frame = Packet6.tcp(from, sourcePort, to, probe.port, .syn)
                        case (17, true): frame = Packet6.udp(from, sourcePort, to, probe.port)
                        case (58, _): frame = Packet6.icmp(from, to, type: UInt8(probe.port >> 8), id: echoID)
                        case (6, false): frame = Packet.tcp(from, sourcePort, to, probe.port, .syn)
                        case (17, false): frame = Packet.udp(from, sourcePort, to, probe.port)
                        default: frame = Packet.icmpEcho(from, to, id: echoID)
                        }
                        let hook = direction == .ingress ? tc.egress : tc.ingress
                        let kernel = try fixture.test(hook, frame, ifindex: ifindex) == tcActionOK
                        let packet = TabbyPolicy.Packet(
                            from: direction == .ingress ? .address(IPAddress(peer)!) : .endpoint(Self.endpoint),
                            to: direction == .ingress ? .endpoint(Self.endpoint) : .address(IPAddress(peer)!),
                            protocol: .number(Int(probe.proto)), sourcePort: icmp ? nil : sourcePort,
                            destinationPort: icmp ? nil : probe.port, icmpType: icmp ? Int(probe.port >> 8) : nil,
                            icmpCode: icmp ? 0 : nil)
                        let expected = evaluator.evaluate(packet).verdict == .allow
                        #expect(kernel == expected, "\(direction) \(from):\(sourcePort) -> \(to) \(probe)")
                        checked += 1
                        if kernel { allowed += 1 }
                        // An allowed IPv6 TCP flow's reply passes on its conntrack entry.
                        if kernel && v6 && probe.proto == 6 {
                            let reply = Packet6.tcp(to, probe.port, from, sourcePort, [.syn, .ack])
                            let back = direction == .ingress ? tc.ingress : tc.egress
                            #expect(try fixture.test(back, reply, ifindex: ifindex) == tcActionOK, "reply \(probe)")
                        }
                    }
                }
            }
            #expect(checked > 80 && allowed > 10 && allowed < checked - 10, "\(allowed) of \(checked)")
            let flows = try tc.conntrackEntries()
            #expect(flows.contains { $0.addressA.family == .v6 && $0.state == .tcpEstablished })
            #expect(flows.contains { $0.addressA.family == .v4 })
        }

        /// Neighbour discovery passes like ARP, even where policy denies everything; echo is tracked
        /// by identifier; replies pass on conntrack; other endpoints and unsolicited packets do not.
        @Test func neighbourDiscoveryPassesAndFlowsAreTracked() throws {
            let fixture = try EBPFFixture("v6ct")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let noV6 = try fixture.veth("tabw1", peer: "tabp1")
            // Ingress (to the pod) denies all, egress allows all, for both families.
            try tc.denyAll(program: 1)
            try tc.allowAll(program: 2)
            try tc.denyAll(program: 3, family: .v6)
            try tc.allowAll(program: 4, family: .v6)
            try tc.setEndpoint(
                ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2, ingress6Program: 3, egress6Program: 4))
            // An endpoint without IPv6 tables.
            try tc.setEndpoint(ifindex: noV6, .init(ingressProgram: 2, egressProgram: 2))
            let peer = "fd00:1::3"
            for type: UInt8 in [133, 134, 135, 136, 137] {
                #expect(
                    try fixture.test(tc.egress, Packet6.icmp("fe80::1", "ff02::1", type: type), ifindex: ifindex)
                        == tcActionOK)
                #expect(
                    try fixture.test(tc.ingress, Packet6.icmp("fe80::2", "ff02::2", type: type), ifindex: noV6)
                        == tcActionOK)
            }
            #expect(try tc.counters()[.nonIP] == 10)
            // Echo: the pod's request passes (egress allows), the reply with its id passes by
            // conntrack, a reply with another id and an unsolicited request do not.
            #expect(
                try fixture.test(tc.ingress, Packet6.icmp(Self.pod6, peer, type: 128, id: 7), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.icmp(peer, Self.pod6, type: 129, id: 7), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.icmp(peer, Self.pod6, type: 129, id: 8), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet6.icmp(peer, Self.pod6, type: 128, id: 9), ifindex: ifindex)
                    == tcActionShot)
            // TCP: the pod's SYN, the peer's SYN-ACK and ACK pass; a SYN from the peer does not; the
            // same flow on another interface is not tracked there.
            #expect(
                try fixture.test(tc.ingress, Packet6.tcp(Self.pod6, 41000, peer, 443, .syn), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.tcp(peer, 443, Self.pod6, 41000, [.syn, .ack]), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.tcp(peer, 443, Self.pod6, 41000, .ack), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.tcp(peer, 443, Self.pod6, 41001, .syn), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet6.tcp(peer, 443, Self.pod6, 41000, .ack), ifindex: noV6)
                    == tcActionShot)
            // ICMPv6 errors about the live TCP flow pass as related (packet too big from a router on
            // the way, unreachable from the peer); about another flow, or informational, they meet
            // the ingress policy (deny all).
            let flow = Packet6.tcp(Self.pod6, 41000, peer, 443, .syn)
            let other = Packet6.tcp(Self.pod6, 41999, peer, 443, .syn)
            #expect(
                try fixture.test(
                    tc.egress, Packet6.icmpError("fd00:9::1", Self.pod6, type: 2, about: flow), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(
                    tc.egress, Packet6.icmpError(peer, Self.pod6, type: 1, code: 4, about: flow), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(
                    tc.egress, Packet6.icmpError("fd00:9::1", Self.pod6, type: 2, about: other), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(
                    tc.egress, Packet6.icmpError(peer, Self.pod6, type: 200, about: flow), ifindex: ifindex)
                    == tcActionShot)
            #expect(try tc.counters()[.conntrackRelated] == 2)
            let flows = try tc.conntrackEntries().filter { $0.addressA.family == .v6 }
            #expect(Set(flows.compactMap(\.state)) == [.icmp, .tcpEstablished])
            // The IPv4 map is untouched by IPv6 flows.
            #expect(try tc.conntrackEntries().allSatisfy { $0.addressA.family == .v6 })
            // Without IPv6 tables, IPv6 drops (no program); the scanner counts IPv6 flows as live.
            #expect(
                try fixture.test(tc.ingress, Packet6.tcp(Self.pod6, 41002, peer, 443, .syn), ifindex: noV6)
                    == tcActionShot)
            #expect(try tc.counters()[.noProgram] == 2)  // this SYN and the ACK above
            #expect(try tc.removeExpiredConntrack().live == 2)
            #expect(
                try tc.removeExpiredConntrack(now: TCProgram.monotonicNanoseconds() + 7200 * 1_000_000_000).removed == 2
            )
        }

        /// Extension headers are walked to the transport header (ports police as without them);
        /// non-first fragments, chains longer than the program walks and truncated headers drop;
        /// host endpoints drop IPv6.
        @Test func extensionHeadersFragmentsAndHostEndpoints() throws {
            let fixture = try EBPFFixture("v6ext")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let host = try fixture.veth("tabh0", peer: "tabh1")
            // Ingress IPv6: TCP 80 only.
            try tc.setPortClass(program: 3, protocol: nil, ports: nil, portClass: 0)
            try tc.setPortClass(program: 3, protocol: 6, ports: 80...80, portClass: 1)
            try tc.setAddressClass(program: 3, cidr: CIDR("::/0")!, addressClass: 0)
            try tc.setVerdict(program: 3, portClass: 1, addressClass: 0, .init(.allow, rule: 1))
            try tc.setVerdict(program: 3, portClass: TCProgram.anyClass, addressClass: TCProgram.anyClass, .init(.deny))
            try tc.allowAll(program: 4, family: .v6)
            try tc.setEndpoint(
                ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 1, ingress6Program: 3, egress6Program: 4))
            try tc.allowAll(program: 5, family: .v6)
            try tc.setEndpoint(
                ifindex: host,
                .init(ingressProgram: 5, egressProgram: 5, isHost: true, ingress6Program: 5, egress6Program: 5))
            let peer = "fd00:1::3"
            typealias E = Packet6.Extension
            let chain = [E(type: 0), E(type: 60, extraWords: 1), E(type: 43), E(type: 44)]
            var port: UInt16 = 41000
            func syn(_ dport: UInt16, _ extensions: [E]) -> [UInt8] {
                port += 1
                return Packet6.tcp(peer, port, Self.pod6, dport, .syn, extensions: extensions)
            }
            #expect(try fixture.test(tc.egress, syn(80, chain), ifindex: ifindex) == tcActionOK)
            #expect(try fixture.test(tc.egress, syn(81, chain), ifindex: ifindex) == tcActionShot)
            #expect(try fixture.test(tc.egress, syn(80, [E(type: 60, extraWords: 2)]), ifindex: ifindex) == tcActionOK)
            #expect(try fixture.test(tc.egress, syn(80, [E(type: 44)]), ifindex: ifindex) == tcActionOK)
            var counters = try tc.counters()
            #expect(counters[.policyAllow] == 3 && counters[.policyDeny] == 1)
            // A non-first fragment; five extension headers (the program walks four).
            #expect(
                try fixture.test(tc.egress, syn(80, [E(type: 44, fragmentOffset: 185)]), ifindex: ifindex)
                    == tcActionShot)
            #expect(try fixture.test(tc.egress, syn(80, chain + [E(type: 60)]), ifindex: ifindex) == tcActionShot)
            counters = try tc.counters()
            #expect(counters[.unsupported] == 2)
            // Truncated: an extension header, the TCP header (BPF_PROG_TEST_RUN refuses frames
            // shorter than the IPv6 header itself).
            let whole = syn(80, [E(type: 0)])
            for length in [14 + 40 + 4, 14 + 48 + 10] {
                #expect(try fixture.test(tc.egress, Array(whole.prefix(length)), ifindex: ifindex) == tcActionShot)
            }
            #expect(try tc.counters()[.malformed] == 2)
            // A host endpoint polices IPv4 only: its IPv6 drops, whatever its tables say.
            #expect(try fixture.test(tc.ingress, syn(80, []), ifindex: host) == tcActionShot)
            #expect(try tc.counters()[.unsupported] == 3)
        }

        /// `EBPFDataplane` with a dual-stack endpoint: four policy programs in its entry, IPv6
        /// policed by the IPv6 ones; a restarted dataplane adopts them; without its IPv6 address the
        /// endpoint's IPv6 ids go to 0 and their tables are removed; `removeEverything` leaves none.
        @Test func theDataplaneWritesAdoptsAndRemovesIPv6Tables() throws {
            let fixture = try EBPFFixture("v6dp")
            defer { fixture.tearDown() }
            let ifindex = try fixture.veth("cali6a", peer: "tabp0")
            var ir = Self.ir()
            ir.endpoints[Self.endpoint]!.interfaceName = "cali6a"
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            _ = try dataplane.reconcile(ir)
            let entry = try #require(try dataplane.program.endpointEntries()[ifindex])
            let ids = [entry.ingressProgram, entry.egressProgram, entry.ingress6Program, entry.egress6Program]
            #expect(Set(ids).count == 4 && !ids.contains(0), "\(entry)")
            #expect(try dataplane.program.policyProgramIDs() == Set(ids))
            let tc = dataplane.program
            #expect(
                try fixture.test(tc.egress, Packet6.tcp("fd00:1::3", 41000, Self.pod6, 80, .syn), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet6.tcp("fd00:2::1", 41000, Self.pod6, 80, .syn), ifindex: ifindex)
                    == tcActionShot)

            // A restarted agent finds the tables it would write and keeps them.
            let restarted = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            #expect(try restarted.reconcile(ir) == [])
            #expect(try restarted.program.endpointEntries()[ifindex] == entry)

            // The endpoint loses its IPv6 address: no IPv6 tables, its IPv6 drops.
            ir.endpoints[Self.endpoint]!.addresses = [IPAddress(Self.pod)!]
            _ = try restarted.reconcile(ir)
            let v4Only = try #require(try restarted.program.endpointEntries()[ifindex])
            #expect(v4Only.ingress6Program == 0 && v4Only.egress6Program == 0)
            #expect(try restarted.program.policyProgramIDs() == [v4Only.ingressProgram, v4Only.egressProgram])
            #expect(
                try fixture.test(tc.egress, Packet6.tcp("fd00:1::3", 41001, Self.pod6, 80, .syn), ifindex: ifindex)
                    == tcActionShot)
            try restarted.removeEverything()
            #expect(try restarted.program.policyProgramIDs().isEmpty)
            #expect(try restarted.program.endpointEntries().isEmpty)
        }

        /// The programs attached to a veth between the node's namespace and a pod's, policing real
        /// IPv6: TCP to the pod's 8080 connects and to 8081 does not (ingress allows 8080 only); the
        /// pod's own connection out and its ping get their replies by conntrack; neighbour
        /// discovery between the two passes (without it nothing would).
        @Test func attachedProgramsPoliceRealIPv6Traffic() throws {
            let fixture = try EBPFFixture("v6real")
            var sockets: [Int32] = []
            defer {
                for fd in sockets { close(fd) }
                fixture.tearDown()
            }
            let pod = try fixture.addNamespace("pod")
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            try fixture.ip("link add tabw0 type veth peer name eth0 netns \(pod.name)")
            try fixture.ip("-6 addr add fd65::1/64 dev tabw0 nodad")
            try fixture.ip("link set tabw0 up")
            try run(["ip", "-n", pod.name, "-6", "addr", "add", "fd65::2/64", "dev", "eth0", "nodad"])
            try run(["ip", "-n", pod.name, "link", "set", "eth0", "up"])
            let ifindex = try fixture.ifindex("tabw0")
            // Ingress (to the pod): TCP 8080 only; egress: everything; IPv4: no tables.
            try tc.setPortClass(program: 3, protocol: nil, ports: nil, portClass: 0)
            try tc.setPortClass(program: 3, protocol: 6, ports: 8080...8080, portClass: 1)
            try tc.setAddressClass(program: 3, cidr: CIDR("::/0")!, addressClass: 0)
            try tc.setVerdict(program: 3, portClass: 1, addressClass: 0, .init(.allow, rule: 1))
            try tc.setVerdict(program: 3, portClass: TCProgram.anyClass, addressClass: TCProgram.anyClass, .init(.deny))
            try tc.allowAll(program: 4, family: .v6)
            try tc.setEndpoint(
                ifindex: ifindex, .init(ingressProgram: 0, egressProgram: 0, ingress6Program: 3, egress6Program: 4))
            for hook in TrafficControl.Hook.allCases {
                try TrafficControl.attach(
                    hook == .ingress ? tc.ingress : tc.egress, to: "tabw0", hook: hook, namespace: fixture.namespacePath
                )
            }
            defer {
                for hook in TrafficControl.Hook.allCases {
                    try? TrafficControl.detach(from: "tabw0", hook: hook, namespace: fixture.namespacePath)
                }
            }
            for port: UInt16 in [8080, 8081] { sockets.append(try Self.listen6(in: pod.path, port)) }
            sockets.append(try Self.listen6(in: fixture.namespacePath, 9000))
            #expect(try Self.connects6(from: fixture.namespacePath, to: "fd65::2", 8080))
            #expect(try !Self.connects6(from: fixture.namespacePath, to: "fd65::2", 8081))
            // The pod's connection out: its SYN-ACK (to the pod's ephemeral port) passes by conntrack.
            #expect(try Self.connects6(from: pod.path, to: "fd65::1", 9000))
            let ping = try run(
                ["nsenter", "--net=\(pod.path)", "ping", "-6", "-c", "1", "-W", "1", "fd65::1"], check: false)
            #expect(ping.status == 0, "\(ping.output)")
            let counters = try tc.counters()
            #expect(counters[.nonIP, default: 0] >= 2, "neighbour discovery: \(counters)")
            #expect(counters[.conntrackHit, default: 0] >= 2)
            #expect(counters[.policyDeny, default: 0] >= 1)
        }

        /// A listening TCP socket on [::]:`port` in namespace `path` (the kernel completes handshakes
        /// into the backlog; never accepted). The caller closes it.
        static func listen6(in path: String, _ port: UInt16) throws -> Int32 {
            try NetworkNamespace.run(path: path) { () throws -> Int32 in
                let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                var address = socketAddress6("::", port)
                let bound = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
                guard bound == 0, Glibc.listen(fd, 64) == 0 else {
                    let error = errno
                    close(fd)
                    throw ShellError(description: "listen [::]:\(port): errno \(error)")
                }
                return fd
            }
        }

        /// Whether a TCP connection from namespace `path` to `[address]:port` completes in `timeout` ms.
        static func connects6(from path: String, to address: String, _ port: UInt16, timeout: Int32 = 1500) throws
            -> Bool
        {
            try NetworkNamespace.run(path: path) { () -> Bool in
                let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                defer { close(fd) }
                var target = socketAddress6(address, port)
                let started = withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
                if started == 0 { return true }
                guard errno == EINPROGRESS else { return false }
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                guard poll(&poller, 1, timeout) == 1 else { return false }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                return error == 0
            }
        }

        static func socketAddress6(_ address: String, _ port: UInt16) -> sockaddr_in6 {
            var result = sockaddr_in6()
            result.sin6_family = sa_family_t(AF_INET6)
            result.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &result.sin6_addr) { bytes in
                for (index, byte) in IPv6Address(address)!.bytes.enumerated() { bytes[index] = byte }
            }
            return result
        }

        /// The program's time per new flow (BPF_PROG_TEST_RUN, best of five rounds of 200,000 runs),
        /// IPv4 and IPv6, denied by a program with tables. Printed for docs/dataplanes.md.
        @Test func costPerPacketByFamily() throws {
            let fixture = try EBPFFixture("v6cost")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            try tc.denyAll(program: 1)
            try tc.denyAll(program: 2, family: .v6)
            try tc.setEndpoint(
                ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 1, ingress6Program: 2, egress6Program: 2))
            func nanoseconds(_ packet: [UInt8]) throws -> UInt32 {
                try (0..<5).map { _ in
                    try NetworkNamespace.run(path: fixture.namespacePath) {
                        try tc.ingress.testRun(packet: packet, ifindex: ifindex, repeat: 200_000).nanosecondsPerRun
                    }
                }.min()!
            }
            let v4 = try nanoseconds(Packet.tcp(Self.pod, 40000, "10.0.0.9", 80, .syn))
            let v6 = try nanoseconds(Packet6.tcp(Self.pod6, 40000, "fd00:1::9", 80, .syn))
            let ndp = try nanoseconds(Packet6.icmp("fe80::1", "ff02::1", type: 135))
            print(
                "cost per packet: IPv4 new flow (denied) \(v4) ns, IPv6 new flow (denied) \(v6) ns, IPv6 neighbour solicitation \(ndp) ns"
            )
            #expect(v4 > 0 && v6 > 0 && ndp > 0)
        }
    }
#endif
