/// An IP network in CIDR notation, such as `10.0.0.0/24` or `fd00::/64`.
///
/// Invariant: `network` always has its host bits cleared, so two values describing the same block compare equal.
/// Ordering is by network address (all IPv4 before IPv6), then by prefix length.
public struct CIDR: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible, Codable {
    /// The first address of the block, with all host bits zero.
    public private(set) var network: IPAddress
    /// Number of leading network bits: 0...32 for IPv4, 0...128 for IPv6.
    public private(set) var prefixLength: Int

    /// Parses leniently (host bits are masked off); nil if `string` is not a network. Use `parse` to learn why.
    public init?(_ string: String) {
        guard let cidr = try? CIDR.parse(string) else { return nil }
        self = cidr
    }

    /// Accepts "a.b.c.d/n", IPv6 "x::/n", and a bare address (-> /32 or /128).
    ///
    /// - Parameter allowHostBits: when true, "10.0.0.1/24" becomes 10.0.0.0/24 (as Calico's nets do);
    ///   when false it is an error naming the network that was probably meant.
    /// - Throws: `AddressParseError` describing the bad address, prefix length or host bits.
    public static func parse(_ string: String, allowHostBits: Bool = true) throws(AddressParseError) -> CIDR {
        func failure(_ reason: String) -> AddressParseError {
            AddressParseError(input: string, reason: reason, subject: "CIDR")
        }
        let text = string.utf8[...]
        let slash = text.firstIndex(of: UInt8(ascii: "/"))
        let addressText = slash.map { text[..<$0] } ?? text
        guard !addressText.isEmpty else { throw failure("missing address before '/'") }

        let address: IPAddress
        do {
            address = try IPAddress.parseAddress(addressText)
        } catch {
            throw failure(error.reason)
        }

        var prefixLength = address.bitWidth
        if let slash {
            let prefixText = text[text.index(after: slash)...]
            guard !prefixText.isEmpty else { throw failure("missing prefix length after '/'") }
            guard prefixText.allSatisfy(ASCIIText.isDecimalDigit) else {
                throw failure(
                    "prefix length \"\(String(decoding: prefixText, as: UTF8.self))\" is not a decimal number")
            }
            guard prefixText.count == 1 || prefixText.first != UInt8(ascii: "0") else {
                throw failure("prefix length \"\(String(decoding: prefixText, as: UTF8.self))\" has a leading zero")
            }
            guard let length = ASCIIText.canonicalDecimal(prefixText, limit: address.bitWidth) else {
                throw failure(
                    "prefix length \(String(decoding: prefixText, as: UTF8.self)) exceeds \(address.bitWidth)")
            }
            prefixLength = length
        }

        let cidr = CIDR(network: address, prefixLength: prefixLength)
        if !allowHostBits && cidr.network != address {
            throw failure("host bits are set; the network is \(cidr)")
        }
        return cidr
    }

    /// Builds the block of `prefixLength` bits containing `network`, clearing any host bits.
    /// - Precondition: `0 <= prefixLength <= network.bitWidth`.
    public init(network: IPAddress, prefixLength: Int) {
        precondition(
            (0...network.bitWidth).contains(prefixLength),
            "prefix length \(prefixLength) is outside 0...\(network.bitWidth) for \(network)")
        self.prefixLength = prefixLength
        let hostMask = Self.hostMask(bitWidth: network.bitWidth, prefixLength: prefixLength)
        self.network = IPAddress(family: network.family, integerValue: network.integerValue & ~hostMask)
    }

    public var family: IPFamily {
        network.family
    }

    /// The lowest address in the block; the same as `network`.
    public var firstAddress: IPAddress {
        network
    }

    /// The highest address in the block: the network with every host bit set.
    public var lastAddress: IPAddress {
        IPAddress(family: family, integerValue: network.integerValue | hostMask)
    }

    /// The IPv4 broadcast address (same as `lastAddress`); nil for IPv6, which has no broadcast.
    public var broadcast: IPAddress? {
        family == .v4 ? lastAddress : nil
    }

    /// The mask with the first `prefixLength` bits set, e.g. 255.255.255.0 for a /24.
    public var netmask: IPAddress {
        IPAddress(family: family, integerValue: family.maximumIntegerValue & ~hostMask)
    }

    /// The number of addresses in the block. `::/0` holds 2^128 addresses, which saturates to `UInt128.max`.
    public var size: UInt128 {
        Self.blockSize(hostBits: hostBitCount)
    }

    /// True if `address` is of the same family and inside the block.
    public func contains(_ address: IPAddress) -> Bool {
        address.family == family && address.integerValue & ~hostMask == network.integerValue
    }

    /// True if every address of `other` is inside this block (a block contains itself).
    public func contains(_ other: CIDR) -> Bool {
        other.prefixLength >= prefixLength && contains(other.network)
    }

    /// True if the blocks share at least one address. CIDR blocks either nest or are disjoint,
    /// so this is true exactly when one contains the other.
    public func overlaps(_ other: CIDR) -> Bool {
        contains(other) || other.contains(self)
    }

    /// The address `offset` positions after the network address, or nil if `offset >= size`.
    public func address(at offset: UInt128) -> IPAddress? {
        // A whole-family block (::/0) accepts every UInt128 offset, although its size saturates.
        guard hostBitCount == 128 || offset < size else { return nil }
        return IPAddress(family: family, integerValue: network.integerValue | offset)
    }

    /// How far `address` lies after the network address, or nil if the block does not contain it.
    public func offset(of address: IPAddress) -> UInt128? {
        guard contains(address) else { return nil }
        return address.integerValue - network.integerValue
    }

    /// The blocks of `prefixLength` that tile this one, in address order, produced lazily:
    /// splitting a /8 into /26s does not allocate 262144 elements.
    /// - Throws: `AddressParseError` if `prefixLength` is shorter than this block's or longer than the family allows.
    public func subnets(prefixLength subnetPrefixLength: Int) throws(AddressParseError) -> CIDRSubnets {
        guard subnetPrefixLength >= prefixLength && subnetPrefixLength <= network.bitWidth else {
            let reason =
                subnetPrefixLength < prefixLength
                ? "subnet prefix length \(subnetPrefixLength) is shorter than the network's \(prefixLength)"
                : "subnet prefix length \(subnetPrefixLength) exceeds \(network.bitWidth)"
            throw AddressParseError(input: description, reason: reason, subject: "subnet split of")
        }
        return CIDRSubnets(parent: self, subnetPrefixLength: subnetPrefixLength)
    }

    /// Every address of the block, in order, produced lazily.
    public var addresses: CIDRAddresses {
        CIDRAddresses(cidr: self)
    }

    /// "10.0.0.0/24" or "fd00::/64", with the address in RFC 5952 form.
    public var description: String {
        "\(network)/\(prefixLength)"
    }

    public static func < (lhs: CIDR, rhs: CIDR) -> Bool {
        (lhs.network, lhs.prefixLength) < (rhs.network, rhs.prefixLength)
    }

    public init(from decoder: any Decoder) throws {
        self = try AddressParseError.decodeString(from: decoder) { text throws(AddressParseError) in
            try CIDR.parse(text)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try AddressParseError.encodeString(description, to: encoder)
    }

    // MARK: - Bit arithmetic

    var hostBitCount: Int {
        network.bitWidth - prefixLength
    }

    /// The host part of the block as a mask in the low bits.
    var hostMask: UInt128 {
        Self.hostMask(bitWidth: network.bitWidth, prefixLength: prefixLength)
    }

    static func hostMask(bitWidth: Int, prefixLength: Int) -> UInt128 {
        let hostBits = bitWidth - prefixLength
        // Shifting 1 by 128 would be 0, so the whole-space mask is special-cased.
        return hostBits >= 128 ? UInt128.max : (1 << UInt128(hostBits)) - 1
    }

    /// 2^hostBits, saturating to `UInt128.max` for 128 host bits.
    static func blockSize(hostBits: Int) -> UInt128 {
        hostBits >= 128 ? UInt128.max : 1 << UInt128(hostBits)
    }
}
