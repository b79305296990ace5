import TabbyCore
import Glibc
import Testing

@testable import TabbyNetlink

/// How the session reads the kernel's answers: ACKs, errors, dumps (also interrupted ones), decoding.
struct ReplyTests {
    /// IFLA_* attributes of a canned veth `cali12345678901`, up with carrier, in a bridge, peer in netns 0.
    private var vethAttributes: [UInt8] {
        Reply.attribute(3, Array("cali12345678901".utf8) + [0])  // IFLA_IFNAME
            + Reply.attribute(4, Reply.le32(1450))  // IFLA_MTU
            + Reply.attribute(1, [0xee, 0xee, 0xee, 0xee, 0xee, 0xee])  // IFLA_ADDRESS
            + Reply.attribute(10, Reply.le32(3))  // IFLA_MASTER
            + Reply.attribute(5, Reply.le32(2))  // IFLA_LINK
            + Reply.attribute(37, Reply.le32(0))  // IFLA_LINK_NETNSID
            + Reply.attribute(0x8012, Reply.attribute(1, Array("veth".utf8) + [0]))  // IFLA_LINKINFO { KIND }
    }

    private var loopbackAttributes: [UInt8] {
        Reply.attribute(3, Array("lo".utf8) + [0]) + Reply.attribute(4, Reply.le32(65536))
            + Reply.attribute(1, [0, 0, 0, 0, 0, 0])
    }

    private let upWithCarrier: UInt32 = 0x1 | 0x10000  // IFF_UP | IFF_LOWER_UP

    @Test func kernelErrorNamesTheRequest() throws {
        let transport = FakeTransport(replies: [Reply.error(-EEXIST, sequence: 1)])
        let socket = RouteSocket(transport: transport)
        let expected = Netlink.Error.kernel(errno: 17, request: "RTM_NEWLINK veth cali12345678901")
        #expect(throws: expected) {
            try socket.createVeth(name: "cali12345678901", peerName: "eth0")
        }
        #expect(expected.description == "RTM_NEWLINK veth cali12345678901: File exists (errno 17)")
        #expect(expected.errno == 17)
    }

    @Test func routeErrorReadsLikeARoute() throws {
        let transport = FakeTransport(replies: [Reply.error(-ENETUNREACH, sequence: 1)])
        let route = Route(destination: CIDR("10.65.0.0/26")!, gateway: IPAddress("10.0.0.9")!, outputIndex: 4)
        #expect(
            throws: Netlink.Error.kernel(errno: ENETUNREACH, request: "RTM_NEWROUTE 10.65.0.0/26 via 10.0.0.9 dev #4")
        ) {
            try RouteSocket(transport: transport).addRoute(route, replace: true)
        }
    }

    @Test func sequenceNumbersAdvancePerRequest() throws {
        let transport = FakeTransport(replies: [Reply.error(0, sequence: 41), Reply.error(0, sequence: 42)])
        let socket = RouteSocket(transport: transport, firstSequence: 41)
        try socket.deleteLink(index: 3)
        try socket.deleteLink(index: 4)
        #expect(transport.sent.map { Array($0[8..<12]) } == [[41, 0, 0, 0], [42, 0, 0, 0]])
    }

    @Test func replyForAnotherSequenceIsRejected() throws {
        let transport = FakeTransport(replies: [Reply.error(0, sequence: 9)])
        #expect(
            throws: Netlink.Error.malformedReply(
                request: "RTM_DELLINK dev #3", reason: "reply with another sequence number")
        ) {
            try RouteSocket(transport: transport).deleteLink(index: 3)
        }
    }

    @Test func missingLinkIsNilAndDeleteIsIdempotent() throws {
        let transport = FakeTransport(replies: [Reply.error(-ENODEV, sequence: 1), Reply.error(-ENODEV, sequence: 2)])
        let socket = RouteSocket(transport: transport)
        #expect(try socket.link(named: "cali0") == nil)
        #expect(try socket.deleteLink(named: "cali0") == false)
    }

    @Test func getLinkReturnsTheAnswerBeforeTheACK() throws {
        let answer = Reply.link(
            index: 7, flags: upWithCarrier, attributes: vethAttributes, sequence: 1, messageFlags: 0)
        let transport = FakeTransport(replies: [answer + Reply.error(0, sequence: 1)])
        let link = try RouteSocket(transport: transport).link(named: "cali12345678901")
        #expect(link?.index == 7 && link?.kind == "veth")
    }

    @Test func linkDumpDecodesLinks() throws {
        let datagram =
            Reply.link(index: 1, flags: upWithCarrier, attributes: loopbackAttributes, sequence: 1)
            + Reply.link(index: 7, flags: upWithCarrier, attributes: vethAttributes, sequence: 1)
        let transport = FakeTransport(replies: [datagram, Reply.done(sequence: 1)])
        let links = try RouteSocket(transport: transport).links()
        #expect(
            links == [
                Link(
                    index: 1, name: "lo", kind: nil, mtu: 65536, mac: MACAddress("00:00:00:00:00:00"), isUp: true,
                    hasCarrier: true),
                Link(
                    index: 7, name: "cali12345678901", kind: "veth", mtu: 1450, mac: MACAddress("ee:ee:ee:ee:ee:ee"),
                    isUp: true, hasCarrier: true, masterIndex: 3, linkIndex: 2, linkNetNSID: 0),
            ])
    }

    @Test func interruptedDumpIsDrainedAndRetried() throws {
        let interrupted: UInt16 = 0x2 | 0x10  // NLM_F_MULTI | NLM_F_DUMP_INTR
        let transport = FakeTransport(replies: [
            // Attempt 1 (seq 1): the kernel flags the dump inconsistent; its DONE comes in a later datagram.
            Reply.link(index: 1, flags: upWithCarrier, attributes: loopbackAttributes, sequence: 1),
            Reply.link(
                index: 7, flags: upWithCarrier, attributes: vethAttributes, sequence: 1, messageFlags: interrupted),
            Reply.done(sequence: 1, flags: interrupted),
            // Attempt 2 (seq 2): clean.
            Reply.link(index: 1, flags: upWithCarrier, attributes: loopbackAttributes, sequence: 2)
                + Reply.done(sequence: 2),
        ])
        let links = try RouteSocket(transport: transport).links()
        #expect(links.map(\.name) == ["lo"])
        #expect(transport.sent.count == 2)
        #expect(transport.sent.map { $0[8] } == [1, 2])  // a fresh sequence number per attempt
    }

    @Test func dumpInterruptedEveryTimeGivesUp() throws {
        let transport = FakeTransport()
        for sequence in UInt32(1)...4 {
            transport.enqueue(Reply.done(sequence: sequence, flags: 0x2 | 0x10))
        }
        #expect(throws: Netlink.Error.dumpInterrupted(request: "RTM_GETLINK dump", attempts: 4)) {
            try RouteSocket(transport: transport).links()
        }
    }

    @Test func routeDumpKeepsOneTableAndProtocol() throws {
        func route(table: UInt8, protocol: UInt8, destination: [UInt8], length: UInt8) -> [UInt8] {
            let header: [UInt8] = [2, length, 0, 0, table, `protocol`, 253, 1] + Reply.le32(0)  // scope link, unicast
            let attributes =
                Reply.attribute(15, Reply.le32(UInt32(table)))  // RTA_TABLE
                + Reply.attribute(1, destination)  // RTA_DST
                + Reply.attribute(4, Reply.le32(9))  // RTA_OIF
            let body = header + attributes
            return Reply.header(length: 16 + body.count, type: 24, flags: 2, sequence: 1, portID: 0x1234) + body
        }
        let datagram =
            route(table: 254, protocol: 85, destination: [10, 99, 0, 2], length: 32)
            + route(table: 254, protocol: 2, destination: [10, 0, 0, 0], length: 8)  // the kernel's
            + route(table: 255, protocol: 85, destination: [10, 99, 0, 3], length: 32)  // another table
        let transport = FakeTransport(replies: [datagram + Reply.done(sequence: 1)])
        let routes = try RouteSocket(transport: transport).routes(family: .ipv4, protocol: Netlink.tabbyRouteProtocol)
        #expect(routes == [Route(destination: CIDR("10.99.0.2/32")!, outputIndex: 9)])
    }

    @Test(arguments: [
        ("net.ipv4.conf.cali1.proxy_arp", "/proc/sys/net/ipv4/conf/cali1/proxy_arp"),
        ("net/ipv4/conf/vxlan.calico/rp_filter", "/proc/sys/net/ipv4/conf/vxlan.calico/rp_filter"),
    ])
    func sysctlKeysBecomePaths(key: String, path: String) throws {
        #expect(try Sysctl.path(of: key) == path)
    }

    @Test(arguments: ["vm.swappiness", "kernel.hostname", "net/../kernel/hostname"])
    func sysctlRefusesKeysOutsideNet(key: String) {
        #expect(throws: Sysctl.Error.notPerNamespace(key: key)) { try Sysctl.set(key, "1") }
    }
}

@Suite("InterfaceAddress parsing")
struct InterfaceAddressParsingTests {
    @Test(arguments: [
        ("10.10.0.11/24", "10.10.0.11", 24), ("10.10.0.11", "10.10.0.11", 32), ("fd00::5/64", "fd00::5", 64),
    ])
    func parses(text: String, address: String, length: Int) {
        let parsed = InterfaceAddress(parsing: text)
        #expect(parsed?.address == IPAddress(address) && parsed?.prefixLength == length)
    }

    @Test(arguments: ["", "10.10.0.11/33", "10.10.0.11/", "nonsense/24", "10.0.0.1/2/3"])
    func refuses(text: String) {
        #expect(InterfaceAddress(parsing: text) == nil)
    }
}
