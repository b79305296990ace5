/// A 48-bit IEEE 802 MAC address.
///
/// Parses six two-digit hex bytes separated consistently by ':' or '-', in either case;
/// prints lowercase with ':' ("aa:bb:cc:dd:ee:ff").
public struct MACAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible, Codable {
    /// The address in the low 48 bits, first byte most significant.
    public private(set) var value: UInt64

    /// Builds an address from the low 48 bits of `value`; higher bits are ignored.
    public init(_ value: UInt64) {
        self.value = value & 0xFFFF_FFFF_FFFF
    }

    /// Builds an address from exactly six bytes in transmission order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Parses "aa:bb:cc:dd:ee:ff" or "AA-BB-CC-DD-EE-FF"; nil otherwise. Use `parse(_:)` to learn why.
    public init?(_ string: String) {
        guard let address = try? MACAddress.parse(string) else { return nil }
        self = address
    }

    /// Parses six hex byte pairs separated by ':' or '-' (one separator throughout), in either case.
    /// - Throws: `AddressParseError` naming the bad byte or separator.
    public static func parse(_ string: String) throws(AddressParseError) -> MACAddress {
        func failure(_ reason: String) -> AddressParseError {
            AddressParseError(input: string, reason: reason, subject: "MAC address")
        }
        let text = Array(string.utf8)
        // Six pairs plus five separators.
        guard text.count == 17 else {
            throw failure("expected 6 two-digit hex bytes separated by ':' or '-' (17 characters), got \(text.count)")
        }
        let separator = text[2]
        guard separator == UInt8(ascii: ":") || separator == UInt8(ascii: "-") else {
            throw failure("expected ':' or '-' after the first byte")
        }
        var value: UInt64 = 0
        for byteIndex in 0..<6 {
            let start = byteIndex * 3
            if byteIndex > 0 && text[start - 1] != separator {
                throw failure("byte \(byteIndex + 1) is not preceded by '\(Character(Unicode.Scalar(separator)))'")
            }
            guard let high = ASCIIText.hexDigitValue(text[start]), let low = ASCIIText.hexDigitValue(text[start + 1])
            else {
                let pair = String(decoding: text[start...(start + 1)], as: UTF8.self)
                throw failure("byte \(byteIndex + 1) \"\(pair)\" is not hexadecimal")
            }
            value = value << 8 | UInt64(high << 4 | low)
        }
        return MACAddress(value)
    }

    /// The six bytes in transmission order.
    public var bytes: [UInt8] {
        (0..<6).map { UInt8(truncatingIfNeeded: value >> (40 - 8 * $0)) }
    }

    /// Lowercase, colon-separated: "aa:bb:cc:dd:ee:ff".
    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 0x10 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    /// True when the I/G bit (least significant bit of the first byte) is clear: the address names one interface.
    public var isUnicast: Bool {
        value >> 40 & 0x01 == 0
    }

    /// True when the address names a group of interfaces (the I/G bit is set); broadcast is a multicast address.
    public var isMulticast: Bool {
        !isUnicast
    }

    /// True when the U/L bit (second least significant bit of the first byte) is set: the address was assigned
    /// locally (as for veth pairs) rather than by the manufacturer.
    public var isLocallyAdministered: Bool {
        value >> 40 & 0x02 != 0
    }

    public init(from decoder: any Decoder) throws {
        self = try AddressParseError.decodeString(from: decoder, parsedBy: MACAddress.parse)
    }

    public func encode(to encoder: any Encoder) throws {
        try AddressParseError.encodeString(description, to: encoder)
    }
}

extension MACAddress {
    /// A random locally administered unicast address (for interfaces Tabby creates: pod veths,
    /// the VXLAN device).
    public static func randomLocallyAdministered() -> MACAddress {
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = (bytes[0] & 0xFE) | 0x02
        return MACAddress(bytes: bytes)!
    }
}
