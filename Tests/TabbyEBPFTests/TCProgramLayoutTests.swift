#if EBPF
    import Testing
    import TabbyCore
    @testable import TabbyEBPF

    /// The byte layouts `TCProgram` writes must be exactly the C structs of `bpf/tabby_tc.bpf.c`; these
    /// pin them, field by field, on this (little-endian) machine.
    @Suite struct TCProgramLayoutTests {
        struct PrefixCase: Sendable, CustomTestStringConvertible {
            var range: ClosedRange<UInt16>
            /// (value, prefix bits)
            var expected: [[Int]]
            var testDescription: String { "\(range)" }
        }

        static let prefixCases: [PrefixCase] = [
            PrefixCase(range: 80...80, expected: [[80, 16]]),
            PrefixCase(range: 0...65535, expected: [[0, 0]]),
            // 53..80: 53/16, 54-55/15, 56-63/13, 64-79/12, 80/16
            PrefixCase(range: 53...80, expected: [[53, 16], [54, 15], [56, 13], [64, 12], [80, 16]]),
            PrefixCase(
                range: 1024...65535,
                expected: [[1024, 6], [2048, 5], [4096, 4], [8192, 3], [16384, 2], [32768, 1]]),
            PrefixCase(range: 65535...65535, expected: [[65535, 16]]),
        ]

        @Test(arguments: prefixCases)
        func portRangesBecomeTheFewestPrefixes(_ test: PrefixCase) {
            let prefixes = TCProgram.portPrefixes(test.range).map { [Int($0.value), $0.bits] }
            #expect(prefixes == test.expected)
        }

        /// `struct tabby_overlay_key`: address in network order, port in host order, two bytes of padding.
        @Test func overlayPeerKeyLayout() {
            let peer = TCProgram.OverlayPeer(address: IPv4Address("10.0.0.2")!, port: 4789)
            #expect(peer.key == [10, 0, 0, 2, 0xb5, 0x12, 0, 0])
        }

        @Test func portPrefixesCoverExactlyTheRange() {
            for (low, high) in [(UInt16(1), UInt16(1000)), (7, 7), (300, 40000), (0, 1)] {
                var covered = Set<UInt32>()
                for (value, bits) in TCProgram.portPrefixes(low...high) {
                    let size = UInt32(1) << (16 - bits)
                    #expect(UInt32(value) % size == 0, "prefix \(value)/\(bits) is not aligned")
                    for port in UInt32(value)..<UInt32(value) + size { #expect(covered.insert(port).inserted) }
                }
                #expect(covered == Set(UInt32(low)...UInt32(high)))
            }
        }

        @Test func portKeyLayout() {
            // prefixlen (host order) | program (big endian) | protocol (16 bits, big endian) | port (big endian)
            #expect(
                TCProgram.portKeys(program: 0x0102_0304, protocol: 6, ports: 80...80) == [
                    [64, 0, 0, 0, 1, 2, 3, 4, 0, 6, 0, 80]
                ])
            #expect(
                TCProgram.portKeys(program: 7, protocol: 17, ports: nil) == [[48, 0, 0, 0, 0, 0, 0, 7, 0, 17, 0, 0]])
            #expect(
                TCProgram.portKeys(program: 7, protocol: nil, ports: nil) == [[32, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0]])
            // ICMP echo request (type 8, code 0) as type << 8 | code
            #expect(TCProgram.portKeys(program: 1, protocol: 1, ports: 0x0800...0x0800)[0].suffix(2) == [8, 0])
        }

        @Test func sourcePortKeyLayout() {
            // A port class refined by the source port carries the top bit (TABBY_CLASS_BY_SPORT).
            #expect(TCProgram.bySourcePort == 0x8000_0000)
            // prefixlen (host order) | program | port class | protocol (16 bits) | source port, all big endian
            #expect(
                TCProgram.sourcePortKeys(program: 0x0102_0304, portClass: 0x8000_0005, protocol: 6, ports: 80...80) == [
                    [96, 0, 0, 0, 1, 2, 3, 4, 0x80, 0, 0, 5, 0, 6, 0, 80]
                ])
            #expect(
                TCProgram.sourcePortKeys(program: 7, portClass: 0x8000_0001, protocol: 17, ports: nil) == [
                    [80, 0, 0, 0, 0, 0, 0, 7, 0x80, 0, 0, 1, 0, 17, 0, 0]
                ])
            #expect(
                TCProgram.sourcePortKeys(program: 7, portClass: 0x8000_0001, protocol: nil, ports: nil) == [
                    [64, 0, 0, 0, 0, 0, 0, 7, 0x80, 0, 0, 1, 0, 0, 0, 0]
                ])
            // 1024-65535 as six prefixes of the source port
            #expect(
                TCProgram.sourcePortKeys(program: 7, portClass: 0x8000_0001, protocol: 6, ports: 1024...65535).map {
                    $0[0]
                } == [86, 85, 84, 83, 82, 81])
        }

        @Test func addressKeyLayout() throws {
            #expect(
                TCProgram.addressKey(program: 9, cidr: CIDR("10.1.2.0/24")!) == [
                    56, 0, 0, 0, 0, 0, 0, 9, 10, 1, 2, 0,
                ])
            #expect(
                TCProgram.addressKey(program: 9, cidr: CIDR("0.0.0.0/0")!) == [32, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0])
            // struct tabby_addr6_key: prefixlen 32 + 64, program, sixteen address bytes.
            #expect(
                TCProgram.addressKey(program: 9, cidr: CIDR("fd00:1::/64")!) == [
                    96, 0, 0, 0, 0, 0, 0, 9, 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ])
        }

        @Test func endpointAndTimeoutLayout() {
            let endpoint = TCProgram.Endpoint(
                ingressProgram: 3, egressProgram: 0x0100, isHost: true, ingress6Program: 4, egress6Program: 0x0200)
            // struct tabby_endpoint: ingress, egress, flags, ingress6, egress6 (host order).
            #expect(endpoint.bytes == [3, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0, 2, 0, 0])
            let timeouts = TCProgram.Timeouts(udp: .milliseconds(50))
            #expect(timeouts.bytes.count == 7 * 8)
            // udp is the fifth u64: 50 ms = 50,000,000 ns = 0x02FAF080
            #expect(Array(timeouts.bytes[32..<40]) == [0x80, 0xf0, 0xfa, 0x02, 0, 0, 0, 0])
            #expect(timeouts.bytes.enumerated().allSatisfy { $0.offset / 8 == 4 || $0.element == 0 })
        }
    }
#endif
