/// The address family of an IP address or network.
public enum IPFamily: Int, Sendable, Hashable, Codable {
    case v4 = 4
    case v6 = 6

    /// Number of bits in an address of this family: 32 or 128.
    public var bitWidth: Int {
        switch self {
        case .v4: 32
        case .v6: 128
        }
    }
}

/// Why a textual address, network or MAC address could not be parsed.
///
/// `reason` names what was wrong and where, e.g. "octet 256 is out of range 0-255";
/// `description` adds what kind of value was being parsed and the full input.
public struct AddressParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The complete text that failed to parse.
    public var input: String
    /// What was wrong with `input`, phrased for a human.
    public var reason: String
    /// The kind of value being parsed, e.g. "CIDR", "IPv4 address", "MAC address".
    public var subject: String

    public init(input: String, reason: String, subject: String = "address") {
        self.input = input
        self.reason = reason
        self.subject = subject
    }

    /// For example `invalid CIDR "10.0.0.1/33": prefix length 33 exceeds 32`.
    public var description: String {
        "invalid \(subject) \"\(input)\": \(reason)"
    }
}

/// A parse failure found inside some part of the input; the public `parse` functions wrap it into an
/// `AddressParseError` carrying the whole input, so nested parsers (IPv4 inside IPv6 inside CIDR) can share code.
struct AddressSyntaxProblem: Error {
    var reason: String

    init(_ reason: String) {
        self.reason = reason
    }
}

extension AddressParseError {
    /// Decodes a value stored as its string form, turning a parse failure into `DecodingError.dataCorrupted`
    /// whose debug description is the parse error's description.
    static func decodeString<Value>(
        from decoder: any Decoder,
        parsedBy parse: (String) throws(AddressParseError) -> Value
    ) throws -> Value {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            return try parse(text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    /// Encodes a value as its string form in a single value container.
    static func encodeString(_ text: String, to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

/// ASCII classification used by the address and label parsers; works on UTF-8 code units so that
/// non-ASCII input is simply "not a digit" rather than being normalised.
enum ASCIIText {
    static func isDecimalDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    static func isLowercaseLetter(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")
    }

    static func isUppercaseLetter(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isDecimalDigit(byte) || isLowercaseLetter(byte) || isUppercaseLetter(byte)
    }

    /// The value of a hexadecimal digit in either case, or nil if `byte` is not one.
    static func hexDigitValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Parses a non-empty run of decimal digits without a sign or leading zeros (other than "0" itself),
    /// returning nil for anything else or for values above `limit`.
    static func canonicalDecimal(_ digits: some Collection<UInt8>, limit: Int) -> Int? {
        guard !digits.isEmpty, digits.allSatisfy(isDecimalDigit) else { return nil }
        guard digits.count == 1 || digits.first != UInt8(ascii: "0") else { return nil }
        var value = 0
        for digit in digits {
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
            if value > limit { return nil }
        }
        return value
    }
}
