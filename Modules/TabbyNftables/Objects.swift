import Glibc

/// A table: the unit of ownership. Tabby keeps everything it programs in tables it names.
public struct NftTable: Hashable, Sendable {
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// NFT_TABLE_F_DORMANT: the table's base chains are not attached to their hooks.
        public static let dormant = Flags(rawValue: 0x1)
        /// NFT_TABLE_F_OWNER: the table is deleted when the netlink socket that created it closes.
        public static let owner = Flags(rawValue: 0x2)
    }

    public var family: Nft.Family
    public var name: String
    public var flags: Flags
    /// Set by reads; ignored when adding.
    public var handle: UInt64?

    public init(family: Nft.Family = .inet, name: String, flags: Flags = [], handle: UInt64? = nil) {
        self.family = family
        self.name = name
        self.flags = flags
        self.handle = handle
    }
}

/// A chain. With a `hook` it is a base chain attached to netfilter; without, a regular chain reached
/// only by jump/goto or verdict maps.
public struct NftChain: Hashable, Sendable {
    public enum Hook: UInt32, Hashable, Sendable, CaseIterable {
        case prerouting = 0  // NF_INET_PRE_ROUTING
        case input = 1  // NF_INET_LOCAL_IN
        case forward = 2  // NF_INET_FORWARD
        case output = 3  // NF_INET_LOCAL_OUT
        case postrouting = 4  // NF_INET_POST_ROUTING
    }

    public enum Policy: UInt32, Hashable, Sendable {
        case drop = 0  // NF_DROP
        case accept = 1  // NF_ACCEPT
    }

    public enum ChainType: String, Hashable, Sendable {
        case filter
        case nat
        case route
    }

    public var family: Nft.Family
    public var table: String
    public var name: String
    public var hook: Hook?
    /// Base chains only; nil means 0.
    public var priority: Int32?
    /// Base chains only; nil leaves the kernel's default (accept).
    public var policy: Policy?
    /// Base chains only; nil means filter.
    public var type: ChainType?
    /// Set by reads; ignored when adding.
    public var handle: UInt64?

    public init(
        family: Nft.Family = .inet, table: String, name: String, hook: Hook? = nil, priority: Int32? = nil,
        policy: Policy? = nil, type: ChainType? = nil, handle: UInt64? = nil
    ) {
        self.family = family
        self.table = table
        self.name = name
        self.hook = hook
        self.priority = priority
        self.policy = policy
        self.type = type
        self.handle = handle
    }

    public var isBaseChain: Bool { hook != nil }
}

/// The nftables data types a set key can be made of (the kernel stores only the number; `nft` uses
/// it to print elements). A key of several types is a concatenation.
public enum NftKeyType: UInt32, Hashable, Sendable, CaseIterable {
    case ipv4Addr = 7
    case ipv6Addr = 8
    case inetProto = 12
    case inetService = 13
    case mark = 19
    case ifname = 41

    /// The size of one value of this type, unpadded.
    public var length: Int {
        switch self {
        case .ipv4Addr: 4
        case .ipv6Addr: 16
        case .inetProto: 1
        case .inetService: 2
        case .mark: 4
        case .ifname: Nft.interfaceNameSize
        }
    }

    /// Bits per type in a concatenated key type number (nft's TYPE_BITS).
    static let concatBits: UInt32 = 6
}

/// A named set, or a verdict map when `dataType` is set.
public struct NftSet: Hashable, Sendable {
    public enum DataType: Hashable, Sendable {
        /// A verdict map (`NFT_DATA_VERDICT`): elements carry accept/drop/jump/goto.
        case verdict
    }

    public var family: Nft.Family
    public var table: String
    public var name: String
    /// One type, or several for a concatenation (`ipv4_addr . inet_proto . inet_service`).
    public var keyType: [NftKeyType]
    /// NFT_SET_INTERVAL: elements are ranges (CIDRs, port ranges).
    public var isInterval: Bool
    /// NFT_SET_CONSTANT: elements can only be given when the set is created.
    public var isConstant: Bool
    /// Non-nil makes the set a map.
    public var dataType: DataType?
    /// Set by reads; ignored when adding.
    public var handle: UInt64?

    public init(
        family: Nft.Family = .inet, table: String, name: String, keyType: [NftKeyType], isInterval: Bool = false,
        isConstant: Bool = false, dataType: DataType? = nil, handle: UInt64? = nil
    ) {
        self.family = family
        self.table = table
        self.name = name
        self.keyType = keyType
        self.isInterval = isInterval
        self.isConstant = isConstant
        self.dataType = dataType
        self.handle = handle
    }

    public var isMap: Bool { dataType != nil }
    var isConcatenation: Bool { keyType.count > 1 }

    /// The key length the kernel expects: one field, or each field padded to 4 bytes in a concatenation.
    var keyLength: Int {
        if keyType.count == 1 { return keyType[0].length }
        return keyType.reduce(0) { $0 + ($1.length + 3) / 4 * 4 }
    }

    /// The number the kernel stores as NFTA_SET_KEY_TYPE: concatenated types are packed 6 bits each.
    var keyTypeNumber: UInt32 {
        keyType.reduce(0) { ($0 << NftKeyType.concatBits) | $1.rawValue }
    }

    /// `family table name`, for error messages.
    var reference: String { "\(family) \(table) \(name)" }
}

/// A verdict, as an immediate in a rule or as the data of a verdict map element.
public enum NftVerdict: Hashable, Sendable, CustomStringConvertible {
    case accept
    case drop
    case `continue`
    case `return`
    case jump(String)
    case goto(String)

    /// The kernel's verdict code (NF_DROP/NF_ACCEPT or enum nft_verdicts).
    var code: Int32 {
        switch self {
        case .drop: 0
        case .accept: 1
        case .continue: -1
        case .return: -5
        case .jump: -3
        case .goto: -4
        }
    }

    var chain: String? {
        switch self {
        case .jump(let chain), .goto(let chain): chain
        default: nil
        }
    }

    init?(code: Int32, chain: String?) {
        switch code {
        case 0: self = .drop
        case 1: self = .accept
        case -1: self = .continue
        case -5: self = .return
        case -3: self = .jump(chain ?? "")
        case -4: self = .goto(chain ?? "")
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .accept: "accept"
        case .drop: "drop"
        case .continue: "continue"
        case .return: "return"
        case .jump(let chain): "jump \(chain)"
        case .goto(let chain): "goto \(chain)"
        }
    }
}

/// An IPv4 or IPv6 prefix as raw network-order bytes. Higher layers convert their CIDR type to this;
/// the nftables layer does not depend on TabbyCore.
public struct NftPrefix: Hashable, Sendable, CustomStringConvertible {
    /// 4 or 16 bytes, network order; host bits are cleared by the initialisers.
    public let address: [UInt8]
    public let length: Int

    /// `address` must be 4 or 16 bytes and `length` within its bit width; host bits are cleared.
    public init?(address: [UInt8], length: Int) {
        guard address.count == 4 || address.count == 16, length >= 0, length <= address.count * 8 else { return nil }
        self.address = Self.mask(address, length: length)
        self.length = length
    }

    /// Parses `10.0.0.0/8`, `fd00::/64` or a bare address (full length).
    public init?(_ string: String) {
        let parts = string.split(separator: "/", maxSplits: 1).map(String.init)
        guard let bytes = Self.parseAddress(parts[0]) else { return nil }
        let length: Int
        if parts.count == 2 {
            guard let parsed = Int(parts[1]) else { return nil }
            length = parsed
        } else {
            length = bytes.count * 8
        }
        self.init(address: bytes, length: length)
    }

    public var isIPv4: Bool { address.count == 4 }

    /// The netmask as bytes (`length` one bits).
    public var mask: [UInt8] { Self.mask([UInt8](repeating: 0xff, count: address.count), length: length) }

    /// The first address after the prefix, or nil at the top of the address space.
    var endExclusive: [UInt8]? {
        var bytes = address
        // Set the host bits, then add one with carry.
        for index in bytes.indices {
            let bitsBefore = index * 8
            if bitsBefore >= length {
                bytes[index] = 0xff
            } else if bitsBefore + 8 > length {
                bytes[index] |= UInt8(0xff) >> UInt8(length - bitsBefore)
            }
        }
        return Self.increment(bytes)
    }

    public var description: String {
        if isIPv4 {
            return address.map(String.init).joined(separator: ".") + "/\(length)"
        }
        var groups: [String] = []
        for index in stride(from: 0, to: 16, by: 2) {
            groups.append(String(UInt16(address[index]) << 8 | UInt16(address[index + 1]), radix: 16))
        }
        return groups.joined(separator: ":") + "/\(length)"
    }

    static func mask(_ bytes: [UInt8], length: Int) -> [UInt8] {
        var result = bytes
        for index in result.indices {
            let bitsBefore = index * 8
            if bitsBefore >= length {
                result[index] = 0
            } else if bitsBefore + 8 > length {
                result[index] &= ~(UInt8(0xff) >> UInt8(length - bitsBefore))
            }
        }
        return result
    }

    /// Big-endian increment; nil on overflow.
    static func increment(_ bytes: [UInt8]) -> [UInt8]? {
        var result = bytes
        for index in result.indices.reversed() {
            if result[index] == 0xff {
                result[index] = 0
            } else {
                result[index] += 1
                return result
            }
        }
        return nil
    }

    /// Big-endian decrement; nil below zero.
    static func decrement(_ bytes: [UInt8]) -> [UInt8]? {
        var result = bytes
        for index in result.indices.reversed() {
            if result[index] == 0 {
                result[index] = 0xff
            } else {
                result[index] -= 1
                return result
            }
        }
        return nil
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        if text.contains(":") {
            var storage = in6_addr()
            guard inet_pton(AF_INET6, text, &storage) == 1 else { return nil }
            return withUnsafeBytes(of: &storage) { Array($0) }
        }
        var storage = in_addr()
        guard inet_pton(AF_INET, text, &storage) == 1 else { return nil }
        return withUnsafeBytes(of: &storage) { Array($0) }
    }

    /// The prefix covering exactly [start, endExclusive), if the range is one.
    static func exact(start: [UInt8], endExclusive: [UInt8]?) -> NftPrefix? {
        for length in 0...(start.count * 8) {
            if let prefix = NftPrefix(address: start, length: length), prefix.address == start,
                prefix.endExclusive == endExclusive
            {
                return prefix
            }
        }
        return nil
    }
}

/// A set key. For interval sets a key is a range: `.prefix`, `.serviceRange` or `.range`; a single
/// value there is the range of one.
public indirect enum NftSetKey: Hashable, Sendable, CustomStringConvertible {
    /// One IPv4 or IPv6 address (4 or 16 bytes, network order).
    case address([UInt8])
    /// A CIDR: in an interval set, its first address to its last.
    case prefix(NftPrefix)
    case inetProto(UInt8)
    case inetService(UInt16)
    /// A port range, for interval sets keyed by inet_service.
    case serviceRange(ClosedRange<UInt16>)
    /// An interface name (padded to IFNAMSIZ).
    case ifname(String)
    /// One value per key type of a concatenated set, in order.
    case concat([NftSetKey])
    /// A closed range of raw keys, for interval sets (what reads return when no nicer form fits).
    case range(from: [UInt8], to: [UInt8])
    /// Raw key bytes, exactly the set's key length.
    case raw([UInt8])

    public var description: String {
        switch self {
        case .address(let bytes): NftPrefix(address: bytes, length: bytes.count * 8).map { "\($0)" } ?? "\(bytes)"
        case .prefix(let prefix): prefix.description
        case .inetProto(let proto): "\(proto)"
        case .inetService(let port): "\(port)"
        case .serviceRange(let range): "\(range.lowerBound)-\(range.upperBound)"
        case .ifname(let name): "\"\(name)\""
        case .concat(let keys): keys.map(\.description).joined(separator: " . ")
        case .range(let from, let to): "\(hex(from))-\(hex(to))"
        case .raw(let bytes): hex(bytes)
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    "0x" + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// A set or map element.
public struct NftSetElement: Hashable, Sendable, CustomStringConvertible {
    public var key: NftSetKey
    /// The element's verdict in a verdict map; nil in a set.
    public var verdict: NftVerdict?

    public init(_ key: NftSetKey, verdict: NftVerdict? = nil) {
        self.key = key
        self.verdict = verdict
    }

    public static func ipv4(_ cidr: String) -> NftSetElement? {
        NftPrefix(cidr).map { NftSetElement(.prefix($0)) }
    }

    public static func ifname(_ name: String, _ verdict: NftVerdict) -> NftSetElement {
        NftSetElement(.ifname(name), verdict: verdict)
    }

    public var description: String {
        verdict.map { "\(key) : \($0)" } ?? key.description
    }
}

/// A rule: expressions evaluated in order. Tabby stamps every rule with a comment (stored as nft's
/// rule userdata, so `nft list` shows it) to recognise its own rules on read-back.
public struct NftRule: Hashable, Sendable {
    public var family: Nft.Family
    public var table: String
    public var chain: String
    public var expressions: [NftExpression]
    /// Stored as NFTNL_UDATA_RULE_COMMENT in the rule's userdata; at most 128 bytes as in nft.
    public var comment: String?
    /// Set by reads; needed to replace or delete one rule.
    public var handle: UInt64?

    public init(
        family: Nft.Family = .inet, table: String, chain: String, expressions: [NftExpression],
        comment: String? = nil, handle: UInt64? = nil
    ) {
        self.family = family
        self.table = table
        self.chain = chain
        self.expressions = expressions
        self.comment = comment
        self.handle = handle
    }

    /// Builds a rule from match groups (see `NftExpression.match`) and a trailing list.
    public init(
        family: Nft.Family = .inet, table: String, chain: String, comment: String? = nil,
        _ groups: [NftExpression]...
    ) {
        self.init(family: family, table: table, chain: chain, expressions: groups.flatMap { $0 }, comment: comment)
    }

    /// Maximum comment length, as enforced by nft (NFT_USERDATA_MAXLEN is 256 for all userdata).
    public static let maxCommentLength = 128
}
