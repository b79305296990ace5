import TabbyCore

/// What one node's BGP speaker should do, computed from the cluster's resources as Calico's confd
/// computes it: the node's identity (address, AS, route reflector cluster), and its sessions.
///
/// - **Node-to-node mesh** (`BGPConfiguration default`, `nodeToNodeMeshEnabled`, default true): a
///   session to every other node with an IPv4 address, except route reflectors (a node with
///   `routeReflectorClusterID`) and except on a route reflector itself. The mesh is one-way: the
///   node with the higher address waits (`passive`), so two nodes never race two connections.
/// - **BGPPeer** with `peerIP`: every node it applies to (`node`, `nodeSelector`, or all nodes when
///   neither is set, which Calico calls a global peer) peers with that address.
/// - **BGPPeer** with `peerSelector`: the nodes it applies to peer with the nodes the selector
///   picks, and the picked nodes peer back (Calico's peerings are bidirectional); this is how
///   route reflectors are configured.
///
/// A second session to an address (and port) already peered is dropped: the first kept is the
/// mesh's, then global peers', then node-specific ones'.
public struct BGPTopology: Hashable, Sendable {
    public var nodeName: String
    public var routerID: IPAddress
    public var address: IPAddress
    public var asNumber: ASNumber
    public var listenPort: Int?
    public var routeReflectorClusterID: String?
    public var sessions: [BGPSession]

    /// Everything the topology is computed from.
    public struct Inputs: Sendable {
        public var nodeName: String
        /// BGPConfiguration `default`, if there is one.
        public var configuration: BGPConfigurationSpec?
        public var nodes: [Node]
        public var peers: [BGPPeer]

        public init(nodeName: String, configuration: BGPConfigurationSpec?, nodes: [Node], peers: [BGPPeer]) {
            self.nodeName = nodeName
            self.configuration = configuration
            self.nodes = nodes
            self.peers = peers
        }
    }

    public init(_ inputs: Inputs) throws(RoutingError) {
        nodeName = inputs.nodeName
        guard let node = inputs.nodes.first(where: { $0.metadata.name == inputs.nodeName }) else {
            throw .nodeNotRegistered(inputs.nodeName)
        }
        guard let own = Self.ipv4Address(of: node) else { throw .noIPv4Address(inputs.nodeName) }
        let globalAS = inputs.configuration?.asNumber ?? BGPConfigurationSpec.defaultASNumber
        address = own
        routerID = own
        let nodeAS = node.spec.bgp?.asNumber ?? globalAS
        let listenPort = inputs.configuration?.listenPort
        asNumber = nodeAS
        self.listenPort = listenPort
        let clusterID = Self.clusterID(of: node)
        routeReflectorClusterID = clusterID

        var sessions: [BGPSession] = []
        var seen = Set<String>()
        func add(_ session: BGPSession) {
            guard session.address != own, seen.insert("\(session.address):\(session.port ?? 179)").inserted else {
                return
            }
            sessions.append(session)
        }
        func reflectorClient(peerAS: ASNumber, peerClusterID: String?) -> String? {
            guard let clusterID, peerAS == nodeAS, peerClusterID != clusterID else { return nil }
            return clusterID
        }
        let others = inputs.nodes.filter { $0.metadata.name != inputs.nodeName }
            .sorted { $0.metadata.name < $1.metadata.name }

        if inputs.configuration?.nodeToNodeMeshEnabled ?? true, clusterID == nil {
            for other in others {
                guard let peerAddress = Self.ipv4Address(of: other), Self.clusterID(of: other) == nil else { continue }
                add(
                    BGPSession(
                        kind: .mesh, address: peerAddress, port: listenPort,
                        asNumber: other.spec.bgp?.asNumber ?? globalAS, sourceAddress: own,
                        passive: peerAddress > own, routeReflectorClusterID: nil, peerName: other.metadata.name))
            }
        }

        func applies(_ peer: BGPPeerSpec, to candidate: Node) -> Bool {
            if let name = peer.node { return name == candidate.metadata.name }
            if let text = peer.nodeSelector, let selector = try? Selector.parse(text) {
                return selector.matches(candidate.metadata.labels ?? [:])
            }
            return true
        }
        func picked(_ peer: BGPPeerSpec, _ candidate: Node) -> Bool {
            guard let text = peer.peerSelector, let selector = try? Selector.parse(text) else { return false }
            return selector.matches(candidate.metadata.labels ?? [:])
        }
        // Global peers first, then node-specific ones, each in name order (stable output).
        let ordered = inputs.peers.sorted { lhs, rhs in
            let (l, r) = (Self.isGlobal(lhs.spec), Self.isGlobal(rhs.spec))
            return l != r ? l : lhs.metadata.name < rhs.metadata.name
        }
        for peer in ordered {
            let spec = peer.spec
            if let text = spec.peerIP, let (peerAddress, port) = BGPPeerSpec.parsePeerIP(text),
                peerAddress.family == .v4, let peerAS = spec.asNumber
            {
                guard applies(spec, to: node) else { continue }
                let peerNode = others.first { Self.ipv4Address(of: $0) == peerAddress }
                add(
                    BGPSession(
                        kind: Self.isGlobal(spec) ? .global : .nodeSpecific, address: peerAddress, port: port,
                        asNumber: peerAS, sourceAddress: spec.sourceAddress == "None" ? nil : own,
                        passive: false,
                        routeReflectorClusterID: reflectorClient(
                            peerAS: peerAS, peerClusterID: peerNode.flatMap(Self.clusterID)),
                        peerName: peer.metadata.name))
            } else if spec.peerSelector != nil {
                // This node applies the peer: sessions to the nodes it picks. This node is picked:
                // sessions back to the nodes it applies to.
                let targets =
                    (applies(spec, to: node) ? others.filter { picked(spec, $0) } : [])
                    + (picked(spec, node) ? others.filter { applies(spec, to: $0) } : [])
                for target in targets {
                    guard let peerAddress = Self.ipv4Address(of: target) else { continue }
                    let peerAS = target.spec.bgp?.asNumber ?? globalAS
                    add(
                        BGPSession(
                            kind: .nodeSpecific, address: peerAddress, port: listenPort, asNumber: peerAS,
                            sourceAddress: spec.sourceAddress == "None" ? nil : own, passive: false,
                            routeReflectorClusterID: reflectorClient(
                                peerAS: peerAS, peerClusterID: Self.clusterID(of: target)),
                            peerName: target.metadata.name))
                }
            }
        }
        self.sessions = sessions
    }

    static func isGlobal(_ spec: BGPPeerSpec) -> Bool { spec.node == nil && spec.nodeSelector == nil }

    static func ipv4Address(of node: Node) -> IPAddress? {
        guard let text = node.spec.bgp?.ipv4Address,
            let address = IPAddress(String(text.split(separator: "/").first ?? "")), address.family == .v4
        else { return nil }
        return address
    }

    static func clusterID(of node: Node) -> String? {
        guard let id = node.spec.bgp?.routeReflectorClusterID, !id.isEmpty else { return nil }
        return id
    }
}

/// One BGP session of a node, rendered as one BIRD `protocol bgp`.
public struct BGPSession: Hashable, Sendable {
    /// The peer types `calicoctl node status` shows.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case mesh = "node-to-node mesh"
        case global = "global"
        case nodeSpecific = "node specific"

        /// The protocol name prefix, as Calico names them (`Mesh_10_0_0_2`, `Global_...`, `Node_...`).
        public var protocolPrefix: String {
            switch self {
            case .mesh: "Mesh"
            case .global: "Global"
            case .nodeSpecific: "Node"
            }
        }
    }

    public var kind: Kind
    public var address: IPAddress
    public var port: Int?
    public var asNumber: ASNumber
    /// The local address of the TCP connection (nil: the kernel chooses).
    public var sourceAddress: IPAddress?
    /// Wait for the peer to connect (the one-way mesh).
    public var passive: Bool
    /// Set when this node reflects the peer's routes: the cluster ID it reflects with.
    public var routeReflectorClusterID: String?
    /// The Node or BGPPeer this session comes from (shown in BIRD's description).
    public var peerName: String

    /// `Mesh_10_10_0_12`, `Global_10_0_0_1_port_1790`: unique per address and port.
    public var name: String {
        var name = "\(kind.protocolPrefix)_" + address.description.replacingOccurrences(of: ".", with: "_")
        if let port { name += "_port_\(port)" }
        return name
    }

    /// The peer's address and type from a protocol name this renderer made (for `node status`).
    public static func parse(protocolName: String) -> (kind: Kind, address: String)? {
        for kind in Kind.allCases where protocolName.hasPrefix(kind.protocolPrefix + "_") {
            var rest = String(protocolName.dropFirst(kind.protocolPrefix.count + 1))
            var port = ""
            if let range = rest.range(of: "_port_") {
                port = ":" + rest[range.upperBound...]
                rest = String(rest[..<range.lowerBound])
            }
            let address = rest.replacingOccurrences(of: "_", with: ".")
            guard IPAddress(address) != nil else { return nil }
            return (kind, address + port)
        }
        return nil
    }
}

/// Why a node's routing configuration cannot be made.
public enum RoutingError: Error, Hashable, Sendable, CustomStringConvertible {
    case nodeNotRegistered(String)
    case noIPv4Address(String)
    case bird(String)

    public var description: String {
        switch self {
        case .nodeNotRegistered(let name):
            "node \(name) has no Node resource yet (tabbyd registers it at start)"
        case .noIPv4Address(let name):
            "node \(name) has no spec.bgp.ipv4Address: BGP needs the node's address (tabbyd --underlay-address)"
        case .bird(let message): message
        }
    }
}
