import Testing

@testable import TabbyCore

@Suite("CIDR networks")
struct CIDRTests {
    @Test(arguments: [
        ("10.0.0.0/24", "10.0.0.0/24"),
        ("10.0.0.1/24", "10.0.0.0/24"),
        ("192.168.7.200/20", "192.168.0.0/20"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("1.2.3.4/0", "0.0.0.0/0"),
        ("1.2.3.4", "1.2.3.4/32"),
        ("fd00::/64", "fd00::/64"),
        ("FD00:0:0:0:1::/64", "fd00::/64"),
        ("2001:db8::1/48", "2001:db8::/48"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
        ("::ffff:10.0.0.0/120", "::ffff:10.0.0.0/120"),
    ])
    func parsesLenientlyAndFormats(text: String, canonical: String) throws {
        let cidr = try CIDR.parse(text)
        #expect(cidr.description == canonical)
        #expect(CIDR(text) == cidr)
        #expect(try CIDR.parse(canonical, allowHostBits: false) == cidr)
    }

    @Test func strictParsingNamesTheIntendedNetwork() {
        #expect(
            throws: AddressParseError(
                input: "10.0.0.1/24", reason: "host bits are set; the network is 10.0.0.0/24", subject: "CIDR")
        ) { try CIDR.parse("10.0.0.1/24", allowHostBits: false) }
        #expect(throws: AddressParseError.self) { try CIDR.parse("fd00::1/64", allowHostBits: false) }
        #expect(
            AddressParseError(input: "10.0.0.1/33", reason: "prefix length 33 exceeds 32", subject: "CIDR").description
                == "invalid CIDR \"10.0.0.1/33\": prefix length 33 exceeds 32")
    }

    @Test(arguments: [
        ("10.0.0.0/33", "prefix length 33 exceeds 32"),
        ("10.0.0/24", "expected 4 dot-separated octets, found 3"),
        ("1.2.3.4/", "missing prefix length after '/'"),
        ("/24", "missing address before '/'"),
        ("fd00::/129", "prefix length 129 exceeds 128"),
        ("fd00::/-1", "prefix length \"-1\" is not a decimal number"),
        ("10.0.0.0/08", "prefix length \"08\" has a leading zero"),
        ("10.0.0.0/2 4", "prefix length \"2 4\" is not a decimal number"),
        ("10.0.0.0/24/8", "prefix length \"24/8\" is not a decimal number"),
        ("10.0.0.0/99999999999999999999", "prefix length 99999999999999999999 exceeds 32"),
        ("abc", "expected 4 dot-separated octets, found 1"),
        ("", "missing address before '/'"),
    ])
    func rejectsBadInput(text: String, reason: String) {
        #expect(CIDR(text) == nil)
        #expect(throws: AddressParseError(input: text, reason: reason, subject: "CIDR")) { try CIDR.parse(text) }
    }

    @Test func initializerMasksHostBits() throws {
        let cidr = CIDR(network: try IPAddress.parse("10.1.2.3"), prefixLength: 16)
        #expect(cidr.network == IPAddress("10.1.0.0"))
        #expect(cidr.prefixLength == 16)
        #expect(cidr == CIDR("10.1.0.0/16"))
    }

    @Test(arguments: [
        ("10.0.0.0/24", "10.0.0.0", "10.0.0.255", "255.255.255.0", UInt128(256)),
        ("10.0.0.0/30", "10.0.0.0", "10.0.0.3", "255.255.255.252", 4),
        ("10.0.0.7/32", "10.0.0.7", "10.0.0.7", "255.255.255.255", 1),
        ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", "0.0.0.0", 1 << 32),
        ("fd00::/64", "fd00::", "fd00::ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff::", 1 << 64),
        ("::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", UInt128.max),
        ("::1/128", "::1", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1),
    ])
    func boundsMaskAndSize(text: String, first: String, last: String, netmask: String, size: UInt128) throws {
        let cidr = try CIDR.parse(text)
        #expect(cidr.firstAddress == IPAddress(first))
        #expect(cidr.network == IPAddress(first))
        #expect(cidr.lastAddress == IPAddress(last))
        #expect(cidr.netmask == IPAddress(netmask))
        #expect(cidr.size == size)
        #expect(cidr.broadcast == (cidr.family == .v4 ? IPAddress(last) : nil))
    }

    @Test(arguments: [
        ("10.0.0.0/24", "10.0.0.0", true),
        ("10.0.0.0/24", "10.0.0.255", true),
        ("10.0.0.0/24", "10.0.1.0", false),
        ("10.0.0.0/24", "9.255.255.255", false),
        ("0.0.0.0/0", "255.255.255.255", true),
        ("0.0.0.0/0", "::", false),
        ("::/0", "1.2.3.4", false),
        ("::/0", "ffff::1", true),
        ("fd00::/64", "fd00::1234", true),
        ("fd00::/64", "fd00:0:0:1::", false),
    ])
    func containsAddress(cidr: String, address: String, expected: Bool) throws {
        #expect(try CIDR.parse(cidr).contains(IPAddress.parse(address)) == expected)
    }

    @Test(arguments: [
        ("10.0.0.0/8", "10.1.0.0/16", true, true),
        ("10.1.0.0/16", "10.0.0.0/8", false, true),
        ("10.0.0.0/24", "10.0.0.0/24", true, true),
        ("10.0.0.0/24", "10.0.1.0/24", false, false),
        ("10.0.0.0/25", "10.0.0.128/25", false, false),
        ("0.0.0.0/0", "192.168.0.0/16", true, true),
        ("0.0.0.0/0", "::/0", false, false),
        ("fd00::/8", "fd12:3456::/32", true, true),
        ("fd00::/64", "fd00:0:0:1::/64", false, false),
    ])
    func containsAndOverlapsNetworks(outer: String, inner: String, contains: Bool, overlaps: Bool) throws {
        let outerCIDR = try CIDR.parse(outer)
        let innerCIDR = try CIDR.parse(inner)
        #expect(outerCIDR.contains(innerCIDR) == contains)
        #expect(outerCIDR.overlaps(innerCIDR) == overlaps)
        #expect(innerCIDR.overlaps(outerCIDR) == overlaps)
    }

    @Test func ordersByAddressThenPrefix() throws {
        let sorted = try ["fd00::/8", "10.0.0.0/24", "10.0.0.0/8", "9.0.0.0/8", "::/0"].map {
            text throws(AddressParseError) in
            try CIDR.parse(text)
        }.sorted()
        #expect(sorted.map(\.description) == ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/24", "::/0", "fd00::/8"])
    }

    @Test func splitsA24IntoFour26sInOrder() throws {
        let subnets = try CIDR.parse("10.0.0.0/24").subnets(prefixLength: 26)
        #expect(subnets.count == 4)
        #expect(Array(subnets).map(\.description) == ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"])
    }

    @Test func splitsA8Into26sLazily() throws {
        let subnets = try CIDR.parse("10.0.0.0/8").subnets(prefixLength: 26)
        #expect(subnets.count == 262_144)
        #expect(subnets.first.description == "10.0.0.0/26")
        #expect(subnets.last.description == "10.255.255.192/26")
        #expect(subnets.subnet(at: 1)?.description == "10.0.0.64/26")
        #expect(subnets.subnet(at: 262_143) == subnets.last)
        #expect(subnets.subnet(at: 262_144) == nil)
        // Only the first few blocks are ever produced.
        #expect(subnets.prefix(3).map(\.description) == ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26"])
    }

    @Test func splitsIPv6Blocks() throws {
        let subnets = try CIDR.parse("fd00:1:2:3::/64").subnets(prefixLength: 122)
        #expect(subnets.count == 1 << 58)
        #expect(subnets.first.description == "fd00:1:2:3::/122")
        #expect(subnets.last.description == "fd00:1:2:3:ffff:ffff:ffff:ffc0/122")
        #expect(Array(subnets.prefix(2)).last?.description == "fd00:1:2:3::40/122")
        let everything = try CIDR.parse("::/0").subnets(prefixLength: 128)
        #expect(everything.count == UInt128.max)
        #expect(everything.subnet(at: UInt128.max)?.description == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
        #expect(Array(try CIDR.parse("::/0").subnets(prefixLength: 0)).map(\.description) == ["::/0"])
    }

    @Test func splittingToTheSamePrefixYieldsTheNetworkItself() throws {
        let cidr = try CIDR.parse("10.0.0.0/24")
        #expect(Array(try cidr.subnets(prefixLength: 24)) == [cidr])
    }

    @Test(arguments: [("10.0.0.0/24", 23), ("10.0.0.0/24", 33), ("fd00::/64", 129), ("fd00::/64", 63)])
    func rejectsImpossibleSplits(cidr: String, prefixLength: Int) throws {
        #expect(throws: AddressParseError.self) { try CIDR.parse(cidr).subnets(prefixLength: prefixLength) }
    }

    @Test func iteratesEveryAddress() throws {
        let addresses = try CIDR.parse("10.0.0.4/30").addresses
        #expect(addresses.count == 4)
        #expect(Array(addresses).map(\.description) == ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"])
        #expect(Array(try CIDR.parse("255.255.255.255/32").addresses).map(\.description) == ["255.255.255.255"])
        #expect(Array(try CIDR.parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127").addresses).count == 2)
    }

    @Test func addressAtAndOffsetOfAreInverse() throws {
        let cidr = try CIDR.parse("10.0.0.0/24")
        #expect(cidr.address(at: 0) == IPAddress("10.0.0.0"))
        #expect(cidr.address(at: 255) == IPAddress("10.0.0.255"))
        #expect(cidr.address(at: 256) == nil)
        #expect(cidr.offset(of: try IPAddress.parse("10.0.0.17")) == 17)
        #expect(cidr.offset(of: try IPAddress.parse("10.0.1.0")) == nil)
        #expect(cidr.offset(of: try IPAddress.parse("::a00:11")) == nil)
        let whole = try CIDR.parse("::/0")
        #expect(whole.address(at: UInt128.max) == IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
        #expect(whole.offset(of: try IPAddress.parse("::5")) == 5)
    }
}
