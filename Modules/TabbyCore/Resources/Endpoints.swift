/// A named port on an endpoint, which rules can match by name.
public struct EndpointPort: Codable, Hashable, Sendable {
    public var name: String
    public var `protocol`: IPProtocol
    public var port: UInt16
    public var hostPort: UInt16?
    public var hostIP: String?

    public init(name: String, protocol: IPProtocol, port: UInt16) {
        self.name = name
        self.protocol = `protocol`
        self.port = port
    }
}

extension Validator {
    mutating func validatePorts(_ ports: [EndpointPort]?) {
        each("ports", ports) { validator, port in
            if let problem = Port.problem(withName: port.name) { validator.fail("name", problem) }
            if let problem = port.protocol.problem {
                validator.fail("protocol", problem)
            } else if !port.protocol.supportsPorts {
                validator.fail("protocol", "a named port needs protocol TCP, UDP or SCTP")
            }
            if port.port == 0 { validator.fail("port", "must be 1-65535") }
            if let hostIP = port.hostIP { validator.validateAddress(hostIP, key: "hostIP") }
        }
    }
}

/// A namespaced set of networks that rule selectors can select by its labels.
public struct NetworkSetSpec: ResourceSpec {
    public static var kind: ResourceKind { .networkSet }
    public var nets: [String]?
    public init() {}
    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validator.validateCIDRs(nets, key: "nets")
    }
}

/// A cluster-wide set of networks that rule selectors can select by its labels.
public struct GlobalNetworkSetSpec: ResourceSpec {
    public static var kind: ResourceKind { .globalNetworkSet }
    public var nets: [String]?
    public var allowedEgressDomains: [String]?
    public init() {}
    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validator.validateCIDRs(nets, key: "nets")
    }
}

public typealias NetworkSet = Resource<NetworkSetSpec>
public typealias GlobalNetworkSet = Resource<GlobalNetworkSetSpec>

/// A host's interface (or all of them, `interfaceName: "*"`) under policy.
public struct HostEndpointSpec: ResourceSpec {
    public static var kind: ResourceKind { .hostEndpoint }

    public var node: String?
    public var interfaceName: String?
    public var expectedIPs: [String]?
    public var profiles: [String]?
    public var ports: [EndpointPort]?

    public init() {}

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if node == nil || node == "" { validator.fail("node", "is required") }
        if (interfaceName ?? "").isEmpty && (expectedIPs ?? []).isEmpty {
            validator.fail("interfaceName", "give an interfaceName (\"*\" for all) or expectedIPs")
        }
        if let name = interfaceName, name != "*", let problem = interfaceNameProblem(name) {
            validator.fail("interfaceName", problem)
        }
        validator.each("expectedIPs", expectedIPs) { validator, text in validator.validateAddress(text) }
        validator.validatePorts(ports)
    }
}

public typealias HostEndpoint = Resource<HostEndpointSpec>

/// Linux interface names: 1-15 bytes, no '/', no whitespace, not "." or "..".
func interfaceNameProblem(_ name: String) -> String? {
    if name.isEmpty || name.utf8.count > 15 { return "interface name \"\(name)\" must be 1-15 characters" }
    if name == "." || name == ".." || name.contains("/") || name.contains(where: \.isWhitespace) {
        return "\"\(name)\" is not a valid interface name"
    }
    return nil
}

public struct IPNAT: Codable, Hashable, Sendable {
    public var internalIP: String
    public var externalIP: String
}

/// A pod's (or container's) interface, written by the CNI plugin on ADD.
public struct WorkloadEndpointSpec: ResourceSpec {
    public static var kind: ResourceKind { .workloadEndpoint }

    public var orchestrator: String?
    public var workload: String?
    public var node: String?
    public var containerID: String?
    public var pod: String?
    public var endpoint: String?
    public var serviceAccountName: String?
    public var ipNetworks: [String]?
    public var ipNATs: [IPNAT]?
    public var ipv4Gateway: String?
    public var ipv6Gateway: String?
    public var profiles: [String]?
    public var interfaceName: String?
    public var mac: String?
    public var ports: [EndpointPort]?
    public var allowSpoofedSourcePrefixes: [String]?

    public init() {}

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if let name = interfaceName, let problem = interfaceNameProblem(name) {
            validator.fail("interfaceName", problem)
        }
        validator.validateCIDRs(ipNetworks, key: "ipNetworks")
        validator.validateCIDRs(allowSpoofedSourcePrefixes, key: "allowSpoofedSourcePrefixes")
        validator.each("ipNATs", ipNATs) { validator, nat in
            validator.validateAddress(nat.internalIP, key: "internalIP")
            validator.validateAddress(nat.externalIP, key: "externalIP")
        }
        if let gateway = ipv4Gateway { validator.validateAddress(gateway, key: "ipv4Gateway") }
        if let gateway = ipv6Gateway { validator.validateAddress(gateway, key: "ipv6Gateway") }
        if let mac, MACAddress(mac) == nil { validator.fail("mac", "\"\(mac)\" is not a MAC address") }
        validator.validatePorts(ports)
    }
}

public typealias WorkloadEndpoint = Resource<WorkloadEndpointSpec>
