/// An IPv4 address, stored as a 32-bit integer in host byte order.
///
/// The string form is the dotted quad `a.b.c.d`. Parsing is strict, like Go's `net.ParseIP`:
/// exactly four decimal octets, no leading zeros, no whitespace.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible,
    Codable
{
    /// The address as an integer in host byte order: `10.0.0.1` is `0x0A00_0001`.
    public var value: UInt32

    public init(_ value: UInt32) {
        self.value = value
    }

    /// Builds `a.b.c.d`.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses a dotted quad; nil if `string` is not one. Use `parse(_:)` to learn why.
    public init?(_ string: String) {
        guard let address = try? IPv4Address.parse(string) else { return nil }
        self = address
    }

    /// Parses a dotted quad such as `192.0.2.1`.
    /// - Throws: `AddressParseError` naming the offending octet, e.g. "octet 256 is out of range 0-255".
    public static func parse(_ string: String) throws(AddressParseError) -> IPv4Address {
        do {
            return IPv4Address(try parseValue(string.utf8[...]))
        } catch {
            throw AddressParseError(input: string, reason: error.reason, subject: "IPv4 address")
        }
    }

    /// The four octets in network byte order.
    public var bytes: [UInt8] {
        [
            UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
            UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value),
        ]
    }

    /// Builds an address from exactly four octets in network byte order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    public var description: String {
        bytes.map { String($0) }.joined(separator: ".")
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool {
        lhs.value < rhs.value
    }

    public init(from decoder: any Decoder) throws {
        self = try AddressParseError.decodeString(from: decoder, parsedBy: IPv4Address.parse)
    }

    public func encode(to encoder: any Encoder) throws {
        try AddressParseError.encodeString(description, to: encoder)
    }

    /// Parses a dotted quad from UTF-8 code units; shared with the IPv6 parser for embedded IPv4 suffixes.
    static func parseValue(_ text: Substring.UTF8View) throws(AddressSyntaxProblem) -> UInt32 {
        guard !text.isEmpty else { throw AddressSyntaxProblem("address is empty") }
        let octets = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard octets.count == 4 else {
            throw AddressSyntaxProblem("expected 4 dot-separated octets, found \(octets.count)")
        }
        var value: UInt32 = 0
        for (index, octet) in octets.enumerated() {
            let position = index + 1
            let octetText = String(decoding: octet, as: UTF8.self)
            guard !octet.isEmpty else { throw AddressSyntaxProblem("octet \(position) is empty") }
            guard octet.allSatisfy(ASCIIText.isDecimalDigit) else {
                throw AddressSyntaxProblem("octet \(position) \"\(octetText)\" is not a decimal number")
            }
            guard octet.count == 1 || octet.first != UInt8(ascii: "0") else {
                // Leading zeros are rejected because some parsers read them as octal.
                throw AddressSyntaxProblem("octet \(position) \"\(octetText)\" has a leading zero")
            }
            guard let number = ASCIIText.canonicalDecimal(octet, limit: 255) else {
                throw AddressSyntaxProblem("octet \(octetText) is out of range 0-255")
            }
            value = value << 8 | UInt32(number)
        }
        return value
    }
}
