import Foundation
import Logging
import TabbyCore
import TabbyIPAM
import TabbyNetlink
import TabbyStore

/// Routes to other nodes' blocks (Calico's VXLAN mode, REFERENCE.md section 7): `vxlan.calico`
/// (VNI 4096, UDP 4789, MTU of the underlay minus 50) with a tunnel address from IPAM, and per
/// remote block a route through the remote tunnel address on-link, a permanent neighbour for
/// that address and a bridge FDB entry sending its MAC to the remote node's underlay address.
/// Pools with `vxlanMode: Never` route blocks directly through the remote node's underlay
/// address; `CrossSubnet` encapsulates only towards nodes on another subnet.
///
/// Every route it makes carries Tabby's route protocol (85); reconciling deletes only routes with
/// that protocol on the VXLAN device or the underlay interface, never anything else.
final class RouteSync: Sendable {
    static let device = "vxlan.calico"

    let nodeName: String
    let logger: Logger
    /// FelixConfiguration's vxlanVNI, vxlanPort, vxlanMTU (nil: underlay MTU - 50).
    let vni: UInt32
    let port: UInt16
    let mtu: Int?
    /// False in BGP mode: BIRD routes the `vxlanMode: Never` pools, tabbyd only tunnels.
    let directRoutes: Bool

    init(
        nodeName: String, logger: Logger, vni: UInt32 = 4096, port: UInt16 = 4789, mtu: Int? = nil,
        directRoutes: Bool = true
    ) {
        self.nodeName = nodeName
        self.logger = logger
        self.vni = vni
        self.port = port
        self.mtu = mtu
        self.directRoutes = directRoutes
    }

    /// The address (with its prefix length) of the interface the default route leaves through.
    static func defaultRouteAddress() throws -> InterfaceAddress {
        let socket = try RouteSocket()
        guard
            let route = try socket.routes(family: .ipv4).first(where: {
                $0.destination.prefixLength == 0 && $0.outputIndex != nil
            }), let index = route.outputIndex,
            let address = try socket.addresses(index: index, family: .ipv4).first?.address
        else {
            throw AgentError(
                "cannot find this node's underlay address: no IPv4 default route with an addressed interface; pass --underlay-address"
            )
        }
        return address
    }

    struct RemoteNode {
        var name: String
        var underlay: InterfaceAddress
        var tunnelAddress: IPAddress?
        var tunnelMAC: MACAddress?
    }

    func sync(store: any KeyValueStore, underlay: InterfaceAddress, metrics: AgentMetrics) async throws {
        let resources = ResourceClient(store: store)
        let pools = try await resources.list(IPPool.self).filter { $0.spec.disabled != true }
        let nodes = try await resources.list(Node.self)
        let affinities = try await IPAM(store: store).allAffinities().filter { $0.state == .confirmed }
        let socket = try RouteSocket()
        guard let underlayLink = try Self.link(of: underlay.address, socket: socket) else {
            throw AgentError("no interface holds the underlay address \(underlay.address)")
        }

        let needsVXLAN = pools.contains { ($0.spec.vxlanMode ?? .never) != .never }
        var tunnel: (address: IPAddress, mac: MACAddress, index: Int32)?
        if needsVXLAN {
            tunnel = try await ensureTunnel(
                resources: resources, store: store, underlay: underlay, underlayLink: underlayLink, socket: socket)
        }

        var remote: [String: RemoteNode] = [:]
        for node in nodes where node.metadata.name != nodeName {
            guard let text = node.spec.bgp?.ipv4Address, let address = InterfaceAddress(parsing: text) else {
                continue
            }
            remote[node.metadata.name] = RemoteNode(
                name: node.metadata.name, underlay: address,
                tunnelAddress: node.spec.ipv4VXLANTunnelAddr.flatMap(IPAddress.init),
                tunnelMAC: node.spec.vxlanTunnelMACAddr.flatMap(MACAddress.init))
        }

        var wanted: [Route] = []
        var neighbours: [IPAddress: MACAddress] = [:]
        var fdb: [MACAddress: IPAddress] = [:]
        for affinity in affinities where affinity.node != nodeName && affinity.cidr.family == .v4 {
            guard let node = remote[affinity.node],
                let pool = pools.first(where: { CIDR($0.spec.cidr)?.contains(affinity.cidr) == true })
            else { continue }
            let mode = pool.spec.vxlanMode ?? .never
            if mode == .never && !directRoutes { continue }
            let sameSubnet =
                CIDR(network: node.underlay.address, prefixLength: underlay.prefixLength)
                == CIDR(network: underlay.address, prefixLength: underlay.prefixLength)
            if mode == .always || (mode == .crossSubnet && !sameSubnet) {
                guard let tunnel, let remoteTunnel = node.tunnelAddress, let mac = node.tunnelMAC else {
                    logger.info("node \(node.name) has no VXLAN tunnel yet; its block \(affinity.cidr) waits")
                    continue
                }
                wanted.append(
                    Route(destination: affinity.cidr, gateway: remoteTunnel, outputIndex: tunnel.index, onLink: true))
                neighbours[remoteTunnel] = mac
                fdb[mac] = node.underlay.address
            } else if sameSubnet {
                wanted.append(
                    Route(destination: affinity.cidr, gateway: node.underlay.address, outputIndex: underlayLink))
            } else {
                logger.warning(
                    "block \(affinity.cidr) of node \(node.name) is on another subnet and pool \(pool.metadata.name) has vxlanMode Never: no route"
                )
            }
        }

        // Routes: add or replace what is wanted, delete ours that are not.
        let managed = Set([underlayLink] + (tunnel.map { [$0.index] } ?? []))
        // Ours: Tabby's protocol, through the tunnel or the underlay, to a block of some pool.
        let poolCIDRs = pools.compactMap { CIDR($0.spec.cidr) }
        let existing = try socket.routes(family: .ipv4, protocol: Netlink.tabbyRouteProtocol).filter { route in
            (route.outputIndex.map(managed.contains) ?? false) && poolCIDRs.contains { $0.contains(route.destination) }
        }
        var errors = 0
        for route in wanted {
            do { try socket.addRoute(route, replace: true) } catch {
                errors += 1
                logger.error("route \(route.destination): \(error)")
            }
        }
        for route in existing where !wanted.contains(where: { $0.destination == route.destination }) {
            do { try socket.deleteRoute(route) } catch { logger.error("removing route \(route.destination): \(error)") }
        }
        if let tunnel {
            for (address, mac) in neighbours {
                try socket.addNeighbour(index: tunnel.index, address: address, mac: mac, permanent: true, replace: true)
            }
            for (mac, destination) in fdb {
                try socket.addFDBEntry(index: tunnel.index, mac: mac, destination: destination)
            }
            for neighbour in try socket.neighbours(index: tunnel.index, family: .ipv4)
            where neighbour.isPermanent && neighbours[neighbour.address] == nil {
                try? socket.deleteNeighbour(index: tunnel.index, address: neighbour.address)
            }
            for entry in try socket.fdbEntries(index: tunnel.index)
            where entry.isPermanent && entry.destination != nil && fdb[entry.mac] == nil {
                try? socket.deleteFDBEntry(index: tunnel.index, mac: entry.mac, destination: entry.destination!)
            }
        }
        metrics.update {
            $0.routes = wanted.count
            $0.routeErrors += errors
        }
    }

    /// The VXLAN device with this node's tunnel address and MAC (recorded on the Node resource,
    /// where the other nodes read them).
    func ensureTunnel(
        resources: ResourceClient, store: any KeyValueStore, underlay: InterfaceAddress, underlayLink: Int32,
        socket: RouteSocket
    ) async throws -> (address: IPAddress, mac: MACAddress, index: Int32) {
        guard var node = try await resources.get(Node.self, name: nodeName) else {
            throw AgentError("node \(nodeName) is not registered")
        }
        var address = node.spec.ipv4VXLANTunnelAddr.flatMap(IPAddress.init)
        var mac = node.spec.vxlanTunnelMACAddr.flatMap(MACAddress.init)
        if address == nil || mac == nil {
            let ipam = IPAM(store: store)
            let handle = "vxlan-tunnel-addr-\(nodeName)"
            let held = try await ipam.addresses(handleID: handle)
            if let first = held.first {
                address = first
            } else {
                address = try await ipam.assign(
                    AssignmentRequest(handleID: handle, node: nodeName, type: "vxlanTunnelAddress")
                )
                .first?.address
            }
            mac = mac ?? MACAddress.randomLocallyAdministered()
            node.spec.ipv4VXLANTunnelAddr = address?.description
            node.spec.vxlanTunnelMACAddr = mac?.description
            _ = try await resources.replace(AnyResource(node))
            logger.info("VXLAN tunnel address \(address?.description ?? "-"), MAC \(mac?.description ?? "-")")
        }
        guard let address, let mac else { throw AgentError("no VXLAN tunnel address could be assigned") }
        let underlayMTU = try socket.link(index: underlayLink)?.mtu ?? 1500
        if let existing = try socket.link(named: Self.device), existing.mac != mac || existing.kind != "vxlan" {
            try socket.deleteLink(index: existing.index)
        }
        if try socket.link(named: Self.device) == nil {
            try socket.createVXLAN(
                name: Self.device, vni: vni, port: port, local: underlay.address, parentIndex: underlayLink,
                mtu: mtu ?? underlayMTU - 50, learning: false, mac: mac)
        }
        guard let link = try socket.link(named: Self.device) else { throw AgentError("\(Self.device) did not appear") }
        try socket.addAddress(InterfaceAddress(address, prefixLength: 32), index: link.index, replace: true)
        try socket.setLink(index: link.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
        return (address, mac, link.index)
    }

    static func link(of address: IPAddress, socket: RouteSocket) throws -> Int32? {
        try socket.addresses(family: address.family == .v4 ? .ipv4 : .ipv6).first { $0.address.address == address }?
            .index
    }

}
