import CMNL
import TabbyCore
import Glibc

/// Scope of an address or route (rtm_scope / ifa_scope).
public enum Scope: Sendable, Hashable {
    case universe
    case site
    case link
    case host
    case nowhere
    case other(UInt8)

    public init(kernelValue: UInt8) {
        switch UInt32(kernelValue) {
        case RT_SCOPE_UNIVERSE.rawValue: self = .universe
        case RT_SCOPE_SITE.rawValue: self = .site
        case RT_SCOPE_LINK.rawValue: self = .link
        case RT_SCOPE_HOST.rawValue: self = .host
        case RT_SCOPE_NOWHERE.rawValue: self = .nowhere
        default: self = .other(kernelValue)
        }
    }

    public var kernelValue: UInt8 {
        switch self {
        case .universe: return UInt8(RT_SCOPE_UNIVERSE.rawValue)
        case .site: return UInt8(RT_SCOPE_SITE.rawValue)
        case .link: return UInt8(RT_SCOPE_LINK.rawValue)
        case .host: return UInt8(RT_SCOPE_HOST.rawValue)
        case .nowhere: return UInt8(RT_SCOPE_NOWHERE.rawValue)
        case .other(let value): return value
        }
    }
}

/// An address on an interface: the address with its prefix length, and optionally the peer of a
/// point-to-point address.
public struct InterfaceAddress: Sendable, Equatable {
    /// The local address (host bits kept: `10.0.0.5/24` is the address 10.0.0.5 on a /24).
    public var address: IPAddress
    public var prefixLength: Int
    public var scope: Scope
    /// IFA_ADDRESS when it differs from the local address (point-to-point peers).
    public var peer: IPAddress?
    /// IFA_F_NODAD (IPv6): usable at once, without duplicate address detection's tentative phase.
    public var noDAD: Bool

    public init(
        _ address: IPAddress, prefixLength: Int, scope: Scope = .universe, peer: IPAddress? = nil, noDAD: Bool = false
    ) {
        self.address = address
        self.prefixLength = prefixLength
        self.scope = scope
        self.peer = peer
        self.noDAD = noDAD
    }
}

extension InterfaceAddress {
    /// `10.10.0.11/24`, host bits kept (a Node's `bgp.ipv4Address`, `--underlay-address`); a bare
    /// address is a host address. Nil when it is not an address with an in-range prefix length.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let address = IPAddress(String(parts[0])) else { return nil }
        let length = parts.count == 2 ? Int(parts[1]) : address.bitWidth
        guard let length, (0...address.bitWidth).contains(length) else { return nil }
        self.init(address, prefixLength: length)
    }
}

/// An address as found on a link by `addresses(index:family:)`.
public struct AssignedAddress: Sendable, Equatable {
    /// The interface index.
    public var index: Int32
    public var address: InterfaceAddress
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection has not finished.
    public var isTentative: Bool

    public init(index: Int32, address: InterfaceAddress, isTentative: Bool = false) {
        self.index = index
        self.address = address
        self.isTentative = isTentative
    }

    init?(message: [UInt8]) {
        guard let header = fixedHeader(of: message, as: ifaddrmsg.self) else { return nil }
        let attributes = Attributes(message: message, headerSize: MemoryLayout<ifaddrmsg>.size)
        guard let addressBytes = attributes[IFA_LOCAL] ?? attributes[IFA_ADDRESS],
            let local = IPAddress(bytes: addressBytes)
        else { return nil }
        let flags = attributes.u32(IFA_FLAGS) ?? UInt32(header.ifa_flags)
        let peer = attributes[IFA_ADDRESS].flatMap { IPAddress(bytes: $0) }
        self.init(
            index: Int32(bitPattern: header.ifa_index),
            address: InterfaceAddress(
                local, prefixLength: Int(header.ifa_prefixlen),
                scope: Scope(kernelValue: header.ifa_scope),
                peer: peer == local ? nil : peer,
                noDAD: flags & UInt32(IFA_F_NODAD) != 0),
            isTentative: flags & UInt32(IFA_F_TENTATIVE) != 0)
    }
}

extension RouteSocket {
    /// Adds an address to link `index`. With `replace`, an existing identical address is updated instead
    /// of failing with EEXIST (idempotent).
    public func addAddress(_ address: InterfaceAddress, index: Int32, replace: Bool = false) throws(Netlink.Error) {
        let flags = NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL)
        try request(
            type: RTM_NEWADDR, flags: flags,
            describedAs: "RTM_NEWADDR \(address.address)/\(address.prefixLength) dev #\(index)"
        ) {
            message in
            Self.putAddress(address, index: index, into: &message)
        }
    }

    /// Removes an address from link `index`. Fails with EADDRNOTAVAIL when it is not there.
    public func deleteAddress(_ address: InterfaceAddress, index: Int32) throws(Netlink.Error) {
        try request(
            type: RTM_DELADDR, describedAs: "RTM_DELADDR \(address.address)/\(address.prefixLength) dev #\(index)"
        ) { message in
            Self.putAddress(address, index: index, into: &message)
        }
    }

    /// The addresses in the namespace, optionally only those of one link and/or family.
    public func addresses(index: Int32? = nil, family: AddressFamily? = nil) throws(Netlink.Error) -> [AssignedAddress]
    {
        let familyValue = family?.kernelValue ?? UInt8(AF_UNSPEC)
        return try dump(type: RTM_GETADDR, describedAs: "RTM_GETADDR dump") { message in
            var header = ifaddrmsg()
            header.ifa_family = familyValue
            message.putFixedHeader(header)
        }.compactMap { AssignedAddress(message: $0) }.filter { index == nil || $0.index == index }
    }

    private static func putAddress(_ address: InterfaceAddress, index: Int32, into message: inout MessageBuilder) {
        let local = address.address
        var header = ifaddrmsg()
        header.ifa_family = AddressFamily(of: local).kernelValue
        header.ifa_prefixlen = UInt8(address.prefixLength)
        header.ifa_flags = address.noDAD ? UInt8(IFA_F_NODAD) : 0
        header.ifa_scope = address.scope.kernelValue
        header.ifa_index = UInt32(bitPattern: index)
        message.putFixedHeader(header)
        // As iproute2: IFA_LOCAL is our address, IFA_ADDRESS the peer (or our address again).
        message.put(IFA_LOCAL, bytes: local.bytes)
        message.put(IFA_ADDRESS, bytes: (address.peer ?? local).bytes)
    }
}
