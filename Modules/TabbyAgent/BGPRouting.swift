import Logging
import TabbyCore
import TabbyIPAM
import TabbyRouting
import TabbyStore

/// tabbyd's BGP mode (Calico's confd + BIRD): renders this node's BIRD configuration from the
/// BGPConfiguration `default`, the BGPPeers, the Nodes, the IPPools and this node's confirmed
/// blocks, and hands it to the supervisor, which loads it into BIRD when it changed.
final class BGPRouting: Sendable {
    let nodeName: String
    let workloadInterfacePrefix: String
    let supervisor: BIRDSupervisor
    let logger: Logger

    init(nodeName: String, options: BIRDOptions, workloadInterfacePrefix: String, logger: Logger, metrics: AgentMetrics)
    {
        self.nodeName = nodeName
        self.workloadInterfacePrefix = workloadInterfacePrefix
        self.logger = logger
        supervisor = BIRDSupervisor(options: options, logger: logger, metrics: metrics)
    }

    func sync(store: any KeyValueStore) async throws {
        let resources = ResourceClient(store: store)
        let configuration = try await resources.get(BGPConfiguration.self, name: "default")
        let inputs = BGPTopology.Inputs(
            nodeName: nodeName, configuration: configuration?.spec, nodes: try await resources.list(Node.self),
            peers: try await resources.list(BGPPeer.self))
        let topology = try BGPTopology(inputs)
        let pools = BIRDConfiguration.Pool.from(try await resources.list(IPPool.self))
        let blocks = try await IPAM(store: store).allAffinities()
            .filter { $0.node == nodeName && $0.state == .confirmed }.map(\.cidr)
        let text = BIRDConfiguration.render(
            topology: topology, pools: pools, blocks: blocks, workloadInterfacePrefix: workloadInterfacePrefix)
        try supervisor.apply(configuration: text)
    }
}
