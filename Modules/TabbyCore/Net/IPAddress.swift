/// An IPv4 or IPv6 address.
///
/// Ordering puts every IPv4 address before every IPv6 address, then orders by numeric value.
/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) stays IPv6; it is not folded into `.v4`.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible, Codable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses an IPv4 or IPv6 address; nil if `string` is neither. Use `parse(_:)` to learn why.
    public init?(_ string: String) {
        guard let address = try? IPAddress.parse(string) else { return nil }
        self = address
    }

    /// Parses an IPv4 dotted quad or any RFC 4291 IPv6 form. Text containing ':' is treated as IPv6.
    /// - Throws: `AddressParseError` explaining what was wrong.
    public static func parse(_ string: String) throws(AddressParseError) -> IPAddress {
        do {
            return try parseAddress(string.utf8[...])
        } catch {
            throw AddressParseError(input: string, reason: error.reason, subject: "IP address")
        }
    }

    public var family: IPFamily {
        switch self {
        case .v4: .v4
        case .v6: .v6
        }
    }

    /// 32 for IPv4, 128 for IPv6.
    public var bitWidth: Int {
        family.bitWidth
    }

    /// The address bytes in network byte order: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let address): address.bytes
        case .v6(let address): address.bytes
        }
    }

    /// Builds an address from 4 (IPv4) or 16 (IPv6) bytes in network byte order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        if let address = IPv4Address(bytes: bytes) {
            self = .v4(address)
        } else if let address = IPv6Address(bytes: bytes) {
            self = .v6(address)
        } else {
            return nil
        }
    }

    /// The address `n` steps away in the same family, or nil if that would leave the family's range.
    public func advanced(by n: Int128) -> IPAddress? {
        let result: UInt128
        let overflow: Bool
        if n >= 0 {
            (result, overflow) = integerValue.addingReportingOverflow(n.magnitude)
        } else {
            (result, overflow) = integerValue.subtractingReportingOverflow(n.magnitude)
        }
        guard !overflow, result <= family.maximumIntegerValue else { return nil }
        return IPAddress(family: family, integerValue: result)
    }

    /// The signed number of steps from `self` to `other`, so `self.advanced(by: d) == other`.
    /// Nil if the families differ, or (IPv6 only) if the distance does not fit in `Int128`.
    public func distance(to other: IPAddress) -> Int128? {
        guard family == other.family else { return nil }
        let from = integerValue
        let to = other.integerValue
        if to >= from {
            let magnitude = to - from
            return magnitude <= UInt128(Int128.max) ? Int128(magnitude) : nil
        } else {
            let magnitude = from - to
            if magnitude == Int128.min.magnitude { return Int128.min }
            return magnitude <= UInt128(Int128.max) ? -Int128(magnitude) : nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }

    public init(from decoder: any Decoder) throws {
        self = try AddressParseError.decodeString(from: decoder, parsedBy: IPAddress.parse)
    }

    public func encode(to encoder: any Encoder) throws {
        try AddressParseError.encodeString(description, to: encoder)
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let left), .v4(let right)): left < right
        case (.v6(let left), .v6(let right)): left < right
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }

    // MARK: - Family-independent arithmetic

    /// The address as an unsigned integer; IPv4 values occupy the low 32 bits. Lets CIDR arithmetic be written once.
    var integerValue: UInt128 {
        switch self {
        case .v4(let address): UInt128(address.value)
        case .v6(let address): address.value
        }
    }

    /// Inverse of `integerValue`; an IPv4 value must fit in 32 bits.
    init(family: IPFamily, integerValue: UInt128) {
        switch family {
        case .v4: self = .v4(IPv4Address(UInt32(integerValue)))
        case .v6: self = .v6(IPv6Address(integerValue))
        }
    }

    /// Parses either family from UTF-8 code units; shared with the CIDR parser.
    static func parseAddress(_ text: Substring.UTF8View) throws(AddressSyntaxProblem) -> IPAddress {
        if text.contains(UInt8(ascii: ":")) {
            .v6(IPv6Address(try IPv6Address.parseValue(text)))
        } else {
            .v4(IPv4Address(try IPv4Address.parseValue(text)))
        }
    }
}

extension IPFamily {
    /// The largest address of the family as an integer: all `bitWidth` bits set.
    var maximumIntegerValue: UInt128 {
        switch self {
        case .v4: UInt128(UInt32.max)
        case .v6: UInt128.max
        }
    }
}
