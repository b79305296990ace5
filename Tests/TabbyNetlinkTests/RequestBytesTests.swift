import TabbyCore
import TabbyNetlink
import Testing

/// Exact request bytes, little-endian (x86_64/arm64). Each request is the session's first (seq 1);
/// nlmsg_pid is 0 (the kernel fills in the sender). Attribute lengths exclude padding, as netlink does.
struct RequestBytesTests {
    /// Runs `body` on a session whose fake transport ACKs the first request, and returns what was sent.
    private func sentBytes(_ body: (RouteSocket) throws -> Void) throws -> [UInt8] {
        let transport = FakeTransport(replies: [Reply.error(0, sequence: 1)])
        try body(RouteSocket(transport: transport))
        #expect(transport.sent.count == 1)
        return transport.sent.first ?? []
    }

    @Test func vethWithPeerInANamespace() throws {
        let bytes = try sentBytes { socket in
            try socket.createVeth(
                name: "cali12345678901", peerName: "eth0", peerNamespaceFD: 7, mtu: 1450, mac: nil, peerMAC: nil)
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x80, 0x00, 0x00, 0x00,  // nlmsg_len 128
            0x10, 0x00,  // nlmsg_type RTM_NEWLINK (16)
            0x05, 0x06,  // nlmsg_flags NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE (0x605)
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // ifinfomsg
            0x00, 0x00,  // ifi_family AF_UNSPEC, padding
            0x00, 0x00,  // ifi_type 0
            0x00, 0x00, 0x00, 0x00,  // ifi_index 0
            0x00, 0x00, 0x00, 0x00,  // ifi_flags 0
            0x00, 0x00, 0x00, 0x00,  // ifi_change 0
            // IFLA_IFNAME "cali12345678901\0"
            0x14, 0x00, 0x03, 0x00,  // rta_len 20, rta_type IFLA_IFNAME (3)
            0x63, 0x61, 0x6c, 0x69, 0x31, 0x32, 0x33, 0x34,  // "cali1234"
            0x35, 0x36, 0x37, 0x38, 0x39, 0x30, 0x31, 0x00,  // "5678901\0"
            // IFLA_MTU 1450
            0x08, 0x00, 0x04, 0x00,  // rta_len 8, rta_type IFLA_MTU (4)
            0xaa, 0x05, 0x00, 0x00,  // 1450
            // IFLA_LINKINFO (nested)
            0x44, 0x00, 0x12, 0x80,  // rta_len 68, rta_type NLA_F_NESTED|IFLA_LINKINFO (18)
            0x09, 0x00, 0x01, 0x00,  // rta_len 9, IFLA_INFO_KIND (1)
            0x76, 0x65, 0x74, 0x68, 0x00, 0x00, 0x00, 0x00,  // "veth\0" + 3 bytes padding
            0x34, 0x00, 0x02, 0x80,  // rta_len 52, NLA_F_NESTED|IFLA_INFO_DATA (2)
            0x30, 0x00, 0x01, 0x80,  // rta_len 48, NLA_F_NESTED|VETH_INFO_PEER (1)
            // the peer's ifinfomsg, all zero
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x09, 0x00, 0x03, 0x00,  // rta_len 9, IFLA_IFNAME (3)
            0x65, 0x74, 0x68, 0x30, 0x00, 0x00, 0x00, 0x00,  // "eth0\0" + 3 bytes padding
            0x08, 0x00, 0x1c, 0x00,  // rta_len 8, IFLA_NET_NS_FD (28)
            0x07, 0x00, 0x00, 0x00,  // fd 7
            0x08, 0x00, 0x04, 0x00,  // rta_len 8, IFLA_MTU (4)
            0xaa, 0x05, 0x00, 0x00,  // 1450
        ]
        #expect(bytes == expected)
    }

    @Test func addressAdd() throws {
        let bytes = try sentBytes { socket in
            try socket.addAddress(InterfaceAddress(IPAddress("10.65.0.5")!, prefixLength: 32), index: 7, replace: false)
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x28, 0x00, 0x00, 0x00,  // nlmsg_len 40
            0x14, 0x00,  // nlmsg_type RTM_NEWADDR (20)
            0x05, 0x06,  // NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // ifaddrmsg
            0x02,  // ifa_family AF_INET
            0x20,  // ifa_prefixlen 32
            0x00,  // ifa_flags 0
            0x00,  // ifa_scope RT_SCOPE_UNIVERSE
            0x07, 0x00, 0x00, 0x00,  // ifa_index 7
            // IFA_LOCAL 10.65.0.5
            0x08, 0x00, 0x02, 0x00,  // rta_len 8, IFA_LOCAL (2)
            0x0a, 0x41, 0x00, 0x05,
            // IFA_ADDRESS 10.65.0.5 (no peer: the local address again, as iproute2 sends)
            0x08, 0x00, 0x01, 0x00,  // rta_len 8, IFA_ADDRESS (1)
            0x0a, 0x41, 0x00, 0x05,
        ]
        #expect(bytes == expected)
    }

    @Test func routeAddWithGatewayOnlinkAndTabbyProtocol() throws {
        let bytes = try sentBytes { socket in
            let route = Route(
                destination: CIDR("10.65.1.0/26")!, gateway: IPAddress("10.65.1.0")!, outputIndex: 5, onLink: true)
            try socket.addRoute(route, replace: false)
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x3c, 0x00, 0x00, 0x00,  // nlmsg_len 60
            0x18, 0x00,  // nlmsg_type RTM_NEWROUTE (24)
            0x05, 0x06,  // NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // rtmsg
            0x02,  // rtm_family AF_INET
            0x1a,  // rtm_dst_len 26
            0x00,  // rtm_src_len 0
            0x00,  // rtm_tos 0
            0xfe,  // rtm_table RT_TABLE_MAIN (254)
            0x55,  // rtm_protocol 85 (Tabby)
            0x00,  // rtm_scope RT_SCOPE_UNIVERSE (has a gateway)
            0x01,  // rtm_type RTN_UNICAST
            0x04, 0x00, 0x00, 0x00,  // rtm_flags RTNH_F_ONLINK
            // RTA_TABLE 254
            0x08, 0x00, 0x0f, 0x00,  // rta_len 8, RTA_TABLE (15)
            0xfe, 0x00, 0x00, 0x00,
            // RTA_DST 10.65.1.0
            0x08, 0x00, 0x01, 0x00,  // rta_len 8, RTA_DST (1)
            0x0a, 0x41, 0x01, 0x00,
            // RTA_GATEWAY 10.65.1.0
            0x08, 0x00, 0x05, 0x00,  // rta_len 8, RTA_GATEWAY (5)
            0x0a, 0x41, 0x01, 0x00,
            // RTA_OIF 5
            0x08, 0x00, 0x04, 0x00,  // rta_len 8, RTA_OIF (4)
            0x05, 0x00, 0x00, 0x00,
        ]
        #expect(bytes == expected)
    }

    @Test func permanentNeighbourAdd() throws {
        let bytes = try sentBytes { socket in
            try socket.addNeighbour(
                index: 5, address: IPAddress("10.65.1.0")!, mac: MACAddress("66:0a:00:00:00:02")!, permanent: true,
                replace: true)
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x30, 0x00, 0x00, 0x00,  // nlmsg_len 48
            0x1c, 0x00,  // nlmsg_type RTM_NEWNEIGH (28)
            0x05, 0x05,  // NLM_F_REQUEST|NLM_F_ACK|NLM_F_REPLACE|NLM_F_CREATE (0x505)
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // ndmsg
            0x02,  // ndm_family AF_INET
            0x00, 0x00, 0x00,  // ndm_pad1, ndm_pad2
            0x05, 0x00, 0x00, 0x00,  // ndm_ifindex 5
            0x80, 0x00,  // ndm_state NUD_PERMANENT
            0x00,  // ndm_flags 0
            0x00,  // ndm_type 0
            // NDA_DST 10.65.1.0
            0x08, 0x00, 0x01, 0x00,  // rta_len 8, NDA_DST (1)
            0x0a, 0x41, 0x01, 0x00,
            // NDA_LLADDR 66:0a:00:00:00:02
            0x0a, 0x00, 0x02, 0x00,  // rta_len 10, NDA_LLADDR (2)
            0x66, 0x0a, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,  // MAC + 2 bytes padding
        ]
        #expect(bytes == expected)
    }

    @Test func vxlanFDBAdd() throws {
        let bytes = try sentBytes { socket in
            try socket.addFDBEntry(
                index: 5, mac: MACAddress("66:0a:00:00:00:02")!, destination: IPAddress("192.0.2.2")!)
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x30, 0x00, 0x00, 0x00,  // nlmsg_len 48
            0x1c, 0x00,  // nlmsg_type RTM_NEWNEIGH (28)
            0x05, 0x05,  // NLM_F_REQUEST|NLM_F_ACK|NLM_F_REPLACE|NLM_F_CREATE
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // ndmsg
            0x07,  // ndm_family AF_BRIDGE
            0x00, 0x00, 0x00,  // ndm_pad1, ndm_pad2
            0x05, 0x00, 0x00, 0x00,  // ndm_ifindex 5 (the VXLAN device)
            0x80, 0x00,  // ndm_state NUD_PERMANENT
            0x02,  // ndm_flags NTF_SELF
            0x00,  // ndm_type 0
            // NDA_LLADDR 66:0a:00:00:00:02
            0x0a, 0x00, 0x02, 0x00,  // rta_len 10, NDA_LLADDR (2)
            0x66, 0x0a, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,  // MAC + 2 bytes padding
            // NDA_DST 192.0.2.2 (the remote VTEP)
            0x08, 0x00, 0x01, 0x00,  // rta_len 8, NDA_DST (1)
            0xc0, 0x00, 0x02, 0x02,
        ]
        #expect(bytes == expected)
    }

    @Test func linkDumpRequest() throws {
        let transport = FakeTransport(replies: [Reply.done(sequence: 1)])
        let links = try RouteSocket(transport: transport).links()
        #expect(links.isEmpty)
        let expected: [UInt8] = [
            // nlmsghdr
            0x20, 0x00, 0x00, 0x00,  // nlmsg_len 32
            0x12, 0x00,  // nlmsg_type RTM_GETLINK (18)
            0x01, 0x03,  // NLM_F_REQUEST|NLM_F_DUMP (0x301), no ACK: NLMSG_DONE ends a dump
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // ifinfomsg, all zero: every link of every family
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        #expect(transport.sent == [expected])
    }

    @Test func routeDeleteMatchesAnyScopeButOnlyTabbysProtocol() throws {
        let bytes = try sentBytes { socket in
            try socket.deleteRoute(Route(destination: CIDR("10.99.0.2/32")!, outputIndex: 9))
        }
        let expected: [UInt8] = [
            // nlmsghdr
            0x34, 0x00, 0x00, 0x00,  // nlmsg_len 52
            0x19, 0x00,  // nlmsg_type RTM_DELROUTE (25)
            0x05, 0x00,  // NLM_F_REQUEST|NLM_F_ACK
            0x01, 0x00, 0x00, 0x00,  // nlmsg_seq 1
            0x00, 0x00, 0x00, 0x00,  // nlmsg_pid 0
            // rtmsg
            0x02, 0x20, 0x00, 0x00,  // AF_INET, dst_len 32, src_len 0, tos 0
            0xfe,  // rtm_table RT_TABLE_MAIN
            0x55,  // rtm_protocol 85: only Tabby's route matches
            0xff,  // rtm_scope RT_SCOPE_NOWHERE: any scope
            0x00,  // rtm_type RTN_UNSPEC: any type
            0x00, 0x00, 0x00, 0x00,  // rtm_flags 0
            0x08, 0x00, 0x0f, 0x00, 0xfe, 0x00, 0x00, 0x00,  // RTA_TABLE 254
            0x08, 0x00, 0x01, 0x00, 0x0a, 0x63, 0x00, 0x02,  // RTA_DST 10.99.0.2
            0x08, 0x00, 0x04, 0x00, 0x09, 0x00, 0x00, 0x00,  // RTA_OIF 9
        ]
        #expect(bytes == expected)
    }
}
