/// An nf_tables register. `r1`...`r4` are the 16-byte registers; `r32(n)` addresses the same storage
/// in 4-byte units (NFT_REG32_00 + n), which concatenations use to place fields side by side.
public struct NftRegister: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// NFT_REG_VERDICT: a lookup into a verdict map writes here.
    public static let verdict = NftRegister(rawValue: 0)
    public static let r1 = NftRegister(rawValue: 1)
    public static let r2 = NftRegister(rawValue: 2)
    public static let r3 = NftRegister(rawValue: 3)
    public static let r4 = NftRegister(rawValue: 4)
    /// NFT_REG32_00 + index (index 0...15). `r32(0)` is the first word of `r1`.
    public static func r32(_ index: UInt32) -> NftRegister { NftRegister(rawValue: 8 + index) }

    /// The name the kernel dumps this register under: a 32-bit register that starts a 128-bit one
    /// (`reg32 0`, `reg32 4`, ...) reads back as that register (`reg 1`, `reg 2`, ...).
    public var canonical: NftRegister {
        guard (8...23).contains(rawValue), (rawValue - 8) % 4 == 0 else { return self }
        return NftRegister(rawValue: 1 + (rawValue - 8) / 4)
    }

    public var description: String {
        switch rawValue {
        case 0: "verdict"
        case 1...4: "reg \(rawValue)"
        default: "reg32 \(rawValue - 8)"
        }
    }
}

/// `enum nft_meta_keys` values Tabby uses.
public enum NftMetaKey: UInt32, Hashable, Sendable {
    case length = 0
    case nfproto = 15
    case l4proto = 16
    case mark = 3
    case iif = 4
    case oif = 5
    case iifname = 6
    case oifname = 7
}

/// `enum nft_payload_bases`.
public enum NftPayloadBase: UInt32, Hashable, Sendable {
    case link = 0
    case network = 1
    case transport = 2
}

/// `enum nft_cmp_ops`.
public enum NftCmpOp: UInt32, Hashable, Sendable {
    case eq = 0
    case neq = 1
    case lt = 2
    case lte = 3
    case gt = 4
    case gte = 5
}

/// `enum nft_range_ops`.
public enum NftRangeOp: UInt32, Hashable, Sendable {
    case eq = 0
    case neq = 1
}

/// `enum nft_ct_keys` values Tabby uses.
public enum NftCtKey: UInt32, Hashable, Sendable {
    case state = 0
    case direction = 1
    case status = 2
    case mark = 3
}

/// Conntrack state bits as the `ct state` key holds them (NF_CT_STATE_*_BIT).
public struct NftCtState: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let invalid = NftCtState(rawValue: 1)
    public static let established = NftCtState(rawValue: 2)
    public static let related = NftCtState(rawValue: 4)
    public static let new = NftCtState(rawValue: 8)
    public static let untracked = NftCtState(rawValue: 64)
}

/// One nf_tables expression, as the kernel sees it (registers and raw bytes). Multi-byte values in
/// `data` are in the byte order of what they are compared with: network order for packet payload,
/// host order for meta/ct keys. Use the `match` constructors rather than building these by hand.
public enum NftExpression: Hashable, Sendable, CustomStringConvertible {
    case meta(NftMetaKey, into: NftRegister)
    /// `meta mark set`: writes a register into the packet's meta key.
    case metaSet(NftMetaKey, from: NftRegister)
    case payload(NftPayloadBase, offset: UInt32, length: UInt32, into: NftRegister)
    case cmp(NftCmpOp, NftRegister, [UInt8])
    /// `dest = (source & mask) ^ xor`, over `mask.count` bytes.
    case bitwise(source: NftRegister, destination: NftRegister, mask: [UInt8], xor: [UInt8])
    /// A set lookup; with `destination` (a map) it loads the element's data, `.verdict` for a vmap.
    case lookup(set: String, source: NftRegister, destination: NftRegister?, inverted: Bool)
    case range(NftRangeOp, NftRegister, from: [UInt8], to: [UInt8])
    case ct(NftCtKey, into: NftRegister)
    /// Loads constant bytes into a data register.
    case immediate([UInt8], into: NftRegister)
    /// Sets the verdict (immediate into the verdict register).
    case verdict(NftVerdict)
    case counter
    case log(prefix: String?)
    /// Source NAT to the outgoing interface's address (`masquerade`, nat chains at postrouting).
    case masquerade
    /// An expression this layer does not model, as read back from the kernel (its libnftnl name).
    case unsupported(String)

    /// The expression as the kernel dumps it back: registers in their canonical names.
    public var canonical: NftExpression {
        switch self {
        case .meta(let key, let register): .meta(key, into: register.canonical)
        case .metaSet(let key, let register): .metaSet(key, from: register.canonical)
        case .payload(let base, let offset, let length, let register):
            .payload(base, offset: offset, length: length, into: register.canonical)
        case .cmp(let op, let register, let data): .cmp(op, register.canonical, data)
        case .bitwise(let source, let destination, let mask, let xor):
            .bitwise(source: source.canonical, destination: destination.canonical, mask: mask, xor: xor)
        case .lookup(let set, let source, let destination, let inverted):
            .lookup(set: set, source: source.canonical, destination: destination?.canonical, inverted: inverted)
        case .range(let op, let register, let from, let to): .range(op, register.canonical, from: from, to: to)
        case .ct(let key, let register): .ct(key, into: register.canonical)
        case .immediate(let data, let register): .immediate(data, into: register.canonical)
        case .verdict, .counter, .log, .masquerade, .unsupported: self
        }
    }

    public var description: String {
        switch self {
        case .meta(let key, let register): "[ meta load \(key) => \(register) ]"
        case .metaSet(let key, let register): "[ meta set \(key) with \(register) ]"
        case .payload(let base, let offset, let length, let register):
            "[ payload load \(length)b @ \(base) header + \(offset) => \(register) ]"
        case .cmp(let op, let register, let data): "[ cmp \(op) \(register) \(hex(data)) ]"
        case .bitwise(let source, let destination, let mask, let xor):
            "[ bitwise \(destination) = ( \(source) & \(hex(mask)) ) ^ \(hex(xor)) ]"
        case .lookup(let set, let source, let destination, let inverted):
            "[ lookup \(source) set \(set)\(destination.map { " dreg \($0)" } ?? "")\(inverted ? " 0x1" : "") ]"
        case .range(let op, let register, let from, let to):
            "[ range \(op) \(register) \(hex(from)) \(hex(to)) ]"
        case .ct(let key, let register): "[ ct load \(key) => \(register) ]"
        case .immediate(let data, let register): "[ immediate \(register) \(hex(data)) ]"
        case .verdict(let verdict): "[ immediate verdict \(verdict) ]"
        case .counter: "[ counter ]"
        case .masquerade: "[ masq ]"
        case .log(let prefix): "[ log\(prefix.map { " prefix \($0)" } ?? "") ]"
        case .unsupported(let name): "[ \(name) (unsupported) ]"
        }
    }
}

/// The matches policy needs, each compiled to the expressions `nft` itself would emit (the
/// `tests/py/*.payload` encodings). In an `inet` table, address matches first check `meta nfproto`.
public enum NftMatch: Hashable, Sendable {
    case iifname(String)
    case oifname(String)
    /// `iifname "cali*"`: compares only the prefix bytes.
    case iifnamePrefix(String)
    case oifnamePrefix(String)
    /// `ct state a,b`: true when any of the bits is set.
    case ctState(NftCtState)
    case saddr(NftPrefix)
    case daddr(NftPrefix)
    /// `ip saddr @set` (`ip6` when `ipv6`); `negated` is `!= @set`.
    case saddrIn(set: String, ipv6: Bool, negated: Bool)
    case daddrIn(set: String, ipv6: Bool, negated: Bool)
    case l4proto(UInt8)
    /// `tcp dport 80` / `tcp dport 80-90` for the given IP protocol.
    case dport(proto: UInt8, ClosedRange<UInt16>)
    case sport(proto: UInt8, ClosedRange<UInt16>)
    /// `tcp dport @set` (set of inet_service).
    case dportIn(proto: UInt8, set: String, negated: Bool)
    /// `icmp type N` (or `icmpv6 type N` when `ipv6`).
    case icmpType(UInt8, ipv6: Bool)
    /// `meta mark & mask == value`.
    case mark(UInt32, mask: UInt32)
}

extension NftMatch {
    public static let ctStateEstablishedRelated = NftMatch.ctState([.established, .related])
    public static let ctStateInvalid = NftMatch.ctState(.invalid)
    public static func saddrIn(set: String) -> NftMatch { .saddrIn(set: set, ipv6: false, negated: false) }
    public static func daddrIn(set: String) -> NftMatch { .daddrIn(set: set, ipv6: false, negated: false) }
    public static func tcpDport(_ port: UInt16) -> NftMatch { .dport(proto: 6, port...port) }
    public static func udpDport(_ port: UInt16) -> NftMatch { .dport(proto: 17, port...port) }
}

/// IP protocol numbers used by the matches.
public enum IPProtocolNumber {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
}

extension NftExpression {
    /// The expressions for one match in a table of family `family` (`inet` adds nfproto checks).
    public static func match(_ match: NftMatch, family: Nft.Family = .inet) -> [NftExpression] {
        let r1 = NftRegister.r1
        switch match {
        case .iifname(let name):
            return [.meta(.iifname, into: r1), .cmp(.eq, r1, interfaceNameBytes(name))]
        case .oifname(let name):
            return [.meta(.oifname, into: r1), .cmp(.eq, r1, interfaceNameBytes(name))]
        case .iifnamePrefix(let prefix):
            return [.meta(.iifname, into: r1), .cmp(.eq, r1, Array(prefix.utf8))]
        case .oifnamePrefix(let prefix):
            return [.meta(.oifname, into: r1), .cmp(.eq, r1, Array(prefix.utf8))]
        case .ctState(let state):
            return [
                .ct(.state, into: r1),
                .bitwise(source: r1, destination: r1, mask: hostBytes(state.rawValue), xor: [0, 0, 0, 0]),
                .cmp(.neq, r1, [0, 0, 0, 0]),
            ]
        case .saddr(let prefix), .daddr(let prefix):
            let isSource = if case .saddr = match { true } else { false }
            var result = nfproto(ipv6: !prefix.isIPv4, family: family)
            result.append(addressPayload(ipv6: !prefix.isIPv4, source: isSource))
            if prefix.length < prefix.address.count * 8 {
                result.append(
                    .bitwise(
                        source: r1, destination: r1, mask: prefix.mask,
                        xor: [UInt8](repeating: 0, count: prefix.address.count)))
            }
            result.append(.cmp(.eq, r1, prefix.address))
            return result
        case .saddrIn(let set, let ipv6, let negated), .daddrIn(let set, let ipv6, let negated):
            let isSource = if case .saddrIn = match { true } else { false }
            return nfproto(ipv6: ipv6, family: family) + [
                addressPayload(ipv6: ipv6, source: isSource),
                .lookup(set: set, source: r1, destination: nil, inverted: negated),
            ]
        case .l4proto(let proto):
            return [.meta(.l4proto, into: r1), .cmp(.eq, r1, [proto])]
        case .dport(let proto, let ports), .sport(let proto, let ports):
            let offset: UInt32 = if case .dport = match { 2 } else { 0 }
            var result: [NftExpression] = [
                .meta(.l4proto, into: r1), .cmp(.eq, r1, [proto]),
                .payload(.transport, offset: offset, length: 2, into: r1),
            ]
            if ports.lowerBound == ports.upperBound {
                result.append(.cmp(.eq, r1, bigEndian16(ports.lowerBound)))
            } else {
                result.append(.cmp(.gte, r1, bigEndian16(ports.lowerBound)))
                result.append(.cmp(.lte, r1, bigEndian16(ports.upperBound)))
            }
            return result
        case .dportIn(let proto, let set, let negated):
            return [
                .meta(.l4proto, into: r1), .cmp(.eq, r1, [proto]),
                .payload(.transport, offset: 2, length: 2, into: r1),
                .lookup(set: set, source: r1, destination: nil, inverted: negated),
            ]
        case .icmpType(let type, let ipv6):
            return [
                .meta(.l4proto, into: r1), .cmp(.eq, r1, [ipv6 ? IPProtocolNumber.icmpv6 : IPProtocolNumber.icmp]),
                .payload(.transport, offset: 0, length: 1, into: r1), .cmp(.eq, r1, [type]),
            ]
        case .mark(let value, let mask):
            var result: [NftExpression] = [.meta(.mark, into: r1)]
            if mask != UInt32.max {
                result.append(.bitwise(source: r1, destination: r1, mask: hostBytes(mask), xor: [0, 0, 0, 0]))
            }
            result.append(.cmp(.eq, r1, hostBytes(value & mask)))
            return result
        }
    }

    /// `iifname vmap @map` / `oifname vmap @map`: dispatch on the interface through a verdict map.
    public static func interfaceVmap(_ map: String, input: Bool = true) -> [NftExpression] {
        [
            .meta(input ? .iifname : .oifname, into: .r1),
            .lookup(set: map, source: .r1, destination: .verdict, inverted: false),
        ]
    }

    /// `meta mark set value`.
    public static func setMark(_ value: UInt32) -> [NftExpression] {
        [.immediate(hostBytes(value), into: .r1), .metaSet(.mark, from: .r1)]
    }

    static func nfproto(ipv6: Bool, family: Nft.Family) -> [NftExpression] {
        guard family == .inet || family == .bridge || family == .netdev else { return [] }
        // NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10 (one byte, as nft compares it).
        return [.meta(.nfproto, into: .r1), .cmp(.eq, .r1, [ipv6 ? 10 : 2])]
    }

    static func addressPayload(ipv6: Bool, source: Bool) -> NftExpression {
        // IPv4 saddr at 12, daddr at 16; IPv6 saddr at 8, daddr at 24.
        let offset: UInt32 = ipv6 ? (source ? 8 : 24) : (source ? 12 : 16)
        return .payload(.network, offset: offset, length: ipv6 ? 16 : 4, into: .r1)
    }
}

/// An interface name as nft compares it: the bytes, NUL-padded to IFNAMSIZ.
func interfaceNameBytes(_ name: String) -> [UInt8] {
    var bytes = Array(name.utf8.prefix(Nft.interfaceNameSize - 1))
    bytes += [UInt8](repeating: 0, count: Nft.interfaceNameSize - bytes.count)
    return bytes
}

func hostBytes(_ value: UInt32) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

func bigEndian16(_ value: UInt16) -> [UInt8] {
    [UInt8(value >> 8), UInt8(value & 0xff)]
}

extension [NftExpression] {
    /// `.match(.iifname("cali1"))` where a list of expressions is expected (e.g. `NftRule`'s groups).
    public static func match(_ match: NftMatch, family: Nft.Family = .inet) -> [NftExpression] {
        NftExpression.match(match, family: family)
    }

    /// `.verdict(.accept)` as a one-expression group.
    public static func verdict(_ verdict: NftVerdict) -> [NftExpression] { [.verdict(verdict)] }
}
