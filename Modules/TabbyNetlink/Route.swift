import CMNL
import TabbyCore
import Glibc

/// A route in a routing table (IPv4 or IPv6).
public struct Route: Sendable, Equatable {
    /// RTN_* route types Tabby uses.
    public enum RouteType: Sendable, Hashable {
        case unicast
        case local
        case blackhole
        case unreachable
        case prohibit
        case other(UInt8)

        init(kernelValue: UInt8) {
            switch Int(kernelValue) {
            case Int(RTN_UNICAST): self = .unicast
            case Int(RTN_LOCAL): self = .local
            case Int(RTN_BLACKHOLE): self = .blackhole
            case Int(RTN_UNREACHABLE): self = .unreachable
            case Int(RTN_PROHIBIT): self = .prohibit
            default: self = .other(kernelValue)
            }
        }

        var kernelValue: UInt8 {
            switch self {
            case .unicast: return UInt8(RTN_UNICAST)
            case .local: return UInt8(RTN_LOCAL)
            case .blackhole: return UInt8(RTN_BLACKHOLE)
            case .unreachable: return UInt8(RTN_UNREACHABLE)
            case .prohibit: return UInt8(RTN_PROHIBIT)
            case .other(let value): return value
            }
        }
    }

    /// The main table (RT_TABLE_MAIN).
    public static let mainTable: UInt32 = 254

    public var destination: CIDR
    public var gateway: IPAddress?
    public var outputIndex: Int32?
    public var scope: Scope
    /// RTPROT: who owns the route. Tabby's routes carry `Netlink.tabbyRouteProtocol`.
    public var `protocol`: UInt8
    public var table: UInt32
    /// RTA_PRIORITY, the metric; nil for the kernel's default (0 for IPv4, 1024 for IPv6).
    public var priority: UInt32?
    /// RTNH_F_ONLINK: the gateway is on the link even without a matching connected route
    /// (pods' `default via 169.254.1.1 dev eth0 onlink`, VXLAN block routes).
    public var onLink: Bool
    public var type: RouteType
    /// RTA_PREFSRC: the source address the kernel prefers for traffic on this route.
    public var preferredSource: IPAddress?

    /// A route. `scope` nil means the usual one: link for a device route without a gateway, host for
    /// local routes, universe otherwise.
    public init(
        destination: CIDR, gateway: IPAddress? = nil, outputIndex: Int32? = nil, scope: Scope? = nil,
        protocol: UInt8 = Netlink.tabbyRouteProtocol, table: UInt32 = Route.mainTable, priority: UInt32? = nil,
        onLink: Bool = false, type: RouteType = .unicast, preferredSource: IPAddress? = nil
    ) {
        self.destination = destination
        self.gateway = gateway
        self.outputIndex = outputIndex
        self.protocol = `protocol`
        self.table = table
        self.priority = priority
        self.onLink = onLink
        self.type = type
        self.preferredSource = preferredSource
        if let scope {
            self.scope = scope
        } else if type == .local {
            self.scope = .host
        } else if gateway == nil && outputIndex != nil && type == .unicast && destination.address.isIPv4 {
            self.scope = .link
        } else {
            self.scope = .universe
        }
    }

    var family: AddressFamily { AddressFamily(of: destination.address) }

    var summary: String {
        var text = destination.description
        if let gateway { text += " via \(gateway)" }
        if let outputIndex { text += " dev #\(outputIndex)" }
        if table != Route.mainTable { text += " table \(table)" }
        return text
    }

    /// Decodes one RTM_NEWROUTE message; nil for cached clones and families other than IPv4/IPv6.
    init?(message: [UInt8]) {
        guard let header = fixedHeader(of: message, as: rtmsg.self),
            let family = AddressFamily(kernelValue: header.rtm_family),
            header.rtm_flags & UInt32(RTM_F_CLONED) == 0
        else { return nil }
        let attributes = Attributes(message: message, headerSize: MemoryLayout<rtmsg>.size)
        let width = family == .ipv4 ? 4 : 16
        let destination =
            attributes[RTA_DST.rawValue].flatMap { IPAddress(bytes: $0) }
            ?? IPAddress(bytes: [UInt8](repeating: 0, count: width))!
        self.init(
            destination: CIDR(address: destination, prefixLength: Int(header.rtm_dst_len)),
            gateway: attributes[RTA_GATEWAY.rawValue].flatMap { IPAddress(bytes: $0) },
            outputIndex: attributes.u32(RTA_OIF.rawValue).map { Int32(bitPattern: $0) },
            scope: Scope(kernelValue: header.rtm_scope),
            protocol: header.rtm_protocol,
            table: attributes.u32(RTA_TABLE.rawValue) ?? UInt32(header.rtm_table),
            priority: attributes.u32(RTA_PRIORITY.rawValue),
            onLink: header.rtm_flags & UInt32(RTNH_F_ONLINK) != 0,
            type: RouteType(kernelValue: header.rtm_type),
            preferredSource: attributes[RTA_PREFSRC.rawValue].flatMap { IPAddress(bytes: $0) })
    }
}

extension RouteSocket {
    /// Adds a route. With `replace`, an existing route to the same destination (and metric, table) is
    /// replaced (idempotent); without it, an existing one fails with EEXIST. Requires CAP_NET_ADMIN.
    public func addRoute(_ route: Route, replace: Bool = false) throws(Netlink.Error) {
        try Self.validate(route)
        let flags = NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL)
        try request(type: RTM_NEWROUTE, flags: flags, describedAs: "RTM_NEWROUTE \(route.summary)") { message in
            Self.putRoute(route, deleting: false, into: &message)
        }
    }

    /// Deletes the route that matches `route`'s destination, table, protocol, metric, gateway and
    /// device (any scope). Fails with ESRCH when there is none.
    public func deleteRoute(_ route: Route) throws(Netlink.Error) {
        try Self.validate(route)
        try request(type: RTM_DELROUTE, describedAs: "RTM_DELROUTE \(route.summary)") { message in
            Self.putRoute(route, deleting: true, into: &message)
        }
    }

    /// The routes of one family in `table` (254, main, by default), optionally only those of one
    /// protocol (`Netlink.tabbyRouteProtocol` for Tabby's own). Cached clones are skipped.
    public func routes(family: AddressFamily, table: UInt32 = Route.mainTable, protocol: UInt8? = nil)
        throws(Netlink.Error) -> [Route]
    {
        try dump(type: RTM_GETROUTE, describedAs: "RTM_GETROUTE dump") { message in
            var header = rtmsg()
            header.rtm_family = family.kernelValue
            message.putFixedHeader(header)
        }.compactMap { Route(message: $0) }.filter { route in
            route.table == table && (`protocol` == nil || route.protocol == `protocol`)
        }
    }

    private static func validate(_ route: Route) throws(Netlink.Error) {
        if let gateway = route.gateway, gateway.isIPv4 != route.destination.address.isIPv4 {
            throw .invalidArgument("route \(route.summary): gateway and destination families differ")
        }
    }

    private static func putRoute(_ route: Route, deleting: Bool, into message: inout MessageBuilder) {
        var header = rtmsg()
        header.rtm_family = route.family.kernelValue
        header.rtm_dst_len = UInt8(route.destination.prefixLength)
        // Tables past 255 only fit RTA_TABLE; the header then says RT_TABLE_UNSPEC.
        header.rtm_table = route.table < 256 ? UInt8(route.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
        header.rtm_protocol = route.protocol
        // As iproute2: a delete matches any scope (RT_SCOPE_NOWHERE) and any type.
        header.rtm_scope = deleting ? UInt8(RT_SCOPE_NOWHERE.rawValue) : route.scope.kernelValue
        header.rtm_type = deleting ? UInt8(RTN_UNSPEC) : route.type.kernelValue
        header.rtm_flags = route.onLink ? UInt32(RTNH_F_ONLINK) : 0
        message.putFixedHeader(header)
        message.put(RTA_TABLE.rawValue, u32: route.table)
        if route.destination.prefixLength > 0 {
            message.put(RTA_DST.rawValue, bytes: route.destination.address.bytes)
        }
        if let gateway = route.gateway { message.put(RTA_GATEWAY.rawValue, bytes: gateway.bytes) }
        if let outputIndex = route.outputIndex { message.put(RTA_OIF.rawValue, u32: UInt32(bitPattern: outputIndex)) }
        if let priority = route.priority { message.put(RTA_PRIORITY.rawValue, u32: priority) }
        if let source = route.preferredSource { message.put(RTA_PREFSRC.rawValue, bytes: source.bytes) }
    }
}
