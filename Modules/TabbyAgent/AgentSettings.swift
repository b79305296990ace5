import Logging
import TabbyCore
import TabbyDataplane
import TabbyStore

/// Felix's knobs, from the FelixConfiguration resources: `default`, then `node.<name>` on top (as
/// Calico layers them). Read at start; like Felix, tabbyd applies a change when it restarts.
public struct AgentSettings: Sendable, Hashable {
    public var dataplane = DataplaneConfiguration.calicoDefaults
    public var healthEnabled = true
    public var healthPort = 9099
    public var metricsEnabled = true
    public var metricsPort = 9091
    public var logLevel: Logger.Level?
    public var vxlanVNI: UInt32 = 4096
    public var vxlanPort: UInt16 = 4789
    /// nil: the underlay's MTU minus 50.
    public var vxlanMTU: Int?

    public init() {}

    public static func load(store: any KeyValueStore, nodeName: String) async throws -> AgentSettings {
        let resources = ResourceClient(store: store)
        var settings = AgentSettings()
        for name in ["default", "node.\(nodeName)"] {
            if let configuration = try await resources.get(FelixConfiguration.self, name: name) {
                settings.apply(configuration.spec)
            }
        }
        return settings
    }

    mutating func apply(_ spec: FelixConfigurationSpec) {
        func ports(_ list: [ProtoPort]) -> [DataplaneConfiguration.FailsafePort] {
            list.compactMap { entry in
                let known = IPProtocol.knownNames.first { $0.name.lowercased() == entry.protocol.lowercased() }
                return known.map { DataplaneConfiguration.FailsafePort(protocolNumber: $0.number, port: entry.port) }
            }
        }
        if let list = spec.failsafeInboundHostPorts { dataplane.failsafeInbound = ports(list) }
        if let list = spec.failsafeOutboundHostPorts { dataplane.failsafeOutbound = ports(list) }
        if let prefix = spec.interfacePrefix, !prefix.isEmpty {
            // Felix takes a comma-separated list; Tabby dispatches on the first.
            dataplane.workloadInterfacePrefix = String(prefix.split(separator: ",")[0])
        }
        if let action = spec.defaultEndpointToHostAction,
            let parsed = DataplaneConfiguration.EndpointToHostAction(rawValue: action.capitalized)
        {
            dataplane.endpointToHostAction = parsed
        }
        if let enabled = spec.healthEnabled { healthEnabled = enabled }
        if let port = spec.healthPort { healthPort = port }
        if let enabled = spec.prometheusMetricsEnabled { metricsEnabled = enabled }
        if let port = spec.prometheusMetricsPort { metricsPort = port }
        if let severity = spec.logSeverityScreen {
            switch severity {
            case .debug: logLevel = .debug
            case .info: logLevel = .info
            case .warning: logLevel = .warning
            case .error, .fatal: logLevel = .error
            }
        }
        if let vni = spec.vxlanVNI, vni > 0 { vxlanVNI = UInt32(vni) }
        if let port = spec.vxlanPort, (1...65535).contains(port) { vxlanPort = UInt16(port) }
        if let mtu = spec.vxlanMTU, mtu > 0 { vxlanMTU = mtu }
    }
}
