import Foundation
import Synchronization
import TabbyDataplane

/// What tabbyd exposes on `/metrics` (Prometheus text format 0.0.4), and what `/readiness`
/// reflects. Updated by the agent's loops; read by the HTTP endpoint.
public final class AgentMetrics: Sendable {
    struct Values {
        var ready = false
        var readyReason = "not synced yet"
        var applies = 0
        var applyErrors = 0
        var applySecondsSum = 0.0
        var lastApplySeconds = 0.0
        var convergenceSecondsSum = 0.0
        var convergences = 0
        var lastConvergenceSeconds = 0.0
        var endpoints = 0
        var localEndpoints = 0
        var policies = 0
        var ipSets = 0
        var routes = 0
        var routeErrors = 0
        var resyncs = 0
        var leakedAddresses = 0
        /// False when a supervised process (BIRD) stopped answering: `/liveness` fails.
        var live = true
        var liveReason = ""
        /// nil when BIRD is not in use.
        var birdUp: Bool?
        var birdRestarts = 0
    }

    // Mutex: the agent's tasks write, the HTTP server's event loop reads.
    private let values = Mutex(Values())
    /// Asked at each scrape: the dataplane's health and packet counters.
    private let dataplaneStatus = Mutex<(@Sendable () -> DataplaneStatus)?>(nil)

    public init() {}

    @discardableResult
    func update<T>(_ body: (inout Values) -> T) -> T { values.withLock { body(&$0) } }

    /// Where `/metrics` reads the dataplane's health and packet counters from (the agent sets it).
    public func setDataplaneStatus(_ provider: @escaping @Sendable () -> DataplaneStatus) {
        dataplaneStatus.withLock { $0 = provider }
    }

    public var isReady: (Bool, String) { values.withLock { ($0.ready, $0.readyReason) } }

    public var isLive: (Bool, String) { values.withLock { ($0.live, $0.liveReason) } }

    public var prometheusText: String {
        let v = values.withLock { $0 }
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double) -> String {
            "# HELP tabby_\(name) \(help)\n# TYPE tabby_\(name) \(type)\ntabby_\(name) \(value)\n"
        }
        return [
            metric("dataplane_applies_total", "counter", "Dataplane applies done.", Double(v.applies)),
            metric("dataplane_apply_errors_total", "counter", "Dataplane applies that failed.", Double(v.applyErrors)),
            metric(
                "dataplane_apply_seconds_sum", "counter", "Time spent in dataplane applies.", v.applySecondsSum),
            metric(
                "dataplane_last_apply_seconds", "gauge", "Duration of the last dataplane apply.", v.lastApplySeconds),
            metric(
                "convergence_seconds_sum", "counter",
                "From the agent taking a batch of datastore changes to the dataplane having applied it.",
                v.convergenceSecondsSum),
            metric(
                "convergence_total", "counter", "Changes applied (for the average convergence).", Double(v.convergences)
            ),
            metric(
                "last_convergence_seconds", "gauge", "Convergence time of the last change.", v.lastConvergenceSeconds),
            metric("endpoints", "gauge", "Workload endpoints known cluster-wide.", Double(v.endpoints)),
            metric("local_endpoints", "gauge", "Workload endpoints on this node.", Double(v.localEndpoints)),
            metric("active_policies", "gauge", "Policies selecting at least one endpoint.", Double(v.policies)),
            metric("ip_sets", "gauge", "IP sets in the compiled policy.", Double(v.ipSets)),
            metric("routes", "gauge", "Routes to other nodes' blocks programmed.", Double(v.routes)),
            metric("route_errors_total", "counter", "Route programming failures.", Double(v.routeErrors)),
            metric("resyncs_total", "counter", "Full resyncs from the datastore.", Double(v.resyncs)),
            metric(
                "ipam_leaked_addresses", "gauge", "Leaked addresses found by the last IPAM check.",
                Double(v.leakedAddresses)),
            metric("ready", "gauge", "1 once the first sync has been applied.", v.ready ? 1 : 0),
        ].joined()
            + (v.birdUp.map { up in
                [
                    metric("bird_up", "gauge", "1 while BIRD answers its control socket.", up ? 1 : 0),
                    metric("bird_restarts_total", "counter", "BIRD restarts after it exited.", Double(v.birdRestarts)),
                ].joined()
            } ?? "")
            + (dataplaneStatus.withLock { $0 }.map { provider in
                let status = provider()
                var text = metric(
                    "dataplane_healthy", "gauge", "1 while the dataplane reports itself healthy.",
                    status.healthy ? 1 : 0)
                if let flows = status.trackedFlows {
                    text += metric(
                        "dataplane_tracked_flows", "gauge", "Connections in the dataplane's own conntrack (eBPF).",
                        Double(flows))
                }
                guard !status.packets.isEmpty else { return text }
                text += "# HELP tabby_dataplane_packets_total Packets the dataplane passed or dropped, by reason.\n"
                text += "# TYPE tabby_dataplane_packets_total counter\n"
                for (reason, packets) in status.packets.sorted(by: { $0.key < $1.key }) {
                    text += "tabby_dataplane_packets_total{reason=\"\(reason)\"} \(packets)\n"
                }
                return text
            } ?? "")
    }
}
