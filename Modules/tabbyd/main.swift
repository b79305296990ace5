// tabbyd: the node agent. Parses flags, bootstraps logging, and runs the agent and its health
// and metrics endpoints as services that shut down cleanly on SIGTERM.
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TabbyAgent
import TabbyCommands
import TabbyCore
import TabbyDataplane
import TabbyNetlink

#if NFTables
    import TabbyNftables
#endif
#if IPTables
    import TabbyIptables
#endif
#if EBPF
    import TabbyEBPF
#endif

/// The dataplanes compiled into this build (package traits), by `--dataplane` name.
enum Dataplanes {
    static var available: [String] {
        var names: [String] = []
        #if NFTables
            names.append("nftables")
        #endif
        #if IPTables
            names.append("iptables")
        #endif
        #if EBPF
            names.append("ebpf")
        #endif
        return names
    }

    static func make(_ name: String, node: String, bpfPinRoot: String, configuration: DataplaneConfiguration)
        throws -> any Dataplane
    {
        switch name {
        #if NFTables
            case "nftables":
                return NftablesDataplane(committer: try NftNetlinkCommitter(), configuration: configuration)
        #endif
        #if IPTables
            case "iptables":
                // The host's flavour (`iptables -V`), or TABBY_IPTABLES_BACKEND=nft|legacy.
                return try IptablesDataplane(configuration: configuration)
        #endif
        #if EBPF
            case "ebpf":
                // Pinned per node, so a restarted agent reuses its maps (conntrack, policy tables).
                // natOutgoing through netfilter's masquerade when nftables is in the build.
                var outgoingNAT: (any OutgoingNATProgrammer)? = nil
                #if NFTables
                    outgoingNAT = NftOutgoingNAT(committer: try NftNetlinkCommitter())
                #endif
                let dataplane = try EBPFDataplane(
                    pinRoot: "\(bpfPinRoot)/\(node)", namespacePath: nil, configuration: configuration,
                    outgoingNAT: outgoingNAT)
                // A new pod's veth gets the program (dropping) as netlink reports it, not at the next apply.
                try dataplane.watchInterfaces()
                dataplane.startConntrackScanner()
                return dataplane
        #endif
        default:
            throw ValidationError(
                "--dataplane \(name) is not in this build; built in: \(available.joined(separator: ", "))")
        }
    }

    /// Removes what the other compiled-in backends left on this node (a node moved from one
    /// `--dataplane` to another): their rules would go on enforcing the old policy beside the new.
    /// The nftables table is left to the chosen backend: nftables adopts it, eBPF's natOutgoing
    /// replaces it on its first write. Returns what it removed and what it could not.
    static func removeOthers(
        keeping name: String, node: String, bpfPinRoot: String, configuration: DataplaneConfiguration
    ) -> [String] {
        var report: [String] = []
        #if EBPF
            if name != "ebpf" {
                do {
                    report += try EBPFDataplane.removeLeftovers(
                        namespacePath: nil,
                        pinRoot: "\(bpfPinRoot)/\(node)"
                    ).map { "eBPF: removed \($0)" }
                } catch {
                    report.append("eBPF leftovers not removed: \(error)")
                }
            }
        #endif
        #if IPTables
            // Only where an iptables binary exists: a node without one has no iptables leftovers.
            if name != "iptables", let iptables = try? IptablesDataplane(configuration: configuration) {
                do {
                    if try iptables.hasTabbyState() {
                        try iptables.removeEverything()
                        report.append("iptables: removed Tabby's cali- chains and ipsets")
                    }
                } catch {
                    report.append("iptables leftovers not removed: \(error)")
                }
            }
        #endif
        #if NFTables
            if name == "iptables" {
                do {
                    let committer = try NftNetlinkCommitter()
                    if try committer.readBack() != nil {
                        try committer.deleteTable()
                        report.append("nftables: removed table inet tabby")
                    }
                } catch {
                    report.append("nftables leftovers not removed: \(error)")
                }
            }
        #endif
        return report
    }
}

@main
struct Tabbyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tabbyd",
        abstract: "Tabby's node agent: programs policy and routes for the pods on this node.",
        discussion: """
            Runs in the node's network namespace. Registers the node, follows the datastore, keeps
            the dataplane and the routes to other nodes' blocks in step with it, and serves
            /liveness, /readiness (HTTP 503 until the first sync is applied) and /metrics on
            loopback. SIGTERM stops it cleanly; a restart adopts the rules it finds instead of
            rebuilding them.
            """)

    @Option(help: "This node's name (default: the host name).")
    var nodeName: String = ProcessInfo.processInfo.hostName

    @Option(help: "The policy dataplane: one of the backends compiled into this build.")
    var dataplane: String = "nftables"

    @Option(
        help:
            "This node's underlay address with prefix length, e.g. 10.10.0.11/24 (default: the address of the default route's interface)."
    )
    var underlayAddress: String?

    @Option(
        help:
            "Loopback port for /liveness and /readiness; 0 disables (default: FelixConfiguration healthPort, else 9099)."
    )
    var healthPort: Int?

    @Option(
        help:
            "Loopback port for Prometheus /metrics; 0 disables (default: FelixConfiguration prometheusMetricsPort, else 9091)."
    )
    var metricsPort: Int?

    @Option(
        help:
            "vxlan: tabbyd programs routes per pool vxlanMode. bgp: BIRD runs beside tabbyd and routes vxlanMode Never pools over BGP."
    )
    var routing: String = "vxlan"

    @Option(help: "BGP mode: BIRD's configuration, control socket (bird.ctl), pid file and log go here.")
    var birdRunDir: String = BIRDOptions.defaultRunDirectory

    @Option(
        help:
            "eBPF dataplane: maps and programs are pinned under <root>/<node name>, so a restarted tabbyd reuses them (conntrack included)."
    )
    var bpfPinRoot: String = "/sys/fs/bpf/tabby"

    @Option(help: "Seconds between IPAM housekeeping runs (empty-block release, leak check).")
    var housekeepingSeconds: Int = 300

    @Option(help: "debug, info, warning or error (default: FelixConfiguration logSeverityScreen, else info).")
    var logLevel: String?

    @OptionGroup var datastore: DatastoreOptions

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel.lowercased()) == nil {
            throw ValidationError("--log-level \(logLevel): use debug, info, warning or error")
        }
        if let underlayAddress, InterfaceAddress(parsing: underlayAddress) == nil {
            throw ValidationError(
                "--underlay-address \(underlayAddress): use an address with a prefix length, e.g. 10.10.0.11/24")
        }
        guard ["vxlan", "bgp"].contains(routing) else {
            throw ValidationError("--routing \(routing): use vxlan or bgp")
        }
        guard bpfPinRoot.hasPrefix("/") else {
            throw ValidationError("--bpf-pin-root \(bpfPinRoot): use an absolute path on a bpf filesystem")
        }
        guard housekeepingSeconds > 0 else { throw ValidationError("--housekeeping-seconds must be positive") }
    }

    func run() async throws {
        let datastoreConfiguration = try datastore.configuration()
        let store = try datastoreConfiguration.makeStore()
        // Felix's knobs from the datastore (FelixConfiguration default, then node.<name>); flags win.
        let settings = try await AgentSettings.load(store: store, nodeName: nodeName)
        let level = logLevel.flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? settings.logLevel ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tabbyd")
        let metrics = AgentMetrics()
        var configuration = AgentConfiguration(
            nodeName: nodeName, datastore: datastoreConfiguration,
            underlayAddress: underlayAddress.flatMap { InterfaceAddress(parsing: $0) },
            housekeepingInterval: .seconds(housekeepingSeconds))
        if routing == "bgp" { configuration.routing = .bgp(BIRDOptions(runDirectory: birdRunDir)) }
        for line in Dataplanes.removeOthers(
            keeping: dataplane, node: nodeName, bpfPinRoot: bpfPinRoot, configuration: settings.dataplane)
        {
            logger.info("another dataplane's leftovers: \(line)")
        }
        let made = try Dataplanes.make(
            dataplane, node: nodeName, bpfPinRoot: bpfPinRoot, configuration: settings.dataplane)
        #if EBPF
            // An upgrade from an older Tabby: its maps of another layout were made anew.
            if let ebpf = made as? EBPFDataplane, !ebpf.program.replacedPins.isEmpty {
                logger.warning(
                    "pinned maps of an older layout replaced (their entries are rewritten): \(ebpf.program.replacedPins.joined(separator: ", "))"
                )
            }
        #endif
        let agent = try Agent(
            configuration: configuration,
            dataplane: made,
            metrics: metrics,
            logger: logger, settings: settings, store: store)
        var services: [any Service] = [AgentService(agent: agent)]
        let health = healthPort ?? (settings.healthEnabled ? settings.healthPort : 0)
        let metricsAt = metricsPort ?? (settings.metricsEnabled ? settings.metricsPort : 0)
        for port in Set([health, metricsAt]) where port > 0 {
            services.append(EndpointService(endpoints: HTTPEndpoints(metrics: metrics, port: port)))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info(
            "tabbyd starting on node \(nodeName) with the \(dataplane) dataplane, \(routing) routing (health on \(health), metrics on \(metricsAt))"
        )
        try await group.run()
    }
}

struct AgentService: Service {
    let agent: Agent
    func run() async throws {
        try await cancelWhenGracefulShutdown { try await agent.run() }
    }
}

struct EndpointService: Service {
    let endpoints: HTTPEndpoints
    func run() async throws {
        try await cancelWhenGracefulShutdown { try await endpoints.run() }
    }
}
