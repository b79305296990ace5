import CMNL
import TabbyCore
import Glibc

/// An entry of the ARP/NDP table (RTM_NEWNEIGH, AF_INET/AF_INET6).
public struct Neighbour: Sendable, Equatable {
    public var index: Int32
    public var address: IPAddress
    /// NDA_LLADDR; nil while the entry is incomplete or failed.
    public var mac: MACAddress?
    /// NUD_* state bits (NUD_PERMANENT = 0x80, NUD_REACHABLE = 0x02, ...).
    public var state: UInt16
    /// NTF_* flags.
    public var flags: UInt8

    public var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    public init(index: Int32, address: IPAddress, mac: MACAddress?, state: UInt16, flags: UInt8 = 0) {
        self.index = index
        self.address = address
        self.mac = mac
        self.state = state
        self.flags = flags
    }

    init?(message: [UInt8]) {
        guard let header = fixedHeader(of: message, as: ndmsg.self) else { return nil }
        let attributes = Attributes(message: message, headerSize: MemoryLayout<ndmsg>.size)
        guard let address = attributes[NDA_DST].flatMap({ IPAddress(bytes: $0) }) else { return nil }
        self.init(
            index: header.ndm_ifindex, address: address, mac: attributes[NDA_LLADDR].flatMap { MACAddress(bytes: $0) },
            state: header.ndm_state, flags: header.ndm_flags)
    }
}

/// An entry of a device's forwarding database (AF_BRIDGE). For VXLAN devices, NTF_SELF entries map an
/// inner MAC to the remote VTEP (`destination`) that owns it.
public struct FDBEntry: Sendable, Equatable {
    public var index: Int32
    public var mac: MACAddress
    /// NDA_DST: the remote VTEP, for VXLAN entries.
    public var destination: IPAddress?
    public var state: UInt16
    public var flags: UInt8
    /// NDA_MASTER: the bridge, for entries of a bridge port.
    public var masterIndex: Int32?

    public var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    public init(
        index: Int32, mac: MACAddress, destination: IPAddress?, state: UInt16, flags: UInt8, masterIndex: Int32? = nil
    ) {
        self.index = index
        self.mac = mac
        self.destination = destination
        self.state = state
        self.flags = flags
        self.masterIndex = masterIndex
    }

    init?(message: [UInt8]) {
        guard let header = fixedHeader(of: message, as: ndmsg.self) else { return nil }
        let attributes = Attributes(message: message, headerSize: MemoryLayout<ndmsg>.size)
        guard let mac = attributes[NDA_LLADDR].flatMap({ MACAddress(bytes: $0) }) else { return nil }
        self.init(
            index: header.ndm_ifindex, mac: mac, destination: attributes[NDA_DST].flatMap { IPAddress(bytes: $0) },
            state: header.ndm_state, flags: header.ndm_flags,
            masterIndex: attributes.u32(NDA_MASTER).map { Int32(bitPattern: $0) })
    }
}

extension RouteSocket {
    /// Adds a static ARP/NDP entry on link `index` (`permanent`: NUD_PERMANENT, never expires; else
    /// NUD_REACHABLE). With `replace`, an existing entry is updated (idempotent).
    public func addNeighbour(
        index: Int32, address: IPAddress, mac: MACAddress, permanent: Bool = true, replace: Bool = true
    ) throws(Netlink.Error) {
        let flags = NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL)
        try request(
            type: RTM_NEWNEIGH, flags: flags, describedAs: "RTM_NEWNEIGH \(address) lladdr \(mac) dev #\(index)"
        ) {
            message in
            message.putFixedHeader(
                ndmsg(
                    family: AddressFamily(of: address).kernelValue, index: index,
                    state: permanent ? NUD_PERMANENT : NUD_REACHABLE, flags: 0))
            message.put(NDA_DST, bytes: address.bytes)
            message.put(NDA_LLADDR, bytes: mac.bytes)
        }
    }

    /// Deletes the ARP/NDP entry for `address` on link `index`. Fails with ENOENT when there is none.
    public func deleteNeighbour(index: Int32, address: IPAddress) throws(Netlink.Error) {
        try request(type: RTM_DELNEIGH, describedAs: "RTM_DELNEIGH \(address) dev #\(index)") { message in
            message.putFixedHeader(
                ndmsg(family: AddressFamily(of: address).kernelValue, index: index, state: 0, flags: 0))
            message.put(NDA_DST, bytes: address.bytes)
        }
    }

    /// The ARP (IPv4) or NDP (IPv6) table, optionally of one link.
    public func neighbours(index: Int32? = nil, family: AddressFamily) throws(Netlink.Error) -> [Neighbour] {
        try dump(type: RTM_GETNEIGH, describedAs: "RTM_GETNEIGH dump") { message in
            message.putFixedHeader(ndmsg(family: family.kernelValue, index: 0, state: 0, flags: 0))
        }.compactMap { Neighbour(message: $0) }.filter { index == nil || $0.index == index }
    }

    /// Adds (or replaces: idempotent) a VXLAN forwarding entry on the device itself (AF_BRIDGE,
    /// NTF_SELF, NUD_PERMANENT): frames for `mac` are encapsulated to the remote VTEP `destination`.
    public func addFDBEntry(index: Int32, mac: MACAddress, destination: IPAddress) throws(Netlink.Error) {
        try request(
            type: RTM_NEWNEIGH, flags: NLM_F_CREATE | NLM_F_REPLACE,
            describedAs: "RTM_NEWNEIGH bridge \(mac) dst \(destination) dev #\(index)"
        ) { message in
            Self.putFDBEntry(index: index, mac: mac, destination: destination, into: &message)
        }
    }

    /// Deletes a VXLAN forwarding entry. Fails with ENOENT when there is none.
    public func deleteFDBEntry(index: Int32, mac: MACAddress, destination: IPAddress) throws(Netlink.Error) {
        try request(type: RTM_DELNEIGH, describedAs: "RTM_DELNEIGH bridge \(mac) dst \(destination) dev #\(index)") {
            message in
            Self.putFDBEntry(index: index, mac: mac, destination: destination, into: &message)
        }
    }

    /// The forwarding database entries (bridge ports' and devices' own), optionally of one link.
    public func fdbEntries(index: Int32? = nil) throws(Netlink.Error) -> [FDBEntry] {
        try dump(type: RTM_GETNEIGH, describedAs: "RTM_GETNEIGH bridge dump") { message in
            message.putFixedHeader(ndmsg(family: UInt8(AF_BRIDGE), index: 0, state: 0, flags: 0))
        }.compactMap { FDBEntry(message: $0) }.filter { index == nil || $0.index == index }
    }

    private static func putFDBEntry(
        index: Int32, mac: MACAddress, destination: IPAddress, into message: inout MessageBuilder
    ) {
        message.putFixedHeader(
            ndmsg(family: UInt8(AF_BRIDGE), index: index, state: NUD_PERMANENT, flags: UInt8(NTF_SELF)))
        message.put(NDA_LLADDR, bytes: mac.bytes)
        message.put(NDA_DST, bytes: destination.bytes)
    }
}

extension ndmsg {
    init(family: UInt8, index: Int32, state: Int32, flags: UInt8) {
        self.init()
        ndm_family = family
        ndm_ifindex = index
        ndm_state = UInt16(state)
        ndm_flags = flags
    }
}
