import Synchronization
import TabbyAgent
import TabbyDataplane
import Testing

@Suite("tabbyd's /metrics")
struct AgentMetricsTests {
    @Test func dataplaneHealthAndPacketCountersAreExposedAtEachScrape() {
        let metrics = AgentMetrics()
        #expect(!metrics.prometheusText.contains("tabby_dataplane_healthy"))
        let status = Mutex(
            DataplaneStatus(
                healthy: true, detail: "ok", packets: ["policy_deny": 3, "conntrack_hit": 120], trackedFlows: 7))
        metrics.setDataplaneStatus { status.withLock { $0 } }
        let text = metrics.prometheusText
        #expect(text.contains("tabby_dataplane_healthy 1.0\n"))
        #expect(text.contains("tabby_dataplane_tracked_flows 7.0\n"))
        #expect(text.contains("# TYPE tabby_dataplane_packets_total counter\n"))
        #expect(text.contains("tabby_dataplane_packets_total{reason=\"conntrack_hit\"} 120\n"))
        #expect(text.contains("tabby_dataplane_packets_total{reason=\"policy_deny\"} 3\n"))
        // Read again at the next scrape, not cached.
        status.withLock {
            $0.healthy = false
            $0.packets["policy_deny"] = 4
        }
        let later = metrics.prometheusText
        #expect(later.contains("tabby_dataplane_healthy 0.0\n"))
        #expect(later.contains("tabby_dataplane_packets_total{reason=\"policy_deny\"} 4\n"))
    }

    @Test func backendsWithoutCountersExposeOnlyHealth() {
        let metrics = AgentMetrics()
        metrics.setDataplaneStatus { DataplaneStatus(healthy: true, detail: "nftables") }
        let text = metrics.prometheusText
        #expect(text.contains("tabby_dataplane_healthy 1.0\n"))
        #expect(!text.contains("tabby_dataplane_packets_total") && !text.contains("tracked_flows"))
    }
}
