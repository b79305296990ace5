#if EBPF
    import Foundation
    import Glibc
    import TabbyCore
    import TabbyEBPF
    import TabbyNetlink

    let tcActionOK: UInt32 = 0  // TC_ACT_OK
    let tcActionShot: UInt32 = 2  // TC_ACT_SHOT

    /// Runs a program (`ip`, `ping`, `tc`) and returns its exit status and output; setup and independent
    /// checks only, never what is under test.
    @discardableResult
    func run(_ arguments: [String], check: Bool = true) throws -> (status: Int32, output: String) {
        let result = try Command.run(arguments)
        let text = result.stdout + result.stderr
        if check && result.status != 0 {
            throw ShellError(description: "\(arguments.joined(separator: " ")) exited \(result.status): \(text)")
        }
        return (result.status, text)
    }

    struct ShellError: Error, CustomStringConvertible {
        var description: String
    }

    /// A network namespace of the test's own (`tabby-t-ebpf-<role>-<random>`) and a per-test pin root
    /// `/sys/fs/bpf/tabby-test-<pid>-<random>`; `tearDown()` removes both (call it from `defer`).
    final class EBPFFixture {
        let namespace: String
        let namespacePath: String
        let pinRoot: String
        private var extraNamespaces: [String] = []

        init(_ role: String) throws {
            let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            namespace = "tabby-t-ebpf-\(role)-\(suffix)"
            namespacePath = try NetworkNamespace.create(named: namespace)
            pinRoot = "/sys/fs/bpf/tabby-test-\(getpid())-\(suffix)"
        }

        /// Another namespace, removed by `tearDown()`.
        func addNamespace(_ role: String) throws -> (name: String, path: String) {
            let name = "\(namespace)-\(role)"
            let path = try NetworkNamespace.create(named: name)
            extraNamespaces.append(name)
            return (name, path)
        }

        /// `ip` inside the fixture's namespace.
        func ip(_ arguments: String) throws {
            try run(["ip", "-n", namespace] + arguments.split(separator: " ").map(String.init))
        }

        /// A veth pair inside the namespace, both ends up; returns the first end's ifindex.
        func veth(_ name: String, peer: String) throws -> Int32 {
            try ip("link add \(name) type veth peer name \(peer)")
            try ip("link set \(name) up")
            try ip("link set \(peer) up")
            return try ifindex(name)
        }

        func ifindex(_ name: String) throws -> Int32 {
            try NetworkNamespace.run(path: namespacePath) { Int32(bitPattern: if_nametoindex(name)) }
        }

        /// BPF_PROG_TEST_RUN of `program` on `packet` as if it crossed interface `ifindex` of the namespace.
        func test(_ program: BPFProgram, _ packet: [UInt8], ifindex: Int32) throws -> UInt32 {
            try NetworkNamespace.run(path: namespacePath) { try program.testRun(packet: packet, ifindex: ifindex) }
                .returnValue
        }

        func tearDown() {
            for name in extraNamespaces { try? NetworkNamespace.delete(named: name) }
            try? NetworkNamespace.delete(named: namespace)
            BPFObject.removePins(at: pinRoot)
        }
    }

    /// Ethernet + IPv4 + TCP/UDP/ICMP frames, built byte by byte (checksums of L4 are left zero: the
    /// program does not check them).
    enum Packet {
        struct TCPFlags: OptionSet {
            let rawValue: UInt8
            static let fin = TCPFlags(rawValue: 0x01)
            static let syn = TCPFlags(rawValue: 0x02)
            static let rst = TCPFlags(rawValue: 0x04)
            static let ack = TCPFlags(rawValue: 0x10)
        }

        static func tcp(
            _ source: String, _ sourcePort: UInt16, _ destination: String, _ port: UInt16, _ flags: TCPFlags
        )
            -> [UInt8]
        {
            let header =
                bytes(sourcePort) + bytes(port) + [0, 0, 0, 1] + [0, 0, 0, 0] + [5 << 4, flags.rawValue]
                + [0xff, 0xff, 0, 0, 0, 0]
            return ipv4(source, destination, protocol: 6, payload: header)
        }

        static func udp(_ source: String, _ sourcePort: UInt16, _ destination: String, _ port: UInt16) -> [UInt8] {
            let data: [UInt8] = [1, 2, 3, 4]
            let header = bytes(sourcePort) + bytes(port) + bytes(UInt16(8 + data.count)) + [0, 0]
            return ipv4(source, destination, protocol: 17, payload: header + data)
        }

        static func icmpEcho(_ source: String, _ destination: String, id: UInt16, reply: Bool = false) -> [UInt8] {
            ipv4(source, destination, protocol: 1, payload: [reply ? 0 : 8, 0, 0, 0] + bytes(id) + [0, 1])
        }

        static func icmp(_ source: String, _ destination: String, type: UInt8, code: UInt8) -> [UInt8] {
            ipv4(source, destination, protocol: 1, payload: [type, code, 0, 0, 0, 0, 0, 0])
        }

        /// An ICMP error (`type`/`code`) from `source` to `destination` about `frame` (a frame built
        /// here): its IPv4 header and first 8 bytes of payload, as routers quote them.
        static func icmpError(_ source: String, _ destination: String, type: UInt8, code: UInt8, about frame: [UInt8])
            -> [UInt8]
        {
            ipv4(source, destination, protocol: 1, payload: [type, code, 0, 0, 0, 0, 0, 0] + frame[14..<(14 + 28)])
        }

        static func arpRequest() -> [UInt8] {
            ethernet(type: 0x0806) + [0, 1, 8, 0, 6, 4, 0, 1] + [2, 0, 0, 0, 0, 1] + [10, 65, 0, 2]
                + [0, 0, 0, 0, 0, 0] + [169, 254, 1, 1]
        }

        static func ethernet(type: UInt16) -> [UInt8] {
            [0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 2, 0, 0, 0, 0, 1] + bytes(type)
        }

        static func ipv4(_ source: String, _ destination: String, protocol: UInt8, payload: [UInt8]) -> [UInt8] {
            var header: [UInt8] =
                [0x45, 0] + bytes(UInt16(20 + payload.count)) + [0, 0, 0x40, 0, 64, `protocol`, 0, 0]
            header += IPv4Address(source)!.bytes + IPv4Address(destination)!.bytes
            var sum: UInt32 = 0
            for index in stride(from: 0, to: header.count, by: 2) {
                sum += UInt32(header[index]) << 8 | UInt32(header[index + 1])
            }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
            header.replaceSubrange(10..<12, with: bytes(~UInt16(sum)))
            return ethernet(type: 0x0800) + header + payload
        }

        static func bytes(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
    }

    /// Ethernet + IPv6 (+ extension headers) + TCP/UDP/ICMPv6 frames (L4 checksums left zero).
    enum Packet6 {
        /// An extension header: hop-by-hop (0), routing (43), destination options (60), 8 bytes,
        /// or 8 * (1 + `extraWords`) for the variable ones; fragment (44) with `fragmentOffset` (in
        /// 8-byte units; 0: the first fragment).
        struct Extension {
            var type: UInt8
            var extraWords: UInt8 = 0
            var fragmentOffset: UInt16 = 0
        }

        static func tcp(
            _ source: String, _ sourcePort: UInt16, _ destination: String, _ port: UInt16, _ flags: Packet.TCPFlags,
            extensions: [Extension] = []
        ) -> [UInt8] {
            let header =
                Packet.bytes(sourcePort) + Packet.bytes(port) + [0, 0, 0, 1] + [0, 0, 0, 0] + [5 << 4, flags.rawValue]
                + [0xff, 0xff, 0, 0, 0, 0]
            return ipv6(source, destination, nextHeader: 6, payload: header, extensions: extensions)
        }

        static func udp(_ source: String, _ sourcePort: UInt16, _ destination: String, _ port: UInt16) -> [UInt8] {
            let data: [UInt8] = [1, 2, 3, 4]
            let header = Packet.bytes(sourcePort) + Packet.bytes(port) + Packet.bytes(UInt16(8 + data.count)) + [0, 0]
            return ipv6(source, destination, nextHeader: 17, payload: header + data)
        }

        /// ICMPv6: type, code, checksum, then the identifier and sequence (echo) or four more bytes.
        static func icmp(_ source: String, _ destination: String, type: UInt8, code: UInt8 = 0, id: UInt16 = 0)
            -> [UInt8]
        {
            ipv6(source, destination, nextHeader: 58, payload: [type, code, 0, 0] + Packet.bytes(id) + [0, 1])
        }

        /// An ICMPv6 error (`type`/`code`) from `source` to `destination` about `frame` (a frame built
        /// here without extension headers): its IPv6 header and first 8 bytes of payload.
        static func icmpError(
            _ source: String, _ destination: String, type: UInt8, code: UInt8 = 0, about frame: [UInt8]
        )
            -> [UInt8]
        {
            ipv6(source, destination, nextHeader: 58, payload: [type, code, 0, 0, 0, 0, 5, 0] + frame[14..<(14 + 48)])
        }

        static func ipv6(
            _ source: String, _ destination: String, nextHeader: UInt8, payload: [UInt8], extensions: [Extension] = []
        ) -> [UInt8] {
            var chain: [UInt8] = []
            for (index, ext) in extensions.enumerated() {
                let next = index + 1 < extensions.count ? extensions[index + 1].type : nextHeader
                if ext.type == 44 {
                    chain += [next, 0] + Packet.bytes(ext.fragmentOffset << 3) + [0, 0, 0, 7]
                } else {
                    chain += [next, ext.extraWords] + [UInt8](repeating: 0, count: 6 + 8 * Int(ext.extraWords))
                }
            }
            let body = chain + payload
            let header =
                [0x60, 0, 0, 0] + Packet.bytes(UInt16(body.count)) + [extensions.first?.type ?? nextHeader, 64]
                + IPv6Address(source)!.bytes + IPv6Address(destination)!.bytes
            return Packet.ethernet(type: 0x86dd) + header + body
        }
    }

    extension TCProgram {
        /// A policy program that allows everything (the shape of a `kns.<namespace>` profile alone);
        /// `family` picks the address trie.
        func allowAll(program: UInt32, family: IPFamily = .v4) throws {
            try setPortClass(program: program, protocol: nil, ports: nil, portClass: 0)
            try setAddressClass(program: program, cidr: CIDR(family == .v4 ? "0.0.0.0/0" : "::/0")!, addressClass: 0)
            try setVerdict(program: program, portClass: Self.anyClass, addressClass: Self.anyClass, Verdict(.allow))
        }

        /// A policy program that denies everything (selected, no rules: "default deny once selected").
        func denyAll(program: UInt32, family: IPFamily = .v4) throws {
            try setPortClass(program: program, protocol: nil, ports: nil, portClass: 0)
            try setAddressClass(program: program, cidr: CIDR(family == .v4 ? "0.0.0.0/0" : "::/0")!, addressClass: 0)
            try setVerdict(program: program, portClass: Self.anyClass, addressClass: Self.anyClass, Verdict(.deny))
        }
    }
#endif
