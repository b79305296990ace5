import TabbyCore

/// The nftables objects Tabby wants in its `inet tabby` table, as values: what the compiler
/// produces from the policy IR and what the backend diffs and sends. `nftText` renders it in
/// `nft -f` syntax (for tests, for debugging, and as the `nft -f` peer in the benchmarks).
public struct NftPlan: Sendable, Hashable {
    public static let tableName = "tabby"
    /// Mark bits (Calico's layout, within 0xffff0000): a direction accepted, a tier passed.
    public static let acceptMark: UInt32 = 0x0001_0000
    public static let passMark: UInt32 = 0x0002_0000

    public var sets: [String: NftPlanSet] = [:]
    public var chains: [String: NftPlanChain] = [:]
    /// Verdict maps (`ifname : jump chain`), by name.
    public var maps: [String: [String: String]] = [:]

    public init() {}

    public var nftText: String {
        var lines = ["table inet \(Self.tableName) {"]
        for (name, set) in sets.sorted(by: { $0.key < $1.key }) {
            lines.append("    set \(name) {")
            lines.append("        type \(set.kind.nftType)")
            if set.kind.isInterval { lines.append("        flags interval") }
            if !set.elements.isEmpty {
                lines.append("        elements = { " + set.elements.sorted().joined(separator: ", ") + " }")
            }
            lines.append("    }")
        }
        for (name, elements) in maps.sorted(by: { $0.key < $1.key }) {
            lines.append("    map \(name) {")
            lines.append("        type ifname : verdict")
            if !elements.isEmpty {
                let items = elements.sorted { $0.key < $1.key }.map { "\"\($0.key)\" : jump \($0.value)" }
                lines.append("        elements = { " + items.joined(separator: ", ") + " }")
            }
            lines.append("    }")
        }
        for (name, chain) in chains.sorted(by: { $0.key < $1.key }) {
            lines.append("    chain \(name) {")
            if let base = chain.base {
                lines.append(
                    "        type \(base.type.rawValue) hook \(base.hook.rawValue) priority \(base.priority); policy \(base.policy.rawValue);"
                )
            }
            for rule in chain.rules { lines.append("        " + rule.nftText) }
            lines.append("    }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}

public struct NftPlanSet: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case ipv4Net, ipv6Net, ipv4AddressProtocolPort, ipv6AddressProtocolPort, protocolPort

        var nftType: String {
            switch self {
            case .ipv4Net: return "ipv4_addr"
            case .ipv6Net: return "ipv6_addr"
            case .ipv4AddressProtocolPort: return "ipv4_addr . inet_proto . inet_service"
            case .ipv6AddressProtocolPort: return "ipv6_addr . inet_proto . inet_service"
            case .protocolPort: return "inet_proto . inet_service"
            }
        }
        public var isInterval: Bool { self == .ipv4Net || self == .ipv6Net }
    }

    public var kind: Kind
    /// Elements in nft syntax: `10.0.0.0/8`, `10.0.0.5 . 6 . 80`. CIDRs are merged so none
    /// overlaps another (an interval set refuses overlaps with EEXIST).
    public var elements: Set<String>

    public init(kind: Kind, elements: Set<String> = []) {
        self.kind = kind
        self.elements = elements
    }
}

public struct NftPlanChain: Sendable, Hashable {
    public enum Hook: String, Sendable, Hashable { case input, forward, output, postrouting }
    public enum ChainType: String, Sendable, Hashable { case filter, nat }
    public enum Policy: String, Sendable, Hashable { case accept, drop }
    public struct Base: Sendable, Hashable {
        public var hook: Hook
        public var priority: Int32
        public var policy: Policy
        public var type: ChainType = .filter
    }

    public var base: Base?
    public var rules: [NftPlanRule]

    public init(base: Base? = nil, rules: [NftPlanRule] = []) {
        self.base = base
        self.rules = rules
    }
}

public enum NftFamily: String, Sendable, Hashable {
    case ipv4 = "ip"
    case ipv6 = "ip6"
}

/// One match of a rule; all of a rule's matches must hold.
public enum PlanMatch: Sendable, Hashable {
    case ctState(established: Bool, related: Bool, invalid: Bool, new: Bool)
    case nfproto(NftFamily)
    case iifname(String)
    case oifname(String)
    /// `iifname "cali*"`.
    case iifnamePrefix(String)
    case oifnamePrefix(String)
    case notIifnamePrefix(String)
    case notOifnamePrefix(String)
    case l4proto(Int)
    case notL4proto(Int)
    /// Source (`true`) or destination address in a CIDR.
    case address(source: Bool, CIDR, negated: Bool)
    /// Address in a named set (`ip saddr @s-…-v4`).
    case addressInSet(source: Bool, family: NftFamily, set: String, negated: Bool)
    /// `ip daddr . meta l4proto . th dport @p-…` (named ports).
    case addressProtocolPortInSet(source: Bool, family: NftFamily, set: String, negated: Bool)
    case port(source: Bool, lower: UInt16, upper: UInt16, negated: Bool)
    /// ICMP (or ICMPv6) type and optional code.
    case icmp(version6: Bool, type: UInt8, code: UInt8?, negated: Bool)
    /// `meta mark & mask == 0` (or `!= 0`).
    case markZero(mask: UInt32, zero: Bool)
    /// `meta l4proto . th dport @set` (failsafe ports).
    case protocolPortInSet(set: String, source: Bool)

    var nftText: String {
        func name(_ source: Bool, _ family: NftFamily) -> String { "\(family.rawValue) \(source ? "saddr" : "daddr")" }
        switch self {
        case .ctState(let established, let related, let invalid, let new):
            let states = [(established, "established"), (related, "related"), (invalid, "invalid"), (new, "new")]
                .filter(\.0).map(\.1)
            return "ct state " + states.joined(separator: ",")
        case .nfproto(let family): return "meta nfproto \(family == .ipv4 ? "ipv4" : "ipv6")"
        case .iifname(let name): return "iifname \"\(name)\""
        case .oifname(let name): return "oifname \"\(name)\""
        case .iifnamePrefix(let prefix): return "iifname \"\(prefix)*\""
        case .oifnamePrefix(let prefix): return "oifname \"\(prefix)*\""
        case .notIifnamePrefix(let prefix): return "iifname != \"\(prefix)*\""
        case .notOifnamePrefix(let prefix): return "oifname != \"\(prefix)*\""
        case .l4proto(let number): return "meta l4proto \(number)"
        case .notL4proto(let number): return "meta l4proto != \(number)"
        case .address(let source, let cidr, let negated):
            let family: NftFamily = cidr.family == .v4 ? .ipv4 : .ipv6
            return "\(name(source, family)) \(negated ? "!= " : "")\(cidr)"
        case .addressInSet(let source, let family, let set, let negated):
            return "\(name(source, family)) \(negated ? "!= " : "")@\(set)"
        case .addressProtocolPortInSet(let source, let family, let set, let negated):
            return
                "\(name(source, family)) . meta l4proto . th \(source ? "sport" : "dport") \(negated ? "!= " : "")@\(set)"
        case .port(let source, let lower, let upper, let negated):
            let value = lower == upper ? "\(lower)" : "\(lower)-\(upper)"
            return "th \(source ? "sport" : "dport") \(negated ? "!= " : "")\(value)"
        case .icmp(let version6, let type, let code, let negated):
            let proto = version6 ? "icmpv6" : "icmp"
            var text = "\(proto) type \(negated ? "!= " : "")\(type)"
            if let code { text += " \(proto) code \(code)" }
            return text
        case .markZero(let mask, let zero):
            return "meta mark & 0x\(String(mask, radix: 16)) \(zero ? "==" : "!=") 0"
        case .protocolPortInSet(let set, let source):
            return "meta l4proto . th \(source ? "sport" : "dport") @\(set)"
        }
    }
}

public enum PlanVerdict: Sendable, Hashable {
    case accept
    case drop
    case jump(String)
    case `return`
    /// `meta mark set meta mark | bits`, then `return`.
    case markReturn(UInt32)
    /// `meta mark set meta mark & ~bits` and continue.
    case clearMark(UInt32)
    /// `log prefix "…"` and continue.
    case log(String)
    /// `iifname vmap @map` / `oifname vmap @map`.
    case dispatch(map: String, inbound: Bool)
    /// Source NAT to the outgoing interface's address.
    case masquerade

    var nftText: String {
        switch self {
        case .accept: return "accept"
        case .drop: return "drop"
        case .jump(let chain): return "jump \(chain)"
        case .return: return "return"
        case .markReturn(let bits): return "meta mark set meta mark | 0x\(String(bits, radix: 16)) return"
        case .clearMark(let bits): return "meta mark set meta mark & 0x\(String(~bits, radix: 16))"
        case .log(let prefix): return "log prefix \"\(prefix)\""
        case .dispatch(let map, let inbound): return "\(inbound ? "iifname" : "oifname") vmap @\(map)"
        case .masquerade: return "masquerade"
        }
    }
}

public struct NftPlanRule: Sendable, Hashable {
    public var matches: [PlanMatch]
    public var verdict: PlanVerdict
    /// Stamped on the rule (its userdata): which policy rule this came from.
    public var comment: String?

    public init(_ matches: [PlanMatch] = [], _ verdict: PlanVerdict, comment: String? = nil) {
        self.matches = matches
        self.verdict = verdict
        self.comment = comment
    }

    public var nftText: String {
        var parts = matches.map(\.nftText)
        parts.append(verdict.nftText)
        if let comment { parts.append("comment \"\(comment.replacingQuotes())\"") }
        return parts.joined(separator: " ")
    }
}

extension String {
    fileprivate func replacingQuotes() -> String { String(map { $0 == "\"" ? "'" : $0 }) }
}
