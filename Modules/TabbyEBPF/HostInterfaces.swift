import TabbyCore
import TabbyPolicy

/// Which host endpoint polices which host interface of the node, as Felix resolves them: an
/// interface named by a host endpoint's `interfaceName` gets that endpoint; otherwise one whose
/// `expectedIPs` the interface holds (a host endpoint without `interfaceName`); otherwise the
/// `interfaceName: "*"` endpoint, if there is one. Host interfaces are every interface of the
/// namespace but `lo` and those with the workload prefix (Calico's eBPF mode narrows this further
/// with `BPFDataIfacePattern`; Tabby has no such setting yet).
///
/// Ties go to the first endpoint in key order; the losers, and endpoints that match no interface,
/// are reported with the reason (`unattached`): their policy is then enforced nowhere.
public struct HostInterfaceAssignment: Equatable, Sendable {
    /// One interface of the node's namespace, with its IPv4 and IPv6 addresses.
    public struct Interface: Equatable, Sendable {
        public var name: String
        public var index: Int32
        public var addresses: [IPAddress]

        public init(name: String, index: Int32, addresses: [IPAddress]) {
            self.name = name
            self.index = index
            self.addresses = addresses
        }
    }

    /// ifindex -> the host endpoint that polices it.
    public var endpoints: [Int32: EndpointKey] = [:]
    /// Host endpoints that police no interface, and why.
    public var unattached: [EndpointKey: String] = [:]

    public init(
        _ hostEndpoints: [EndpointProgram], interfaces: [Interface], workloadInterfacePrefix: String
    ) {
        let hosts = interfaces.filter { $0.name != "lo" && !$0.name.hasPrefix(workloadInterfacePrefix) }
        let ordered = hostEndpoints.filter { $0.kind == .host }.sorted { $0.endpoint < $1.endpoint }
        var named: [String: EndpointKey] = [:]
        for endpoint in ordered {
            guard let name = endpoint.interfaceName, name != "*" else { continue }
            if let first = named[name] {
                unattached[endpoint.endpoint] = "interface \(name) is already \(first)'s"
            } else if !hosts.contains(where: { $0.name == name }) {
                unattached[endpoint.endpoint] =
                    interfaces.contains(where: { $0.name == name })
                    ? "\(name) is not a host interface (lo or a workload's)" : "no interface \(name) on the node"
            } else {
                named[name] = endpoint.endpoint
            }
        }
        let byAddress = ordered.filter { $0.interfaceName == nil }
        let wildcard = ordered.filter { $0.interfaceName == "*" }
        for extra in wildcard.dropFirst() {
            unattached[extra.endpoint] = "interface * is already \(wildcard[0].endpoint)'s"
        }
        for interface in hosts {
            if let key = named[interface.name] {
                endpoints[interface.index] = key
            } else if let match = byAddress.first(where: { !Set($0.addresses).isDisjoint(with: interface.addresses) }) {
                endpoints[interface.index] = match.endpoint
            } else if let any = wildcard.first {
                endpoints[interface.index] = any.endpoint
            }
        }
        let used = Set(endpoints.values)
        for endpoint in byAddress + wildcard.prefix(1) where !used.contains(endpoint.endpoint) {
            unattached[endpoint.endpoint] =
                endpoint.interfaceName == "*"
                ? "no host interface without a host endpoint of its own"
                : endpoint.addresses.isEmpty
                    ? "neither interfaceName nor expectedIPs"
                    : "no host interface holds its expectedIPs (\(endpoint.addresses.map(\.description).joined(separator: ", ")))"
        }
    }

    /// The interfaces `endpoint` polices.
    public func interfaces(of endpoint: EndpointKey) -> [Int32] {
        endpoints.filter { $0.value == endpoint }.keys.sorted()
    }

    /// The addresses the node's namespace answers to, for `tabby_host_addrs`: every IPv4 address of
    /// every interface, the broadcast address of each subnet wider than /31, and 255.255.255.255.
    public static func hostAddresses(_ addresses: [(address: IPv4Address, prefixLength: Int)]) -> Set<IPv4Address> {
        var result: Set<IPv4Address> = [IPv4Address(0xffff_ffff)]
        for (address, length) in addresses {
            result.insert(address)
            if length < 31 { result.insert(IPv4Address(address.value | (UInt32.max >> UInt32(length)))) }
        }
        return result
    }
}
