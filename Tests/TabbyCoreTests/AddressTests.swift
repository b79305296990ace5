import Foundation
import Testing

@testable import TabbyCore

@Suite("IPv4 addresses")
struct IPv4AddressTests {
    @Test(arguments: [
        ("0.0.0.0", UInt32(0)),
        ("10.0.0.1", 0x0A00_0001),
        ("192.168.1.254", 0xC0A8_01FE),
        ("255.255.255.255", UInt32.max),
        ("1.2.3.4", 0x0102_0304),
    ])
    func parsesValidDottedQuads(text: String, value: UInt32) throws {
        let address = try IPv4Address.parse(text)
        #expect(address.value == value)
        #expect(address.description == text)
        #expect(IPv4Address(text) == address)
    }

    @Test(arguments: [
        ("", "address is empty"),
        ("1.2.3", "expected 4 dot-separated octets, found 3"),
        ("1.2.3.4.5", "expected 4 dot-separated octets, found 5"),
        ("1.2.3.256", "octet 256 is out of range 0-255"),
        ("1.2.3.1000", "octet 1000 is out of range 0-255"),
        ("01.2.3.4", "octet 1 \"01\" has a leading zero"),
        ("1.2.3.00", "octet 4 \"00\" has a leading zero"),
        ("1..3.4", "octet 2 is empty"),
        ("1.2.3.4.", "expected 4 dot-separated octets, found 5"),
        (" 1.2.3.4", "octet 1 \" 1\" is not a decimal number"),
        ("1.2.3.4 ", "octet 4 \"4 \" is not a decimal number"),
        ("1.2.3.-4", "octet 4 \"-4\" is not a decimal number"),
        ("a.b.c.d", "octet 1 \"a\" is not a decimal number"),
        ("1.2.3.4/24", "octet 4 \"4/24\" is not a decimal number"),
    ])
    func rejectsInvalidText(text: String, reason: String) {
        #expect(IPv4Address(text) == nil)
        #expect(throws: AddressParseError(input: text, reason: reason, subject: "IPv4 address")) {
            try IPv4Address.parse(text)
        }
    }

    @Test func errorDescriptionNamesInputAndReason() {
        let error = AddressParseError(
            input: "1.2.3.256", reason: "octet 256 is out of range 0-255", subject: "IPv4 address")
        #expect(error.description == "invalid IPv4 address \"1.2.3.256\": octet 256 is out of range 0-255")
    }

    @Test func octetInitializerAndBytes() {
        let address = IPv4Address(192, 0, 2, 1)
        #expect(address.value == 0xC000_0201)
        #expect(address.bytes == [192, 0, 2, 1])
        #expect(IPv4Address(bytes: [192, 0, 2, 1]) == address)
        #expect(IPv4Address(bytes: [1, 2, 3]) == nil)
        #expect(IPv4Address(bytes: [1, 2, 3, 4, 5]) == nil)
    }

    @Test func ordersNumerically() {
        #expect(IPv4Address(9, 0, 0, 0) < IPv4Address(10, 0, 0, 0))
        #expect(IPv4Address(10, 0, 0, 255) < IPv4Address(10, 0, 1, 0))
    }
}

@Suite("IPv6 addresses")
struct IPv6AddressTests {
    @Test(arguments: [
        ("::", UInt128(0)),
        ("::1", 1),
        ("1::", UInt128(1) << 112),
        ("2001:db8::1", 0x2001_0db8_0000_0000_0000_0000_0000_0001),
        ("2001:DB8::1", 0x2001_0db8_0000_0000_0000_0000_0000_0001),
        ("2001:0db8:0000:0000:0000:0000:0002:0001", 0x2001_0db8_0000_0000_0000_0000_0002_0001),
        ("1:2:3:4:5:6:7:8", 0x0001_0002_0003_0004_0005_0006_0007_0008),
        ("1:2:3:4:5:6:7::", 0x0001_0002_0003_0004_0005_0006_0007_0000),
        ("::2:3:4:5:6:7:8", 0x0000_0002_0003_0004_0005_0006_0007_0008),
        ("::ffff:1.2.3.4", 0x0000_0000_0000_0000_0000_ffff_0102_0304),
        ("::1.2.3.4", 0x0102_0304),
        ("64:ff9b::192.0.2.33", 0x0064_ff9b_0000_0000_0000_0000_c000_0221),
        ("1:2:3:4:5:6:1.2.3.4", 0x0001_0002_0003_0004_0005_0006_0102_0304),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UInt128.max),
    ])
    func parsesValidForms(text: String, value: UInt128) throws {
        #expect(try IPv6Address.parse(text).value == value)
        #expect(IPv6Address(text)?.value == value)
    }

    @Test(arguments: [
        "", ":", ":::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", ":1::", "1::2:", "::1:", ":1:2:3:4:5:6:7:8",
        "12345::", "g::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "fe80::1%eth0", "1.2.3.4::", "::1.2.3",
        "::1.2.3.256", "::01.2.3.4", "1.2.3.4", " ::1", "::1 ", "::ffff:1.2.3.4:5",
    ])
    func rejectsInvalidForms(text: String) {
        #expect(IPv6Address(text) == nil)
        #expect(throws: AddressParseError.self) { try IPv6Address.parse(text) }
    }

    @Test(arguments: [
        ("12345::", "group \"12345\" has more than 4 hex digits"),
        ("1::2::3", "\"::\" may appear only once"),
        ("1:2:3:4:5:6:7", "expected 8 groups, found 7"),
        ("fe80::1%eth0", "zone identifiers (\"%...\") are not supported"),
        ("::1.2.3.256", "embedded IPv4 address \"1.2.3.256\": octet 256 is out of range 0-255"),
        ("zz::", "group \"zz\" is not hexadecimal"),
    ])
    func explainsWhatIsWrong(text: String, reason: String) {
        #expect(throws: AddressParseError(input: text, reason: reason, subject: "IPv6 address")) {
            try IPv6Address.parse(text)
        }
    }

    @Test(arguments: [
        ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("0:0:0:0:0:ffff:c000:0201", "::ffff:192.0.2.1"),
        ("::", "::"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("1::", "1::"),
        ("2001:DB8::ABCD", "2001:db8::abcd"),
        ("FD00::", "fd00::"),
        ("1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"),
        ("::1.2.3.4", "::102:304"),
        ("fe80:0000:0000:0000:0202:b3ff:fe1e:8329", "fe80::202:b3ff:fe1e:8329"),
    ])
    func formatsCanonically(text: String, canonical: String) throws {
        #expect(try IPv6Address.parse(text).description == canonical)
    }

    @Test func bytesRoundTrip() throws {
        let address = try IPv6Address.parse("2001:db8::102:304")
        #expect(address.bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
        #expect(IPv6Address(bytes: address.bytes) == address)
        #expect(IPv6Address(bytes: [1, 2, 3, 4]) == nil)
    }
}

@Suite("IP addresses of either family")
struct IPAddressTests {
    @Test func parsesEitherFamily() throws {
        #expect(try IPAddress.parse("10.1.2.3") == .v4(IPv4Address(10, 1, 2, 3)))
        #expect(try IPAddress.parse("fd00::1") == .v6(IPv6Address(0xfd00 << 112 | 1)))
        #expect(IPAddress("10.1.2.3")?.family == .v4)
        #expect(IPAddress("fd00::1")?.family == .v6)
        #expect(IPAddress("10.1.2.3")?.bitWidth == 32)
        #expect(IPAddress("fd00::1")?.bitWidth == 128)
        #expect(IPAddress("nonsense") == nil)
        #expect(
            throws: AddressParseError(
                input: "1.2.3", reason: "expected 4 dot-separated octets, found 3", subject: "IP address")
        ) {
            try IPAddress.parse("1.2.3")
        }
    }

    @Test func ordersAllIPv4BeforeIPv6() throws {
        let sorted = try ["::1", "255.255.255.255", "::", "0.0.0.0", "10.0.0.1"].map(IPAddress.parse).sorted()
        #expect(sorted.map(\.description) == ["0.0.0.0", "10.0.0.1", "255.255.255.255", "::", "::1"])
    }

    @Test func bytesMatchFamily() {
        #expect(IPAddress("1.2.3.4")?.bytes == [1, 2, 3, 4])
        #expect(IPAddress("::1")?.bytes.count == 16)
        #expect(IPAddress(bytes: [1, 2, 3, 4]) == IPAddress("1.2.3.4"))
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 16)) == IPAddress("::"))
        #expect(IPAddress(bytes: [1, 2]) == nil)
    }

    @Test(arguments: [
        ("10.0.0.255", Int128(1), "10.0.1.0"),
        ("10.0.1.0", -1, "10.0.0.255"),
        ("255.255.255.254", 1, "255.255.255.255"),
        ("0.0.0.0", Int128(UInt32.max), "255.255.255.255"),
        ("::", 1, "::1"),
        ("::ffff:ffff", 1, "::1:0:0"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("8000::", Int128.min, "::"),
    ])
    func advancesWithinTheFamily(start: String, step: Int128, expected: String) throws {
        let address = try IPAddress.parse(start)
        #expect(address.advanced(by: step) == IPAddress(expected))
        #expect(address.distance(to: try IPAddress.parse(expected)) == step)
    }

    @Test(arguments: [
        ("255.255.255.255", Int128(1)),
        ("0.0.0.0", -1),
        ("0.0.0.0", Int128(UInt32.max) + 1),
        ("::", -1),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1),
        ("::", Int128.min),
    ])
    func refusesToLeaveTheFamily(start: String, step: Int128) throws {
        #expect(try IPAddress.parse(start).advanced(by: step) == nil)
    }

    @Test func distanceIsNilAcrossFamiliesOrWhenTooLarge() throws {
        #expect(try IPAddress.parse("1.2.3.4").distance(to: IPAddress.parse("::1")) == nil)
        let lowest = try IPAddress.parse("::")
        let highest = try IPAddress.parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        #expect(lowest.distance(to: highest) == nil)
        #expect(try IPAddress.parse("10.0.0.5").distance(to: IPAddress.parse("10.0.0.1")) == -4)
    }
}

@Suite("Codable address types")
struct AddressCodableTests {
    private struct Envelope: Codable, Equatable {
        var v4: IPv4Address
        var v6: IPv6Address
        var any: IPAddress
        var cidr: CIDR
        var mac: MACAddress
    }

    @Test func encodesAsStrings() throws {
        let envelope = Envelope(
            v4: IPv4Address(10, 0, 0, 1), v6: IPv6Address(1), any: .v6(IPv6Address(0xfd00 << 112)),
            cidr: try CIDR.parse("10.0.0.0/24"), mac: try MACAddress.parse("aa:bb:cc:dd:ee:ff"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(envelope), as: UTF8.self)
        #expect(
            json == #"{"any":"fd00::","cidr":"10.0.0.0\/24","mac":"aa:bb:cc:dd:ee:ff","v4":"10.0.0.1","v6":"::1"}"#)
        #expect(try JSONDecoder().decode(Envelope.self, from: Data(json.utf8)) == envelope)
    }

    @Test func badStringIsDataCorruptedWithTheParseReason() {
        let json = Data(#"["10.0.0.256"]"#.utf8)
        do {
            _ = try JSONDecoder().decode([IPAddress].self, from: json)
            Issue.record("decoding should have failed")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription == "invalid IP address \"10.0.0.256\": octet 256 is out of range 0-255")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
