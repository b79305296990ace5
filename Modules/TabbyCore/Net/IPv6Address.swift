/// An IPv6 address, stored as a 128-bit integer in host byte order.
///
/// Parsing accepts every RFC 4291 text form (full, `::`-compressed, and with an embedded IPv4 suffix such as
/// `::ffff:192.0.2.1`), in either case. Zone identifiers (`fe80::1%eth0`) are rejected: they name an interface,
/// not an address. `description` is the RFC 5952 canonical form.
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible,
    Codable
{
    /// The address as an integer in host byte order: `::1` is `1`.
    public var value: UInt128

    public init(_ value: UInt128) {
        self.value = value
    }

    /// Parses any RFC 4291 text form; nil if `string` is not one. Use `parse(_:)` to learn why.
    public init?(_ string: String) {
        guard let address = try? IPv6Address.parse(string) else { return nil }
        self = address
    }

    /// Parses any RFC 4291 text form such as `2001:db8::1` or `::ffff:192.0.2.1`.
    /// - Throws: `AddressParseError` naming the offending group or construct.
    public static func parse(_ string: String) throws(AddressParseError) -> IPv6Address {
        do {
            return IPv6Address(try parseValue(string.utf8[...]))
        } catch {
            throw AddressParseError(input: string, reason: error.reason, subject: "IPv6 address")
        }
    }

    /// The sixteen bytes in network byte order.
    public var bytes: [UInt8] {
        (0..<16).map { UInt8(truncatingIfNeeded: value >> (120 - 8 * $0)) }
    }

    /// Builds an address from exactly sixteen bytes in network byte order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt128($1) }
    }

    /// True for `::ffff:a.b.c.d`, the form an IPv4 address takes on a dual-stack socket.
    public var isIPv4Mapped: Bool {
        value >> 32 == 0xffff
    }

    /// The eight 16-bit groups, most significant first.
    public var groups: [UInt16] {
        (0..<8).map { UInt16(truncatingIfNeeded: value >> (112 - 16 * $0)) }
    }

    /// RFC 5952 canonical text: lowercase hex without leading zeros, the longest run of two or more zero groups
    /// (leftmost on a tie) written as `::`, and IPv4-mapped addresses written as `::ffff:a.b.c.d`.
    public var description: String {
        if isIPv4Mapped {
            return "::ffff:" + IPv4Address(UInt32(truncatingIfNeeded: value)).description
        }
        let groups = self.groups
        let (runStart, runLength) = Self.longestZeroRun(in: groups)
        let hexGroups = groups.map { String($0, radix: 16) }
        guard runLength >= 2 else {
            // RFC 5952 4.2.2: a single zero group is never shortened to "::".
            return hexGroups.joined(separator: ":")
        }
        let head = hexGroups[..<runStart].joined(separator: ":")
        let tail = hexGroups[(runStart + runLength)...].joined(separator: ":")
        return head + "::" + tail
    }

    public static func < (lhs: IPv6Address, rhs: IPv6Address) -> Bool {
        lhs.value < rhs.value
    }

    public init(from decoder: any Decoder) throws {
        self = try AddressParseError.decodeString(from: decoder, parsedBy: IPv6Address.parse)
    }

    public func encode(to encoder: any Encoder) throws {
        try AddressParseError.encodeString(description, to: encoder)
    }

    /// The start and length of the longest run of zero groups; the leftmost wins a tie (RFC 5952 4.2.3).
    private static func longestZeroRun(in groups: [UInt16]) -> (start: Int, length: Int) {
        var best = (start: 0, length: 0)
        var index = 0
        while index < groups.count {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < groups.count && groups[index] == 0 { index += 1 }
            if index - start > best.length { best = (start, index - start) }
        }
        return best
    }

    /// Parses RFC 4291 text from UTF-8 code units.
    static func parseValue(_ text: Substring.UTF8View) throws(AddressSyntaxProblem) -> UInt128 {
        let colon = UInt8(ascii: ":")
        guard !text.isEmpty else { throw AddressSyntaxProblem("address is empty") }
        if text.contains(UInt8(ascii: "%")) {
            throw AddressSyntaxProblem("zone identifiers (\"%...\") are not supported")
        }

        // Locate the single permitted "::".
        var ellipsis: Range<Substring.UTF8View.Index>?
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            if text[index] == colon && next < text.endIndex && text[next] == colon {
                if ellipsis != nil { throw AddressSyntaxProblem("\"::\" may appear only once") }
                ellipsis = index..<text.index(after: next)
                index = text.index(after: next)
            } else {
                index = next
            }
        }

        let headGroups: [UInt16]
        let tailGroups: [UInt16]
        if let ellipsis {
            headGroups = try parseGroups(text[..<ellipsis.lowerBound], mayEndWithIPv4: false)
            tailGroups = try parseGroups(text[ellipsis.upperBound...], mayEndWithIPv4: true)
            let explicitCount = headGroups.count + tailGroups.count
            guard explicitCount <= 7 else {
                throw AddressSyntaxProblem(
                    "\"::\" must stand for at least one zero group, but \(explicitCount) groups are already given")
            }
        } else {
            headGroups = try parseGroups(text, mayEndWithIPv4: true)
            tailGroups = []
            guard headGroups.count == 8 else {
                throw AddressSyntaxProblem("expected 8 groups, found \(headGroups.count)")
            }
        }

        var value: UInt128 = 0
        for group in headGroups { value = value << 16 | UInt128(group) }
        // The groups "::" stands for are zeros between head and tail.
        value <<= 16 * (8 - headGroups.count - tailGroups.count)
        for group in tailGroups { value = value << 16 | UInt128(group) }
        return value
    }

    /// Parses colon-separated hex groups; an IPv4 dotted quad is allowed as the last field when `mayEndWithIPv4`
    /// and counts as two groups.
    private static func parseGroups(
        _ text: Substring.UTF8View, mayEndWithIPv4: Bool
    ) throws(AddressSyntaxProblem) -> [UInt16] {
        guard !text.isEmpty else { return [] }
        let fields = text.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        var groups: [UInt16] = []
        for (index, field) in fields.enumerated() {
            let fieldText = String(decoding: field, as: UTF8.self)
            guard !field.isEmpty else {
                throw AddressSyntaxProblem("empty group (a lone ':' at the start or end, or ':::')")
            }
            if field.contains(UInt8(ascii: ".")) {
                guard mayEndWithIPv4 && index == fields.count - 1 else {
                    throw AddressSyntaxProblem(
                        "embedded IPv4 address \"\(fieldText)\" may only appear as the last 32 bits")
                }
                let embedded: UInt32
                do {
                    embedded = try IPv4Address.parseValue(field)
                } catch {
                    throw AddressSyntaxProblem("embedded IPv4 address \"\(fieldText)\": \(error.reason)")
                }
                groups.append(UInt16(truncatingIfNeeded: embedded >> 16))
                groups.append(UInt16(truncatingIfNeeded: embedded))
                continue
            }
            guard field.count <= 4 else {
                throw AddressSyntaxProblem("group \"\(fieldText)\" has more than 4 hex digits")
            }
            var group: UInt16 = 0
            for byte in field {
                guard let digit = ASCIIText.hexDigitValue(byte) else {
                    throw AddressSyntaxProblem("group \"\(fieldText)\" is not hexadecimal")
                }
                group = group << 4 | UInt16(digit)
            }
            groups.append(group)
        }
        return groups
    }
}
