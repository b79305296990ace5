/// An AS number, written as an integer or in dotted `high.low` form.
public struct ASNumber: Hashable, Sendable, Codable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init?(_ text: String) {
        if let plain = UInt32(text) {
            value = plain
            return
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let high = UInt16(parts[0]), let low = UInt16(parts[1]) else { return nil }
        value = UInt32(high) << 16 | UInt32(low)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(UInt32.self) {
            value = number
            return
        }
        let text = try container.decode(String.self)
        guard let parsed = ASNumber(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "\"\(text)\" is not an AS number (0-4294967295 or dotted \"high.low\")")
            )
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }

    public var description: String { "\(value)" }
}

public enum LogSeverity: String, StringEnumeration {
    case debug = "Debug"
    case info = "Info"
    case warning = "Warning"
    case error = "Error"
    case fatal = "Fatal"
}

public struct CIDRItem: Codable, Hashable, Sendable {
    public var cidr: String
}

public struct Community: Codable, Hashable, Sendable {
    public var name: String
    public var value: String
}

public struct PrefixAdvertisement: Codable, Hashable, Sendable {
    public var cidr: String
    public var communities: [String]?
}

/// Cluster-wide (`default`) or per-node (`node.<name>`) BGP settings.
public struct BGPConfigurationSpec: ResourceSpec {
    public static var kind: ResourceKind { .bgpConfiguration }

    public static let defaultASNumber = ASNumber(64512)

    public var logSeverityScreen: LogSeverity?
    public var nodeToNodeMeshEnabled: Bool?
    public var asNumber: ASNumber?
    public var listenPort: Int?
    public var bindMode: String?
    public var serviceClusterIPs: [CIDRItem]?
    public var serviceExternalIPs: [CIDRItem]?
    public var serviceLoadBalancerIPs: [CIDRItem]?
    public var communities: [Community]?
    public var prefixAdvertisements: [PrefixAdvertisement]?
    public var nodeMeshPassword: JSONValue?
    public var nodeMeshMaxRestartTime: String?
    public var ignoredInterfaces: [String]?
    public var localWorkloadPeeringIPV4: String?
    public var localWorkloadPeeringIPV6: String?

    public init() {}

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        // Calico reads `default` (the cluster) and `node.<name>` (one node); any other name is ignored.
        if !metadata.name.isEmpty && metadata.name != "default" && !metadata.name.hasPrefix("node.") {
            validator.fail(
                "BGPConfiguration must be named \"default\" or \"node.<node name>\" (got \"\(metadata.name)\")")
        }
        if let port = listenPort, !(1...65535).contains(port) {
            validator.fail("listenPort", "must be 1-65535 (got \(port))")
        }
        if let mode = bindMode, !["None", "NodeIP"].contains(mode) {
            validator.fail("bindMode", "must be None or NodeIP (got \"\(mode)\")")
        }
        for (key, items) in [
            ("serviceClusterIPs", serviceClusterIPs), ("serviceExternalIPs", serviceExternalIPs),
            ("serviceLoadBalancerIPs", serviceLoadBalancerIPs),
        ] {
            validator.each(key, items) { validator, item in validator.validateCIDR(item.cidr, key: "cidr") }
        }
        validator.each("prefixAdvertisements", prefixAdvertisements) { validator, item in
            validator.validateCIDR(item.cidr, key: "cidr")
        }
    }
}

public typealias BGPConfiguration = Resource<BGPConfigurationSpec>

/// A BGP peer for all nodes, one node, or the nodes a selector picks.
public struct BGPPeerSpec: ResourceSpec {
    public static var kind: ResourceKind { .bgpPeer }

    public var node: String?
    public var nodeSelector: String?
    public var peerIP: String?
    public var peerSelector: String?
    public var asNumber: ASNumber?
    public var keepOriginalNextHop: Bool?
    public var password: JSONValue?
    public var sourceAddress: String?
    public var maxRestartTime: String?
    public var numAllowedLocalASNumbers: Int?
    public var ttlSecurity: Int?
    public var filters: [String]?
    public var reachableBy: String?
    public var localWorkloadSelector: String?
    public var nextHopMode: String?

    public init() {}

    /// `10.0.0.1`, `10.0.0.1:1790`, `fd00::1` or `[fd00::1]:1790`.
    public static func parsePeerIP(_ text: String) -> (address: IPAddress, port: Int?)? {
        if let address = IPAddress(text) { return (address, nil) }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[close...].dropFirst()
            guard let address = IPAddress(host), rest.hasPrefix(":"), let port = Int(rest.dropFirst()),
                (1...65535).contains(port)
            else { return nil }
            return (address, port)
        }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let port = Int(parts[1]),
            (1...65535).contains(port)
        else { return nil }
        return (address, port)
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if node != nil && nodeSelector != nil {
            validator.fail("nodeSelector", "node and nodeSelector cannot both be set")
        }
        if peerIP != nil && peerSelector != nil {
            validator.fail("peerSelector", "peerIP and peerSelector cannot both be set")
        }
        if peerIP == nil && peerSelector == nil {
            validator.fail("peerIP", "give a peerIP (with asNumber) or a peerSelector")
        }
        if let peerIP {
            if Self.parsePeerIP(peerIP) == nil {
                validator.fail("peerIP", "\"\(peerIP)\" is not an IP address, IP:port or [IPv6]:port")
            }
            if asNumber == nil { validator.fail("asNumber", "is required with peerIP") }
        }
        if peerSelector != nil && asNumber != nil {
            validator.fail("asNumber", "cannot be set with peerSelector (the selected nodes' own AS numbers are used)")
        }
        validator.validateSelector(nodeSelector, key: "nodeSelector")
        validator.validateSelector(peerSelector, key: "peerSelector")
        validator.validateSelector(localWorkloadSelector, key: "localWorkloadSelector")
        if let mode = sourceAddress, !["UseNodeIP", "None"].contains(mode) {
            validator.fail("sourceAddress", "must be UseNodeIP or None (got \"\(mode)\")")
        }
    }
}

public typealias BGPPeer = Resource<BGPPeerSpec>

/// A protocol and port (and optionally a network) that stays open whatever the policy says.
public struct ProtoPort: Codable, Hashable, Sendable {
    public var `protocol`: String
    public var port: UInt16
    public var net: String?

    public init(protocol: String, port: UInt16, net: String? = nil) {
        self.protocol = `protocol`
        self.port = port
        self.net = net
    }
}

/// The node agent's knobs. Cluster-wide as `default`, per node as `node.<name>`. Fields Tabby
/// does not model are kept as they were written, so Calico manifests round-trip unchanged.
public struct FelixConfigurationSpec: ResourceSpec {
    public static var kind: ResourceKind { .felixConfiguration }

    public var logSeverityScreen: LogSeverity?
    public var healthEnabled: Bool?
    public var healthHost: String?
    public var healthPort: Int?
    public var prometheusMetricsEnabled: Bool?
    public var prometheusMetricsHost: String?
    public var prometheusMetricsPort: Int?
    public var failsafeInboundHostPorts: [ProtoPort]?
    public var failsafeOutboundHostPorts: [ProtoPort]?
    public var defaultEndpointToHostAction: String?
    public var vxlanEnabled: Bool?
    public var vxlanPort: Int?
    public var vxlanVNI: Int?
    public var vxlanMTU: Int?
    public var bpfEnabled: Bool?
    public var nftablesMode: String?
    public var iptablesBackend: String?
    public var routeRefreshInterval: String?
    public var reportingInterval: String?
    public var interfacePrefix: String?
    /// Every other field, as written.
    public var otherFields: [String: JSONValue] = [:]

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case logSeverityScreen, healthEnabled, healthHost, healthPort, prometheusMetricsEnabled
        case prometheusMetricsHost, prometheusMetricsPort, failsafeInboundHostPorts, failsafeOutboundHostPorts
        case defaultEndpointToHostAction, vxlanEnabled, vxlanPort, vxlanVNI, vxlanMTU, bpfEnabled, nftablesMode
        case iptablesBackend, routeRefreshInterval, reportingInterval, interfacePrefix
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        logSeverityScreen = try container.decodeIfPresent(LogSeverity.self, forKey: .logSeverityScreen)
        healthEnabled = try container.decodeIfPresent(Bool.self, forKey: .healthEnabled)
        healthHost = try container.decodeIfPresent(String.self, forKey: .healthHost)
        healthPort = try container.decodeIfPresent(Int.self, forKey: .healthPort)
        prometheusMetricsEnabled = try container.decodeIfPresent(Bool.self, forKey: .prometheusMetricsEnabled)
        prometheusMetricsHost = try container.decodeIfPresent(String.self, forKey: .prometheusMetricsHost)
        prometheusMetricsPort = try container.decodeIfPresent(Int.self, forKey: .prometheusMetricsPort)
        failsafeInboundHostPorts = try container.decodeIfPresent([ProtoPort].self, forKey: .failsafeInboundHostPorts)
        failsafeOutboundHostPorts = try container.decodeIfPresent([ProtoPort].self, forKey: .failsafeOutboundHostPorts)
        defaultEndpointToHostAction = try container.decodeIfPresent(String.self, forKey: .defaultEndpointToHostAction)
        vxlanEnabled = try container.decodeIfPresent(Bool.self, forKey: .vxlanEnabled)
        vxlanPort = try container.decodeIfPresent(Int.self, forKey: .vxlanPort)
        vxlanVNI = try container.decodeIfPresent(Int.self, forKey: .vxlanVNI)
        vxlanMTU = try container.decodeIfPresent(Int.self, forKey: .vxlanMTU)
        bpfEnabled = try container.decodeIfPresent(Bool.self, forKey: .bpfEnabled)
        nftablesMode = try container.decodeIfPresent(String.self, forKey: .nftablesMode)
        iptablesBackend = try container.decodeIfPresent(String.self, forKey: .iptablesBackend)
        routeRefreshInterval = try container.decodeIfPresent(String.self, forKey: .routeRefreshInterval)
        reportingInterval = try container.decodeIfPresent(String.self, forKey: .reportingInterval)
        interfacePrefix = try container.decodeIfPresent(String.self, forKey: .interfacePrefix)
        let everything = try decoder.container(keyedBy: AnyCodingKey.self)
        for key in everything.allKeys where CodingKeys(stringValue: key.stringValue) == nil {
            otherFields[key.stringValue] = try everything.decode(JSONValue.self, forKey: key)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(logSeverityScreen, forKey: .logSeverityScreen)
        try container.encodeIfPresent(healthEnabled, forKey: .healthEnabled)
        try container.encodeIfPresent(healthHost, forKey: .healthHost)
        try container.encodeIfPresent(healthPort, forKey: .healthPort)
        try container.encodeIfPresent(prometheusMetricsEnabled, forKey: .prometheusMetricsEnabled)
        try container.encodeIfPresent(prometheusMetricsHost, forKey: .prometheusMetricsHost)
        try container.encodeIfPresent(prometheusMetricsPort, forKey: .prometheusMetricsPort)
        try container.encodeIfPresent(failsafeInboundHostPorts, forKey: .failsafeInboundHostPorts)
        try container.encodeIfPresent(failsafeOutboundHostPorts, forKey: .failsafeOutboundHostPorts)
        try container.encodeIfPresent(defaultEndpointToHostAction, forKey: .defaultEndpointToHostAction)
        try container.encodeIfPresent(vxlanEnabled, forKey: .vxlanEnabled)
        try container.encodeIfPresent(vxlanPort, forKey: .vxlanPort)
        try container.encodeIfPresent(vxlanVNI, forKey: .vxlanVNI)
        try container.encodeIfPresent(vxlanMTU, forKey: .vxlanMTU)
        try container.encodeIfPresent(bpfEnabled, forKey: .bpfEnabled)
        try container.encodeIfPresent(nftablesMode, forKey: .nftablesMode)
        try container.encodeIfPresent(iptablesBackend, forKey: .iptablesBackend)
        try container.encodeIfPresent(routeRefreshInterval, forKey: .routeRefreshInterval)
        try container.encodeIfPresent(reportingInterval, forKey: .reportingInterval)
        try container.encodeIfPresent(interfacePrefix, forKey: .interfacePrefix)
        var others = encoder.container(keyedBy: AnyCodingKey.self)
        for (key, value) in otherFields.sorted(by: { $0.key < $1.key }) {
            try others.encode(value, forKey: AnyCodingKey(key))
        }
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        for (key, port) in [
            ("healthPort", healthPort), ("prometheusMetricsPort", prometheusMetricsPort), ("vxlanPort", vxlanPort),
        ] {
            if let port, !(1...65535).contains(port) { validator.fail(key, "must be 1-65535 (got \(port))") }
        }
        if let vni = vxlanVNI, !(1...16_777_215).contains(vni) {
            validator.fail("vxlanVNI", "must be 1-16777215 (got \(vni))")
        }
        if let mtu = vxlanMTU, mtu != 0 && !(68...65535).contains(mtu) {
            validator.fail("vxlanMTU", "must be 0 (auto) or 68-65535")
        }
        for (key, ports) in [
            ("failsafeInboundHostPorts", failsafeInboundHostPorts),
            ("failsafeOutboundHostPorts", failsafeOutboundHostPorts),
        ] {
            validator.each(key, ports) { validator, item in
                if !["tcp", "udp", "sctp"].contains(item.protocol.lowercased()) {
                    validator.fail("protocol", "must be tcp, udp or sctp (got \"\(item.protocol)\")")
                }
                if let net = item.net { validator.validateCIDR(net, key: "net") }
            }
        }
        if let action = defaultEndpointToHostAction, !["Drop", "Return", "Accept"].contains(action) {
            validator.fail("defaultEndpointToHostAction", "must be Drop, Return or Accept (got \"\(action)\")")
        }
        if let mode = nftablesMode, !["Enabled", "Disabled", "Auto"].contains(mode) {
            validator.fail("nftablesMode", "must be Enabled, Disabled or Auto (got \"\(mode)\")")
        }
        if let backend = iptablesBackend, !["Auto", "Legacy", "NFT"].contains(backend) {
            validator.fail("iptablesBackend", "must be Auto, Legacy or NFT (got \"\(backend)\")")
        }
    }
}

public typealias FelixConfiguration = Resource<FelixConfigurationSpec>

/// A node's BGP identity.
public struct NodeBGPSpec: Codable, Hashable, Sendable {
    public var ipv4Address: String?
    public var ipv6Address: String?
    public var ipv4IPIPTunnelAddr: String?
    public var asNumber: ASNumber?
    public var routeReflectorClusterID: String?

    public init(ipv4Address: String? = nil, ipv6Address: String? = nil) {
        self.ipv4Address = ipv4Address
        self.ipv6Address = ipv6Address
    }
}

public struct OrchestratorReference: Codable, Hashable, Sendable {
    public var nodeName: String?
    public var orchestrator: String?
}

public struct NodeAddress: Codable, Hashable, Sendable {
    public var address: String
    public var type: String?
}

/// A node of the cluster, registered by its agent.
public struct NodeSpec: ResourceSpec {
    public static var kind: ResourceKind { .node }

    public var bgp: NodeBGPSpec?
    public var ipv4VXLANTunnelAddr: String?
    public var vxlanTunnelMACAddr: String?
    public var ipv6VXLANTunnelAddr: String?
    public var vxlanTunnelMACAddrV6: String?
    public var orchRefs: [OrchestratorReference]?
    public var addresses: [NodeAddress]?
    public var wireguard: JSONValue?

    public init() {}

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if let bgp {
            validator.at("bgp") { validator in
                // Interface addresses with their subnet: host bits are the point.
                if let text = bgp.ipv4Address, let cidr = validator.validateCIDR(text, key: "ipv4Address"),
                    cidr.family != .v4
                {
                    validator.fail("ipv4Address", "\(text) is not an IPv4 address")
                }
                if let text = bgp.ipv6Address, let cidr = validator.validateCIDR(text, key: "ipv6Address"),
                    cidr.family != .v6
                {
                    validator.fail("ipv6Address", "\(text) is not an IPv6 address")
                }
                if let text = bgp.ipv4IPIPTunnelAddr { validator.validateAddress(text, key: "ipv4IPIPTunnelAddr") }
                if let text = bgp.routeReflectorClusterID, IPv4Address(text) == nil {
                    validator.fail("routeReflectorClusterID", "\"\(text)\" must be written as an IPv4 address")
                }
            }
        }
        if let text = ipv4VXLANTunnelAddr { validator.validateAddress(text, key: "ipv4VXLANTunnelAddr") }
        if let text = ipv6VXLANTunnelAddr { validator.validateAddress(text, key: "ipv6VXLANTunnelAddr") }
        for (key, mac) in [("vxlanTunnelMACAddr", vxlanTunnelMACAddr), ("vxlanTunnelMACAddrV6", vxlanTunnelMACAddrV6)] {
            if let mac, MACAddress(mac) == nil { validator.fail(key, "\"\(mac)\" is not a MAC address") }
        }
        validator.each("addresses", addresses) { validator, item in validator.validateCIDR(item.address, key: "address")
        }
    }
}

public typealias Node = Resource<NodeSpec>
