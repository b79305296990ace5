import CMNL
import TabbyCore
import Glibc

/// A network interface as the kernel reports it (RTM_NEWLINK).
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND: "veth", "vxlan", "bridge", ...; nil for devices without one (lo, physical NICs).
    public var kind: String?
    public var mtu: Int
    public var mac: MACAddress?
    /// IFF_UP: administratively up.
    public var isUp: Bool
    /// IFF_LOWER_UP: the device has carrier (for a veth: its peer is up too).
    public var hasCarrier: Bool
    /// IFLA_MASTER: the bridge (or other master) this device is enslaved to.
    public var masterIndex: Int32?
    /// IFLA_LINK: the peer of a veth or the parent of a VXLAN device (an index in `linkNetNSID`'s namespace
    /// when that is set).
    public var linkIndex: Int32?
    /// IFLA_LINK_NETNSID: the namespace ID (as seen from this namespace) where `linkIndex` lives.
    public var linkNetNSID: Int32?

    public init(
        index: Int32, name: String, kind: String? = nil, mtu: Int, mac: MACAddress? = nil, isUp: Bool,
        hasCarrier: Bool = false, masterIndex: Int32? = nil, linkIndex: Int32? = nil, linkNetNSID: Int32? = nil
    ) {
        self.index = index
        self.name = name
        self.kind = kind
        self.mtu = mtu
        self.mac = mac
        self.isUp = isUp
        self.hasCarrier = hasCarrier
        self.masterIndex = masterIndex
        self.linkIndex = linkIndex
        self.linkNetNSID = linkNetNSID
    }

    /// Decodes one RTM_NEWLINK message; nil when it is not one or lacks a name.
    init?(message: [UInt8]) {
        guard let info = fixedHeader(of: message, as: ifinfomsg.self) else { return nil }
        let attributes = Attributes(message: message, headerSize: MemoryLayout<ifinfomsg>.size)
        guard let name = attributes.string(IFLA_IFNAME) else { return nil }
        let flags = Int32(bitPattern: info.ifi_flags)
        self.init(
            index: info.ifi_index,
            name: name,
            kind: attributes.nested(IFLA_LINKINFO)?.string(IFLA_INFO_KIND),
            mtu: Int(attributes.u32(IFLA_MTU) ?? 0),
            mac: attributes[IFLA_ADDRESS].flatMap { MACAddress(bytes: $0) },
            isUp: flags & Int32(IFF_UP) != 0,
            hasCarrier: flags & RouteSocket.iffLowerUp != 0,
            masterIndex: attributes.u32(IFLA_MASTER).map { Int32(bitPattern: $0) }.flatMap { $0 == 0 ? nil : $0 },
            linkIndex: attributes.u32(IFLA_LINK).map { Int32(bitPattern: $0) },
            linkNetNSID: attributes.u32(IFLA_LINK_NETNSID).map { Int32(bitPattern: $0) }
        )
    }
}

extension RouteSocket {
    /// Every link in the socket's namespace.
    public func links() throws(Netlink.Error) -> [Link] {
        try dump(type: RTM_GETLINK, describedAs: "RTM_GETLINK dump") { message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
        }.compactMap { Link(message: $0) }
    }

    /// The link called `name`, or nil when there is none (ENODEV).
    public func link(named name: String) throws(Netlink.Error) -> Link? {
        do {
            let replies = try request(type: RTM_GETLINK, describedAs: "RTM_GETLINK \(name)") { message in
                message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
                message.put(IFLA_IFNAME, string: name)
            }
            return replies.lazy.compactMap { Link(message: $0) }.first
        } catch .kernel(errno: ENODEV, _) {
            return nil
        }
    }

    /// The link with `index`, or nil when there is none (ENODEV).
    public func link(index: Int32) throws(Netlink.Error) -> Link? {
        do {
            let replies = try request(type: RTM_GETLINK, describedAs: "RTM_GETLINK index \(index)") { message in
                message.putFixedHeader(ifinfomsg(family: AF_UNSPEC, index: index))
            }
            return replies.lazy.compactMap { Link(message: $0) }.first
        } catch .kernel(errno: ENODEV, _) {
            return nil
        }
    }

    /// Creates a veth pair. The peer is created directly in the namespace `peerNamespaceFD` refers to
    /// (an fd from `NetworkNamespace.openFD`), as the CNI plugin does for a pod's eth0. `mtu` applies to
    /// both ends. Fails with EEXIST when `name` exists (NLM_F_EXCL).
    public func createVeth(
        name: String, peerName: String, peerNamespaceFD: Int32? = nil, mtu: Int? = nil, mac: MACAddress? = nil,
        peerMAC: MACAddress? = nil
    ) throws(Netlink.Error) {
        try Self.validate(name: name)
        try Self.validate(name: peerName)
        try request(type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, describedAs: "RTM_NEWLINK veth \(name)") {
            message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
            message.put(IFLA_IFNAME, string: name)
            if let mtu { message.put(IFLA_MTU, u32: UInt32(mtu)) }
            if let mac { message.put(IFLA_ADDRESS, bytes: mac.bytes) }
            let linkInfo = message.beginNest(IFLA_LINKINFO)
            message.put(IFLA_INFO_KIND, string: "veth")
            let data = message.beginNest(IFLA_INFO_DATA)
            // VETH_INFO_PEER holds a whole ifinfomsg followed by the peer's own attributes.
            let peer = message.beginNest(VETH_INFO_PEER)
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
            message.put(IFLA_IFNAME, string: peerName)
            if let peerNamespaceFD { message.put(IFLA_NET_NS_FD, u32: UInt32(bitPattern: peerNamespaceFD)) }
            if let mtu { message.put(IFLA_MTU, u32: UInt32(mtu)) }
            if let peerMAC { message.put(IFLA_ADDRESS, bytes: peerMAC.bytes) }
            message.endNest(peer)
            message.endNest(data)
            message.endNest(linkInfo)
        }
    }

    /// Creates a VXLAN device (Calico's `vxlan.calico`: VNI 4096, port 4789, learning off). `local` is the
    /// source address of the encapsulated packets and `parentIndex` the underlay device.
    public func createVXLAN(
        name: String, vni: UInt32, port: UInt16 = 4789, local: IPAddress? = nil, parentIndex: Int32? = nil,
        mtu: Int? = nil, learning: Bool = false, mac: MACAddress? = nil
    ) throws(Netlink.Error) {
        try Self.validate(name: name)
        try request(type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, describedAs: "RTM_NEWLINK vxlan \(name)") {
            message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
            message.put(IFLA_IFNAME, string: name)
            if let mtu { message.put(IFLA_MTU, u32: UInt32(mtu)) }
            if let mac { message.put(IFLA_ADDRESS, bytes: mac.bytes) }
            let linkInfo = message.beginNest(IFLA_LINKINFO)
            message.put(IFLA_INFO_KIND, string: "vxlan")
            let data = message.beginNest(IFLA_INFO_DATA)
            message.put(IFLA_VXLAN_ID, u32: vni)
            if let local {
                let type = local.isIPv4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6
                message.put(type, bytes: local.bytes)
            }
            if let parentIndex { message.put(IFLA_VXLAN_LINK, u32: UInt32(bitPattern: parentIndex)) }
            message.put(IFLA_VXLAN_PORT, be16: port)
            message.put(IFLA_VXLAN_LEARNING, u8: learning ? 1 : 0)
            message.endNest(data)
            message.endNest(linkInfo)
        }
    }

    /// Creates a Linux bridge.
    public func createBridge(name: String, mtu: Int? = nil) throws(Netlink.Error) {
        try Self.validate(name: name)
        try request(type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, describedAs: "RTM_NEWLINK bridge \(name)") {
            message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
            message.put(IFLA_IFNAME, string: name)
            if let mtu { message.put(IFLA_MTU, u32: UInt32(mtu)) }
            let linkInfo = message.beginNest(IFLA_LINKINFO)
            message.put(IFLA_INFO_KIND, string: "bridge")
            message.endNest(linkInfo)
        }
    }

    /// Changes what is given and leaves the rest: admin state, MTU, MAC, name (kernels before 6.2 refuse
    /// to rename a link that is up: EBUSY), master (`masterIndex: 0` releases the link from its bridge).
    public func setLink(
        index: Int32, up: Bool? = nil, mtu: Int? = nil, mac: MACAddress? = nil, name: String? = nil,
        masterIndex: Int32? = nil
    ) throws(Netlink.Error) {
        if let name { try Self.validate(name: name) }
        var changes: [String] = []
        if let up { changes.append(up ? "up" : "down") }
        if let mtu { changes.append("mtu \(mtu)") }
        if let mac { changes.append("address \(mac)") }
        if let name { changes.append("name \(name)") }
        if let masterIndex { changes.append(masterIndex == 0 ? "nomaster" : "master #\(masterIndex)") }
        try request(type: RTM_NEWLINK, describedAs: "RTM_NEWLINK dev #\(index) \(changes.joined(separator: " "))") {
            message in
            var info = ifinfomsg(family: AF_UNSPEC, index: index)
            if let up {
                info.ifi_change = UInt32(IFF_UP)
                info.ifi_flags = up ? UInt32(IFF_UP) : 0
            }
            message.putFixedHeader(info)
            if let mtu { message.put(IFLA_MTU, u32: UInt32(mtu)) }
            if let mac { message.put(IFLA_ADDRESS, bytes: mac.bytes) }
            if let name { message.put(IFLA_IFNAME, string: name) }
            if let masterIndex { message.put(IFLA_MASTER, u32: UInt32(bitPattern: masterIndex)) }
        }
    }

    /// Deletes a link (a veth takes its peer with it). Fails with ENODEV when there is none.
    public func deleteLink(index: Int32) throws(Netlink.Error) {
        try request(type: RTM_DELLINK, describedAs: "RTM_DELLINK dev #\(index)") { message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC, index: index))
        }
    }

    /// Deletes the link called `name`. Idempotent: returns false when it was already gone.
    @discardableResult
    public func deleteLink(named name: String) throws(Netlink.Error) -> Bool {
        do {
            try request(type: RTM_DELLINK, describedAs: "RTM_DELLINK \(name)") { message in
                message.putFixedHeader(ifinfomsg(family: AF_UNSPEC))
                message.put(IFLA_IFNAME, string: name)
            }
            return true
        } catch .kernel(errno: ENODEV, _) {
            return false
        }
    }

    /// Moves a link into the namespace `toNamespaceFD` refers to. It leaves this socket's view.
    public func moveLink(index: Int32, toNamespaceFD namespaceFD: Int32) throws(Netlink.Error) {
        try request(type: RTM_NEWLINK, describedAs: "RTM_NEWLINK dev #\(index) netns fd \(namespaceFD)") { message in
            message.putFixedHeader(ifinfomsg(family: AF_UNSPEC, index: index))
            message.put(IFLA_NET_NS_FD, u32: UInt32(bitPattern: namespaceFD))
        }
    }

    /// Interface names are at most IFNAMSIZ-1 (15) bytes, without "/" or whitespace.
    static func validate(name: String) throws(Netlink.Error) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count < Int(IFNAMSIZ), name != ".", name != "..",
            !bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: ":") })
        else {
            throw .invalidArgument("interface name \"\(name)\" must be 1-15 bytes without '/', ':' or spaces")
        }
    }
}

extension ifinfomsg {
    init(family: Int32, index: Int32 = 0) {
        self.init()
        ifi_family = UInt8(family)
        ifi_index = index
    }
}

extension RouteSocket {
    /// IFF_LOWER_UP lives in <linux/if.h>, which cannot be imported next to glibc's <net/if.h>.
    static let iffLowerUp: Int32 = 1 << 16
}
