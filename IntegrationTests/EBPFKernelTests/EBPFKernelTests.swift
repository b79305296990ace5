#if EBPF
    import Foundation
    import Glibc
    import Testing
    import TabbyCore
    import TabbyEBPF
    import TabbyNetlink
    import TabbyPolicy

    /// The tc program on crafted packets (BPF_PROG_TEST_RUN, the skb's device an interface of a
    /// namespace the test made), and attached for real in such namespaces. Pins go under a per-test
    /// `/sys/fs/bpf/tabby-test-<pid>-<random>`; nothing touches the root namespace's network.
    @Suite(
        .serialized,
        .enabled(
            if: geteuid() == 0,
            "needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN: loads BPF programs, pins them, creates namespaces"))
    struct EBPFKernelTests {
        let pod = "10.65.0.2"

        /// Program 1: ingress allows TCP 80 and TCP 8000-8080 from 10.0.1.0/24 (but not from 10.0.1.128/25, a
        /// deny rule ahead of it), denies the rest; program 2: egress allows everything.
        private func loadWithPolicy(_ fixture: EBPFFixture) throws -> (TCProgram, Int32) {
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2))
            // Port classes: 1 = TCP 80 or 8000-8080, 0 = everything else.
            try tc.setPortClass(program: 1, protocol: nil, ports: nil, portClass: 0)
            try tc.setPortClass(program: 1, protocol: 6, ports: 80...80, portClass: 1)
            try tc.setPortClass(program: 1, protocol: 6, ports: 8000...8080, portClass: 1)
            // Address classes: 1 = 10.0.1.0/24 outside the /25, 2 = 10.0.1.128/25, 0 = everything else.
            try tc.setAddressClass(program: 1, cidr: CIDR("0.0.0.0/0")!, addressClass: 0)
            try tc.setAddressClass(program: 1, cidr: CIDR("10.0.1.0/24")!, addressClass: 1)
            try tc.setAddressClass(program: 1, cidr: CIDR("10.0.1.128/25")!, addressClass: 2)
            try tc.setVerdict(program: 1, portClass: 1, addressClass: 1, .init(.allow, rule: 11))
            try tc.setVerdict(program: 1, portClass: 1, addressClass: 2, .init(.deny, rule: 10))
            try tc.setVerdict(program: 1, portClass: TCProgram.anyClass, addressClass: TCProgram.anyClass, .init(.deny))
            try tc.allowAll(program: 2)
            return (tc, ifindex)
        }

        @Test func loadsAndPinsMapsAndPrograms() throws {
            let fixture = try EBPFFixture("pins")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let pinned = try FileManager.default.contentsOfDirectory(atPath: fixture.pinRoot).sorted()
            #expect(
                pinned == [
                    "programs", "tabby_addrs", "tabby_addrs6", "tabby_config", "tabby_counters", "tabby_ct",
                    "tabby_ct6", "tabby_endpoints", "tabby_failsafe", "tabby_host_addrs", "tabby_overlay_peers",
                    "tabby_ports", "tabby_sports", "tabby_verdicts",
                ])
            let programs = try FileManager.default.contentsOfDirectory(atPath: fixture.pinRoot + "/programs").sorted()
            #expect(programs == ["tabby_tc_egress", "tabby_tc_ingress"])
            // bpftool sees the pinned program as a tc classifier with our name.
            let shown = try run(["bpftool", "prog", "show", "pinned", fixture.pinRoot + "/programs/tabby_tc_ingress"])
            #expect(shown.output.contains("sched_cls"))
            #expect(shown.output.contains("name tabby_tc_ingress"))
            #expect(try tc.ingress.id != tc.egress.id)
        }

        @Test func unknownInterfacesFailClosed() throws {
            let fixture = try EBPFFixture("unknown")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let other = try fixture.ifindex("tabp0")
            try tc.setEndpoint(ifindex: other, .init(ingressProgram: 2, egressProgram: 2))
            try tc.allowAll(program: 2)
            let syn = Packet.tcp("10.0.1.5", 40000, pod, 80, .syn)
            #expect(try fixture.test(tc.egress, syn, ifindex: ifindex) == tcActionShot)
            #expect(try fixture.test(tc.ingress, Packet.arpRequest(), ifindex: ifindex) == tcActionShot)
            #expect(try fixture.test(tc.egress, syn, ifindex: other) == tcActionOK)
            let counters = try tc.counters()
            #expect(counters[.unknownInterface] == 2)
            #expect(counters[.policyAllow] == 1)
            // An endpoint whose policy program has no tables drops too.
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 99, egressProgram: 99))
            #expect(try fixture.test(tc.egress, syn, ifindex: ifindex) == tcActionShot)
            #expect(try tc.counters()[.noProgram] == 1)
        }

        @Test func policyVerdictsComeFromTheMaps() throws {
            let fixture = try EBPFFixture("policy")
            defer { fixture.tearDown() }
            let (tc, ifindex) = try loadWithPolicy(fixture)
            // tc egress of the host-side veth = traffic to the workload = its ingress program (1).
            let cases: [(String, UInt8, UInt16, UInt32)] = [
                ("10.0.1.5", 6, 80, tcActionOK),
                ("10.0.1.127", 6, 8080, tcActionOK),
                ("10.0.1.5", 6, 8000, tcActionOK),
                ("10.0.1.5", 6, 8081, tcActionShot),
                ("10.0.1.5", 6, 7999, tcActionShot),
                ("10.0.1.5", 6, 81, tcActionShot),
                ("10.0.1.200", 6, 80, tcActionShot),  // the /25 deny ahead of the /24 allow
                ("10.0.2.5", 6, 80, tcActionShot),
                ("10.0.1.5", 17, 80, tcActionShot),  // UDP: port class 0
            ]
            for (index, (source, proto, port, expected)) in cases.enumerated() {
                let sourcePort = UInt16(30000 + index)
                let packet =
                    proto == 6
                    ? Packet.tcp(source, sourcePort, pod, port, .syn) : Packet.udp(source, sourcePort, pod, port)
                #expect(
                    try fixture.test(tc.egress, packet, ifindex: ifindex) == expected, "\(source) -> \(proto)/\(port)")
            }
            // The same packet leaving the workload (tc ingress) meets its egress program (2): allowed.
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(pod, 30100, "10.0.2.5", 81, .syn), ifindex: ifindex)
                    == tcActionOK)
            let counters = try tc.counters()
            #expect(counters[.policyAllow] == 4)
            #expect(counters[.policyDeny] == 6)
        }

        @Test func repliesToAllowedFlowsPassUnsolicitedPacketsDoNot() throws {
            let fixture = try EBPFFixture("reply")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            // Ingress: deny everything; egress: allow everything.
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2))
            try tc.denyAll(program: 1)
            try tc.allowAll(program: 2)
            let server = "192.0.2.9"
            // The workload opens a connection (tc ingress: its egress policy allows).
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(pod, 40000, server, 443, .syn), ifindex: ifindex) == tcActionOK)
            let entries = try tc.conntrackEntries()
            #expect(entries.count == 1)
            #expect(entries.first?.state == .tcpSynSent)
            #expect(entries.first?.ifindex == ifindex)
            // The reply comes back in through tc egress, where the ingress policy would deny it.
            let synAck = Packet.tcp(server, 443, pod, 40000, [.syn, .ack])
            #expect(try fixture.test(tc.egress, synAck, ifindex: ifindex) == tcActionOK)
            #expect(try tc.conntrackEntries().first?.state == .tcpEstablished)
            #expect(
                try fixture.test(tc.egress, Packet.tcp(server, 443, pod, 40000, .ack), ifindex: ifindex) == tcActionOK)
            // Unsolicited: another port of the workload, the same port from another server, a new connection in.
            #expect(
                try fixture.test(tc.egress, Packet.tcp(server, 443, pod, 40001, .ack), ifindex: ifindex) == tcActionShot
            )
            #expect(
                try fixture.test(tc.egress, Packet.tcp("192.0.2.10", 443, pod, 40000, .ack), ifindex: ifindex)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet.tcp(server, 443, pod, 22, .syn), ifindex: ifindex) == tcActionShot)
            // The flow's entry belongs to this interface: the same reply on another endpoint is unsolicited there.
            let other = try fixture.ifindex("tabp0")
            try tc.setEndpoint(ifindex: other, .init(ingressProgram: 1, egressProgram: 2))
            #expect(try fixture.test(tc.egress, synAck, ifindex: other) == tcActionShot)
            let counters = try tc.counters()
            #expect(counters[.conntrackHit] == 2)
            #expect(counters[.policyDeny] == 4)
        }

        @Test func establishedFlowsSkipPolicyNewConnectionsDoNot() throws {
            let fixture = try EBPFFixture("established")
            defer { fixture.tearDown() }
            let (tc, ifindex) = try loadWithPolicy(fixture)
            let client = "10.0.1.5"
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 50000, pod, 80, .syn), ifindex: ifindex) == tcActionOK)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(pod, 80, client, 50000, [.syn, .ack]), ifindex: ifindex)
                    == tcActionOK)
            // The policy changes to deny: the established flow keeps going, a new connection is refused,
            // and a SYN on the old tuple is a new connection too (it always gets policy).
            try tc.setVerdict(program: 1, portClass: 1, addressClass: 1, .init(.deny, rule: 12))
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 50000, pod, 80, .ack), ifindex: ifindex) == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 50001, pod, 80, .syn), ifindex: ifindex) == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 50000, pod, 80, .syn), ifindex: ifindex) == tcActionShot)
            // A FIN moves the entry to closing; packets still pass until it times out.
            #expect(
                try fixture.test(tc.egress, Packet.tcp(client, 50000, pod, 80, [.fin, .ack]), ifindex: ifindex)
                    == tcActionOK)
            #expect(try tc.conntrackEntries().map(\.state) == [.tcpClosing])
            let counters = try tc.counters()
            #expect(counters[.conntrackHit] == 3)
            #expect(counters[.policyAllow] == 1)
            #expect(counters[.policyDeny] == 2)
        }

        @Test func udpAndICMPEchoAreTrackedAndExpire() throws {
            let fixture = try EBPFFixture("udp")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2))
            try tc.denyAll(program: 1)
            try tc.allowAll(program: 2)
            let dns = "192.0.2.53"
            #expect(try fixture.test(tc.ingress, Packet.udp(pod, 33333, dns, 53), ifindex: ifindex) == tcActionOK)
            #expect(try fixture.test(tc.egress, Packet.udp(dns, 53, pod, 33333), ifindex: ifindex) == tcActionOK)
            #expect(try fixture.test(tc.egress, Packet.udp(dns, 53, pod, 33334), ifindex: ifindex) == tcActionShot)
            // ICMP echo: the reply with the request's identifier passes, another identifier does not.
            #expect(try fixture.test(tc.ingress, Packet.icmpEcho(pod, dns, id: 77), ifindex: ifindex) == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet.icmpEcho(dns, pod, id: 77, reply: true), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet.icmpEcho(dns, pod, id: 78, reply: true), ifindex: ifindex)
                    == tcActionShot)
            // Other ICMP, not about a tracked flow, meets policy.
            #expect(
                try fixture.test(tc.egress, Packet.icmp(dns, pod, type: 3, code: 3), ifindex: ifindex) == tcActionShot)
            #expect(Set(try tc.conntrackEntries().compactMap(\.state)) == [.udp, .icmp])
            // With a 50 ms UDP timeout, the reply after 150 ms of silence is unsolicited.
            try tc.setTimeouts(.init(udp: .milliseconds(50)))
            usleep(150_000)
            #expect(try fixture.test(tc.egress, Packet.udp(dns, 53, pod, 33333), ifindex: ifindex) == tcActionShot)
            // ICMP's default 5 s has not passed: its entry is still live.
            #expect(
                try fixture.test(tc.egress, Packet.icmpEcho(dns, pod, id: 77, reply: true), ifindex: ifindex)
                    == tcActionOK)
            // The scanner deletes what the program already treats as expired (the UDP flow), not
            // the live ICMP one; a second pass finds nothing more.
            let scan = try tc.removeExpiredConntrack()
            #expect(scan.removed == 1 && scan.live == 1, "\(scan)")
            #expect(try tc.conntrackEntries().compactMap(\.state) == [.icmp])
            #expect(try tc.removeExpiredConntrack().removed == 0)
        }

        /// ICMP errors about a flow the endpoint has open pass as related (path MTU discovery needs
        /// "fragmentation needed" to reach the sender), whatever the policy; errors about flows it
        /// does not have, or quoting another interface's flow, meet policy.
        @Test func icmpErrorsAboutLiveFlowsPassAsRelated() throws {
            let fixture = try EBPFFixture("related")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let ifindex = try fixture.veth("tabw0", peer: "tabp0")
            let other = try fixture.ifindex("tabp0")
            for index in [ifindex, other] {
                try tc.setEndpoint(ifindex: index, .init(ingressProgram: 1, egressProgram: 2))
            }
            try tc.denyAll(program: 1)
            try tc.allowAll(program: 2)
            let server = "192.0.2.80"
            let router = "192.0.2.1"
            // The pod opens TCP and UDP flows and sends a ping (tc ingress: its egress, allowed).
            let syn = Packet.tcp(pod, 40000, server, 443, .syn)
            let udp = Packet.udp(pod, 33333, server, 53)
            let ping = Packet.icmpEcho(pod, server, id: 9)
            for frame in [syn, udp, ping] {
                #expect(try fixture.test(tc.ingress, frame, ifindex: ifindex) == tcActionOK)
            }
            // Errors about them come back to the pod (tc egress: its ingress, which denies all).
            let tooBig = Packet.icmpError(router, pod, type: 3, code: 4, about: syn)
            #expect(try fixture.test(tc.egress, tooBig, ifindex: ifindex) == tcActionOK)
            let unreachable = Packet.icmpError(server, pod, type: 3, code: 3, about: udp)
            #expect(try fixture.test(tc.egress, unreachable, ifindex: ifindex) == tcActionOK)
            let expired = Packet.icmpError(router, pod, type: 11, code: 0, about: ping)
            #expect(try fixture.test(tc.egress, expired, ifindex: ifindex) == tcActionOK)
            #expect(try tc.counters()[.conntrackRelated] == 3)
            // About a flow never opened (another source port), or on another interface: policy (deny).
            let stranger = Packet.icmpError(
                router, pod, type: 3, code: 4, about: Packet.tcp(pod, 40001, server, 443, .syn))
            #expect(try fixture.test(tc.egress, stranger, ifindex: ifindex) == tcActionShot)
            #expect(try fixture.test(tc.egress, tooBig, ifindex: other) == tcActionShot)
            // Not an error type: an echo request to the pod is not "related" to its own ping.
            #expect(try fixture.test(tc.egress, Packet.icmpEcho(server, pod, id: 10), ifindex: ifindex) == tcActionShot)
            #expect(try tc.counters()[.conntrackRelated] == 3)
            // Once the flow has expired, its errors meet policy too.
            try tc.setTimeouts(.init(udp: .milliseconds(50)))
            usleep(150_000)
            #expect(try fixture.test(tc.egress, unreachable, ifindex: ifindex) == tcActionShot)
        }

        @Test func failsafePortsOpenOnlyOnHostEndpoints() throws {
            let fixture = try EBPFFixture("failsafe")
            defer { fixture.tearDown() }
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            let host = try fixture.veth("tabh0", peer: "tabw0")
            let workload = try fixture.ifindex("tabw0")
            try tc.setEndpoint(ifindex: host, .init(ingressProgram: 1, egressProgram: 1, isHost: true))
            try tc.setEndpoint(ifindex: workload, .init(ingressProgram: 1, egressProgram: 1))
            try tc.denyAll(program: 1)
            try tc.setFailsafe(.inbound, protocol: 6, port: 22)
            try tc.setFailsafe(.outbound, protocol: 17, port: 53)
            let hostAddress = "10.0.0.1"
            try tc.setHostAddresses([IPv4Address(hostAddress)!])
            // Host endpoint, natural direction: tc ingress is traffic to the host.
            #expect(
                try fixture.test(tc.ingress, Packet.tcp("10.0.0.9", 41000, hostAddress, 22, .syn), ifindex: host)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp("10.0.0.9", 41001, hostAddress, 23, .syn), ifindex: host)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.egress, Packet.udp(hostAddress, 41002, "10.0.0.53", 53), ifindex: host)
                    == tcActionOK)
            // Inbound 22 is not outbound 22, and UDP 53 inbound is not a failsafe.
            #expect(
                try fixture.test(tc.egress, Packet.tcp(hostAddress, 41003, "10.0.0.9", 22, .syn), ifindex: host)
                    == tcActionShot)
            #expect(
                try fixture.test(tc.ingress, Packet.udp("10.0.0.9", 41004, hostAddress, 53), ifindex: host)
                    == tcActionShot)
            // The failsafe flow's reply passes by conntrack.
            #expect(
                try fixture.test(
                    tc.egress, Packet.tcp(hostAddress, 22, "10.0.0.9", 41000, [.syn, .ack]), ifindex: host)
                    == tcActionOK)
            // A workload is not protected by failsafe ports.
            #expect(
                try fixture.test(tc.egress, Packet.tcp("10.0.0.9", 41005, pod, 22, .syn), ifindex: workload)
                    == tcActionShot)
            let counters = try tc.counters()
            #expect(counters[.failsafe] == 2)
            #expect(counters[.conntrackHit] == 1)
        }

        @Test func arpPassesOtherProtocolsAndMalformedPacketsDrop() throws {
            let fixture = try EBPFFixture("l2")
            defer { fixture.tearDown() }
            let (tc, ifindex) = try loadWithPolicy(fixture)
            #expect(try fixture.test(tc.ingress, Packet.arpRequest(), ifindex: ifindex) == tcActionOK)
            // Another ethertype (IPX) drops.
            #expect(
                try fixture.test(tc.ingress, Packet.ethernet(type: 0x8137) + [0, 0], ifindex: ifindex) == tcActionShot)
            let truncated = Array(Packet.tcp(pod, 1, "10.0.1.5", 80, .syn).prefix(14 + 20 + 10))
            #expect(try fixture.test(tc.ingress, truncated, ifindex: ifindex) == tcActionShot)
            let counters = try tc.counters()
            #expect(counters[.nonIP] == 1)
            #expect(counters[.unsupported] == 1)
            #expect(counters[.malformed] == 1)
        }

        @Test func aReloadReusesPinnedMapsSoFlowsSurvive() throws {
            let fixture = try EBPFFixture("reload")
            defer { fixture.tearDown() }
            var (tc, ifindex) = try loadWithPolicy(fixture)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(pod, 45000, "192.0.2.1", 443, .syn), ifindex: ifindex)
                    == tcActionOK)
            let firstProgram = try tc.ingress.id
            // The agent restarts: the old object is closed, a new one loads against the same pins.
            tc = try TCProgram(pinRoot: fixture.pinRoot)
            #expect(try tc.ingress.id != firstProgram)
            #expect(try tc.conntrackEntries().count == 1)
            // The policy tables came back too: the reply passes by conntrack, a new flow still meets policy 1.
            #expect(
                try fixture.test(tc.egress, Packet.tcp("192.0.2.1", 443, pod, 45000, [.syn, .ack]), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet.tcp("10.0.1.5", 45001, pod, 80, .syn), ifindex: ifindex)
                    == tcActionOK)
            #expect(
                try fixture.test(tc.egress, Packet.tcp("10.0.1.5", 45002, pod, 81, .syn), ifindex: ifindex)
                    == tcActionShot)
            let counters = try tc.counters()
            #expect(counters[.conntrackHit] == 1)
            #expect(counters[.policyAllow] == 2)  // one before the reload, one after: the counters map is pinned
        }

        /// An upgrade from a Tabby whose endpoint entry was 12 bytes (before IPv6): libbpf refuses that
        /// pinned map, so it alone is unpinned and made anew; conntrack and the other maps are reused.
        @Test func anOlderLayoutsPinIsReplacedAndTheRestReused() throws {
            let fixture = try EBPFFixture("upgrade")
            defer { fixture.tearDown() }
            var (tc, ifindex) = try loadWithPolicy(fixture)
            #expect(
                try fixture.test(tc.ingress, Packet.tcp(pod, 45000, "192.0.2.1", 443, .syn), ifindex: ifindex)
                    == tcActionOK)
            #expect(tc.replacedPins.isEmpty)
            let endpoints = fixture.pinRoot + "/tabby_endpoints"
            #expect(unlink(endpoints) == 0)
            try run([
                "bpftool", "map", "create", endpoints, "type", "hash", "key", "4", "value", "12", "entries", "16384",
                "name", "tabby_endpoints",
            ])
            tc = try TCProgram(pinRoot: fixture.pinRoot)
            #expect(tc.replacedPins == [endpoints])
            #expect(try tc.endpointEntries().isEmpty, "a new, empty endpoints map")
            #expect(try tc.conntrackEntries().count == 1, "conntrack was reused")
            // Once the agent writes the entry again, the reply passes by the surviving flow.
            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2))
            #expect(
                try fixture.test(tc.egress, Packet.tcp("192.0.2.1", 443, pod, 45000, [.syn, .ack]), ifindex: ifindex)
                    == tcActionOK)
        }

        /// Real packets: a "pod" namespace behind a veth whose host side is in the node namespace, the
        /// programs attached there through tc clsact, ping across it.
        @Test func attachedProgramsPoliceRealTraffic() throws {
            let fixture = try EBPFFixture("attach")
            defer { fixture.tearDown() }
            let podNamespace = try fixture.addNamespace("pod")
            let tc = try TCProgram(pinRoot: fixture.pinRoot)
            try fixture.ip("link add tabw0 type veth peer name eth0 netns \(podNamespace.name)")
            try fixture.ip("addr add 10.65.0.1/24 dev tabw0")
            try fixture.ip("link set tabw0 up")
            try run(["ip", "-n", podNamespace.name, "addr", "add", "10.65.0.2/24", "dev", "eth0"])
            try run(["ip", "-n", podNamespace.name, "link", "set", "eth0", "up"])
            let ifindex = try fixture.ifindex("tabw0")
            func ping() throws -> Bool {
                try run(
                    ["nsenter", "--net=\(podNamespace.path)", "ping", "-c", "1", "-W", "1", "10.65.0.1"], check: false
                ).status == 0
            }
            #expect(try ping(), "no program attached yet")

            try tc.setEndpoint(ifindex: ifindex, .init(ingressProgram: 1, egressProgram: 2))
            try tc.denyAll(program: 1)
            try tc.allowAll(program: 2)
            for hook in TrafficControl.Hook.allCases {
                try TrafficControl.attach(
                    hook == .ingress ? tc.ingress : tc.egress, to: "tabw0", hook: hook, namespace: fixture.namespacePath
                )
            }
            #expect(
                try TrafficControl.attachedProgramID(on: "tabw0", hook: .ingress, namespace: fixture.namespacePath)
                    == tc.ingress.id)
            #expect(
                try TrafficControl.attachedProgramID(on: "tabw0", hook: .egress, namespace: fixture.namespacePath)
                    == tc.egress.id)
            let filters = try run(["tc", "-n", fixture.namespace, "filter", "show", "dev", "tabw0", "ingress"]).output
            // The kernel keeps 15 characters of a program's name.
            #expect(filters.contains("pref 1 bpf chain 0 handle 0x7ab tabby_tc_ingres"))
            #expect(filters.contains("direct-action"))

            // Egress allowed, ingress denied: the pod's ping goes out and its reply returns by conntrack.
            #expect(try ping())
            #expect(try tc.counters()[.conntrackHit, default: 0] >= 1)
            // The node pinging the pod is a new flow into it: its ingress program denies it.
            let inbound = try run(
                ["nsenter", "--net=\(fixture.namespacePath)", "ping", "-c", "1", "-W", "1", "10.65.0.2"], check: false)
            #expect(inbound.status != 0)
            // Egress denied too: nothing leaves the pod.
            try tc.denyAll(program: 2)
            #expect(try !ping())
            // Fail closed: the interface's endpoint entry gone, even ARP stops.
            try tc.allowAll(program: 2)
            #expect(try ping())
            try tc.removeEndpoint(ifindex: ifindex)
            #expect(try !ping())

            for hook in TrafficControl.Hook.allCases {
                try TrafficControl.detach(from: "tabw0", hook: hook, namespace: fixture.namespacePath)
                #expect(
                    try TrafficControl.attachedProgramID(on: "tabw0", hook: hook, namespace: fixture.namespacePath)
                        == nil)
            }
            #expect(try ping(), "detached: traffic flows again")
            // Detaching twice is not an error.
            try TrafficControl.detach(from: "tabw0", hook: .ingress, namespace: fixture.namespacePath)
        }
    }
    extension EBPFKernelTests {
        /// A node moved to another backend: the eBPF dataplane's filters and pins are found and
        /// removed without loading the program (only Tabby's filters: `other0` has none and is left alone).
        @Test func leftoversOfAnEarlierRunAreRemoved() throws {
            let fixture = try EBPFFixture("leftovers")
            defer { fixture.tearDown() }
            _ = try fixture.veth("cali0left", peer: "peer0")
            _ = try fixture.veth("other0", peer: "peer1")
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try dataplane.apply(PolicyDelta(), resulting: PolicyIR())
            for hook in TrafficControl.Hook.allCases {
                #expect(
                    try TrafficControl.attachedProgramID(on: "cali0left", hook: hook, namespace: fixture.namespacePath)
                        != nil)
            }
            let removed = try EBPFDataplane.removeLeftovers(
                namespacePath: fixture.namespacePath, pinRoot: fixture.pinRoot)
            #expect(removed == ["tc programs on cali0left", "pins under \(fixture.pinRoot)"], "\(removed)")
            for hook in TrafficControl.Hook.allCases {
                #expect(
                    try TrafficControl.attachedProgramID(on: "cali0left", hook: hook, namespace: fixture.namespacePath)
                        == nil)
            }
            #expect(!FileManager.default.fileExists(atPath: fixture.pinRoot))
            #expect(
                try EBPFDataplane.removeLeftovers(namespacePath: fixture.namespacePath, pinRoot: fixture.pinRoot) == [])
        }

        /// A workload interface created after the last apply gets the program from the netlink
        /// watch, without an apply (fail closed until its endpoint is bound); other interfaces do not.
        @Test func theInterfaceWatchAttachesToNewWorkloadInterfaces() throws {
            let fixture = try EBPFFixture("watch")
            defer { fixture.tearDown() }
            _ = try fixture.veth("cali0early", peer: "peer0")
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            defer { dataplane.stopWatchingInterfaces() }
            try dataplane.watchInterfaces()
            func attached(_ name: String) throws -> Bool {
                try TrafficControl.Hook.allCases.allSatisfy { hook in
                    try TrafficControl.attachedProgramID(on: name, hook: hook, namespace: fixture.namespacePath) != nil
                }
            }
            // Made before the watch began: attached by watchInterfaces itself.
            #expect(try attached("cali0early"))
            let created = ContinuousClock.now
            _ = try fixture.veth("cali0late", peer: "peer1")
            _ = try fixture.veth("other0", peer: "peer2")
            var waited = Duration.zero
            while try !attached("cali0late"), waited < .seconds(5) {
                usleep(5_000)
                waited = ContinuousClock.now - created
            }
            #expect(try attached("cali0late"), "no program on cali0late \(waited) after it was created")
            #expect(
                try TrafficControl.attachedProgramID(on: "other0", hook: .ingress, namespace: fixture.namespacePath)
                    == nil)
            #expect(dataplane.status().healthy, "\(dataplane.status().detail)")
            // No endpoint entry yet: the new interface's packets drop, and status() counts why (the
            // veth's own IPv6 neighbour discovery counts too, so at least one more).
            let before = dataplane.status().packets["unknown_interface", default: 0]
            let syn = Packet.tcp("10.0.1.5", 40000, pod, 80, .syn)
            #expect(
                try fixture.test(dataplane.program.egress, syn, ifindex: fixture.ifindex("cali0late")) == tcActionShot)
            #expect(dataplane.status().packets["unknown_interface", default: 0] >= before + 1)
            print("interface watch: program on cali0late \(waited) after it was created")
        }
    }
#endif
