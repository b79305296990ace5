import Foundation
import Logging
import Synchronization
import TabbyCore
import TabbyDataplane
import TabbyIPAM
import TabbyNetlink
import TabbyPolicy
import TabbyStore

/// What tabbyd needs to run on one node.
public struct AgentConfiguration: Sendable {
    public var nodeName: String
    public var datastore: DatastoreConfiguration
    /// The node's address on the underlay (`10.10.0.11/24`); found from the default route's
    /// interface when nil.
    public var underlayAddress: InterfaceAddress?
    /// How often the IPAM leak check and empty-block release run.
    public var housekeepingInterval: Duration
    /// How long a change may wait to be batched with the next ones before it is applied.
    public var batchWindow: Duration
    /// How routes to other nodes' blocks are made.
    public var routing: RoutingMode = .vxlan

    public init(
        nodeName: String, datastore: DatastoreConfiguration, underlayAddress: InterfaceAddress? = nil,
        housekeepingInterval: Duration = .seconds(300), batchWindow: Duration = .milliseconds(5)
    ) {
        self.nodeName = nodeName
        self.datastore = datastore
        self.underlayAddress = underlayAddress
        self.housekeepingInterval = housekeepingInterval
        self.batchWindow = batchWindow
    }
}

/// How routes to other nodes' blocks are made.
public enum RoutingMode: Sendable, Hashable {
    /// tabbyd programs every route itself, per pool `vxlanMode`: VXLAN (`Always`, `CrossSubnet`
    /// across subnets) or a direct route through the other node (`Never`, same subnet).
    case vxlan
    /// BIRD distributes and programs the routes of `vxlanMode: Never` pools over BGP (full mesh,
    /// route reflectors, the operator's routers); tabbyd still programs VXLAN pools' tunnels.
    case bgp(BIRDOptions)
}

/// The node agent (Calico's Felix): keeps the dataplane and the routes equal to what the
/// datastore says, incrementally. Start-up reconciles what it finds in the kernel instead of
/// rebuilding it, so established connections keep flowing across a restart.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    public let dataplane: any Dataplane
    public let metrics: AgentMetrics
    let logger: Logger
    let store: any KeyValueStore
    let routes: RouteSync
    let bgp: BGPRouting?

    public init(
        configuration: AgentConfiguration, dataplane: any Dataplane, metrics: AgentMetrics, logger: Logger,
        settings: AgentSettings = AgentSettings(), store: (any KeyValueStore)? = nil
    ) throws {
        self.configuration = configuration
        self.dataplane = dataplane
        self.metrics = metrics
        metrics.setDataplaneStatus { dataplane.status() }
        self.logger = logger
        self.store = try store ?? configuration.datastore.makeStore()
        if case .bgp(let options) = configuration.routing {
            bgp = BGPRouting(
                nodeName: configuration.nodeName, options: options,
                workloadInterfacePrefix: settings.dataplane.workloadInterfacePrefix, logger: logger, metrics: metrics)
        } else {
            bgp = nil
        }
        routes = RouteSync(
            nodeName: configuration.nodeName, logger: logger, vni: settings.vxlanVNI, port: settings.vxlanPort,
            mtu: settings.vxlanMTU, directRoutes: bgp == nil)
    }

    /// Registers the node, syncs, then follows the datastore until cancelled.
    public func run() async throws {
        let underlay = try configuration.underlayAddress ?? RouteSync.defaultRouteAddress()
        try await registerNode(underlay: underlay)
        async let housekeeping: Void = runHousekeeping()
        async let supervision: Void = bgp?.supervisor.supervise() ?? ()
        defer { logger.info("tabbyd stopping", metadata: ["node": "\(configuration.nodeName)"]) }
        var sync = PolicySync(
            nodeName: configuration.nodeName, dataplane: dataplane, metrics: metrics, logger: logger)
        while !Task.isCancelled {
            do {
                let revision = try await fullSync(&sync, underlay: underlay)
                try await follow(&sync, after: revision, underlay: underlay)
            } catch is CancellationError {
                break
            } catch {
                metrics.update {
                    $0.ready = false
                    $0.readyReason = "\(error)"
                }
                logger.error("sync failed, retrying in 1 s: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
        _ = await housekeeping
        _ = await supervision
        bgp?.supervisor.stop()
    }

    /// The Node resource: created if missing, its underlay address kept current.
    func registerNode(underlay: InterfaceAddress) async throws {
        let resources = ResourceClient(store: store)
        let address = "\(underlay.address)/\(underlay.prefixLength)"
        for _ in 0..<10 {
            if var node = try await resources.get(Node.self, name: configuration.nodeName) {
                if node.spec.bgp?.ipv4Address == address { return }
                var bgp = node.spec.bgp ?? NodeBGPSpec()
                bgp.ipv4Address = address
                node.spec.bgp = bgp
                do {
                    _ = try await resources.replace(AnyResource(node))
                    return
                } catch {
                    guard case .conflict = error else { throw error }
                }
            } else {
                var spec = NodeSpec()
                var bgp = NodeBGPSpec()
                bgp.ipv4Address = address
                spec.bgp = bgp
                do {
                    _ = try await resources.create(
                        AnyResource(Node(metadata: ObjectMeta(name: configuration.nodeName), spec: spec)))
                    logger.info("registered node \(configuration.nodeName) at \(address)")
                    return
                } catch {
                    guard case .alreadyExists = error else { throw error }
                }
            }
        }
        throw AgentError("could not register node \(configuration.nodeName): the Node resource kept changing")
    }

    /// Lists everything, rebuilds the engine, reconciles the dataplane and the routes; returns
    /// the revision to watch after.
    func fullSync(_ sync: inout PolicySync, underlay: InterfaceAddress) async throws -> Revision {
        let (items, revision) = try await store.list(prefix: "/tabby/")
        // NAT first: the dataplane's first reconcile then expects exactly what a previous run made.
        try await updateOutgoingNAT()
        try await updateOverlayPeers()
        try sync.resync(items: items)
        try await routes.sync(store: store, underlay: underlay, metrics: metrics)
        try await bgp?.sync(store: store)
        metrics.update {
            $0.ready = true
            $0.readyReason = "synced at revision \(revision)"
            $0.resyncs += 1
        }
        logger.info("synced at revision \(revision)")
        return revision
    }

    /// Applies changes as they come, in small batches; returns when the store asks for a resync.
    func follow(_ sync: inout PolicySync, after revision: Revision, underlay: InterfaceAddress) async throws {
        let events = store.watch(prefix: "/tabby/", after: revision)
        // A pump task buffers events; the loop below wakes on the first, waits the batch window so
        // that a burst (many pods at once) becomes one apply, then takes everything buffered.
        let buffer = Mutex<(events: [WatchEvent], error: String?)>(([], nil))
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let pump = Task {
            do {
                for try await event in events {
                    buffer.withLock { $0.events.append(event) }
                    signal.yield()
                }
            } catch {
                buffer.withLock { $0.error = "\(error)" }
            }
            signal.finish()
        }
        defer { pump.cancel() }
        for await _ in signals {
            try await Task.sleep(for: configuration.batchWindow)
            let batch = buffer.withLock { state -> [WatchEvent] in
                let taken = state.events
                state.events = []
                return taken
            }
            if batch.isEmpty { continue }
            if batch.contains(where: { if case .resyncRequired = $0 { return true } else { return false } }) {
                logger.warning("the datastore compacted history this agent had not seen: resyncing")
                return
            }
            let routingChanged = try sync.apply(batch)
            if routingChanged {
                try await updateOutgoingNAT()
                try await updateOverlayPeers()
                try await routes.sync(store: store, underlay: underlay, metrics: metrics)
                try await bgp?.sync(store: store)
            }
        }
        if let error = buffer.withLock({ $0.error }) { throw AgentError("the datastore watch ended: \(error)") }
    }

    /// Pools with `natOutgoing` masquerade traffic to outside every pool.
    func updateOutgoingNAT() async throws {
        let pools = try await ResourceClient(store: store).list(IPPool.self).filter { $0.spec.disabled != true }
        let all = pools.compactMap { CIDR($0.spec.cidr) }
        let nat = pools.filter { $0.spec.natOutgoing == true }.compactMap { CIDR($0.spec.cidr) }
        try dataplane.setOutgoingNAT(OutgoingNAT(natPools: nat, allPools: all))
    }

    /// The other nodes' underlay addresses (their Node's `bgp.ipv4Address`, as `RouteSync` reads
    /// them): their VXLAN traffic passes ahead of host endpoint policy, as in Calico.
    func updateOverlayPeers() async throws {
        let nodes = try await ResourceClient(store: store).list(Node.self)
        let addresses = nodes.filter { $0.metadata.name != configuration.nodeName }.compactMap { node in
            node.spec.bgp?.ipv4Address.flatMap(InterfaceAddress.init(parsing:))?.address
        }
        try dataplane.setOverlayPeers(OverlayPeers(addresses: Set(addresses), vxlanPort: routes.port))
    }

    /// Periodic IPAM housekeeping (Calico's kube-controllers does this): release empty blocks
    /// after a grace period and report leaked addresses.
    func runHousekeeping() async {
        let ipam = IPAM(store: store)
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.housekeepingInterval)
            if Task.isCancelled { return }
            do {
                let released = try await ipam.releaseEmptyBlocks(olderThan: .seconds(900))
                if !released.isEmpty { logger.info("released empty blocks \(released)") }
                let report = try await ipam.check(gracePeriod: .seconds(900))
                metrics.update { $0.leakedAddresses = report.leaked.count }
                if !report.leaked.isEmpty {
                    logger.warning(
                        "IPAM check found \(report.leaked.count) leaked address(es); free them with tabbyctl ipam release"
                    )
                }
            } catch {
                logger.error("IPAM housekeeping failed: \(error)")
            }
        }
    }
}

public struct AgentError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
