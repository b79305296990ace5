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

/// The dataplanes compiled into this build (package traits), by `--dataplane` name.
enum Dataplanes {
    static var available: [String] {
        var names: [String] = []
        #if NFTables
            names.append("nftables")
        #endif
        return names
    }

    static func make(_ name: String) throws -> any Dataplane {
        switch name {
        #if NFTables
            case "nftables": return NftablesDataplane(committer: try NftNetlinkCommitter())
        #endif
        default:
            throw ValidationError(
                "--dataplane \(name) is not in this build; built in: \(available.joined(separator: ", "))")
        }
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

    @Option(help: "Loopback port for /liveness and /readiness (Felix uses 9099); 0 disables.")
    var healthPort: Int = 9099

    @Option(help: "Loopback port for Prometheus /metrics (Felix uses 9091); 0 disables.")
    var metricsPort: Int = 9091

    @Option(help: "Seconds between IPAM housekeeping runs (empty-block release, leak check).")
    var housekeepingSeconds: Int = 300

    @Option(help: "debug, info, warning or error.")
    var logLevel: String = "info"

    @OptionGroup var datastore: DatastoreOptions

    func validate() throws {
        guard Logger.Level(rawValue: logLevel.lowercased()) != nil else {
            throw ValidationError("--log-level \(logLevel): use debug, info, warning or error")
        }
        if let underlayAddress, RouteSyncAddress.parse(underlayAddress) == nil {
            throw ValidationError(
                "--underlay-address \(underlayAddress): use an address with a prefix length, e.g. 10.10.0.11/24")
        }
        guard housekeepingSeconds > 0 else { throw ValidationError("--housekeeping-seconds must be positive") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel.lowercased()) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tabbyd")
        let metrics = AgentMetrics()
        let configuration = AgentConfiguration(
            nodeName: nodeName, datastore: try datastore.configuration(),
            underlayAddress: underlayAddress.flatMap(RouteSyncAddress.parse),
            housekeepingInterval: .seconds(housekeepingSeconds))
        let agent = try Agent(
            configuration: configuration, dataplane: try Dataplanes.make(dataplane), metrics: metrics, logger: logger)
        var services: [any Service] = [AgentService(agent: agent)]
        for port in Set([healthPort, metricsPort]) where port > 0 {
            services.append(EndpointService(endpoints: HTTPEndpoints(metrics: metrics, port: port)))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("tabbyd starting on node \(nodeName) with the \(dataplane) dataplane")
        try await group.run()
    }
}

/// `10.10.0.11/24`, host bits kept.
enum RouteSyncAddress {
    static func parse(_ text: String) -> InterfaceAddress? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let length = Int(parts[1]),
            (0...address.bitWidth).contains(length)
        else { return nil }
        return InterfaceAddress(address, prefixLength: length)
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
