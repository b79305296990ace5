import TabbyAgent
import TabbyCore
import TabbyDataplane
import TabbyStore
import TabbyTestSupport
import Testing

@Suite("tabbyd's FelixConfiguration knobs")
struct AgentSettingsTests {
    @Test func defaultsAreFelixs() async throws {
        let settings = try await AgentSettings.load(store: InMemoryStore(), nodeName: "n1")
        #expect(settings.healthPort == 9099 && settings.metricsPort == 9091)
        #expect(settings.dataplane.endpointToHostAction == .drop)
        #expect(settings.dataplane.workloadInterfacePrefix == "cali")
        #expect(settings.vxlanVNI == 4096 && settings.vxlanPort == 4789 && settings.vxlanMTU == nil)
    }

    @Test func theNodesConfigurationOverridesTheDefault() async throws {
        let store = InMemoryStore()
        let client = ResourceClient(store: store)
        var base = FelixConfigurationSpec()
        base.healthPort = 9199
        base.failsafeInboundHostPorts = [ProtoPort(protocol: "TCP", port: 22), ProtoPort(protocol: "UDP", port: 68)]
        base.defaultEndpointToHostAction = "Accept"
        base.logSeverityScreen = .debug
        base.vxlanVNI = 4097
        try await client.create(AnyResource(FelixConfiguration(metadata: ObjectMeta(name: "default"), spec: base)))
        var node = FelixConfigurationSpec()
        node.healthPort = 9299
        node.interfacePrefix = "tap,cali"
        node.prometheusMetricsEnabled = false
        try await client.create(AnyResource(FelixConfiguration(metadata: ObjectMeta(name: "node.n1"), spec: node)))

        let settings = try await AgentSettings.load(store: store, nodeName: "n1")
        #expect(settings.healthPort == 9299)
        #expect(!settings.metricsEnabled)
        #expect(settings.dataplane.failsafeInbound.map { "\($0.protocolNumber)/\($0.port)" } == ["6/22", "17/68"])
        #expect(settings.dataplane.endpointToHostAction == .accept)
        #expect(settings.dataplane.workloadInterfacePrefix == "tap")
        #expect(settings.logLevel == .debug)
        #expect(settings.vxlanVNI == 4097)
        // Another node sees only the default.
        let other = try await AgentSettings.load(store: store, nodeName: "n2")
        #expect(other.healthPort == 9199 && other.metricsEnabled && other.dataplane.workloadInterfacePrefix == "cali")
    }
}
