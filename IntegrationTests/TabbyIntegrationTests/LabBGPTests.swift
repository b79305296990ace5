import Foundation
import TabbyDataplaneConformance
import TabbyTestSupport
import Testing

let birdInstalled =
    FileManager.default.isExecutableFile(atPath: "/usr/sbin/bird")
    && FileManager.default.isExecutableFile(atPath: "/usr/sbin/birdc")

/// The lab without an overlay: `tabbyctl lab up --routing bgp` (pool `vxlanMode: Never`, BIRD
/// beside every tabbyd, full mesh), the Kubernetes cases across nodes over BGP-learned routes,
/// BIRD's supervision, and a route-reflector topology.
@Suite(
    "lab over BGP",
    .enabled(if: isRoot, "creates network namespaces and runs tabbyd and BIRD: needs root"),
    .enabled(if: birdInstalled, "needs BIRD 2 (apt-get install bird2; tools/test installs it)"), .serialized)
struct LabBGPTests {
    typealias LabRun = LabEndToEndTests.LabRun

    static func inNode(_ node: Int, _ command: [String]) throws -> ChildProcess.Result {
        try ChildProcess.run("/usr/bin/nsenter", ["--net=/run/netns/tabby-lab-node-\(node)"] + command)
    }

    static func birdc(_ run: LabRun, node: Int, _ command: String) throws -> String {
        try ChildProcess.run(
            "/usr/sbin/birdc",
            ["-s", "\(run.stateDirectory)/bird-node-\(node)/bird.ctl"] + command.split(separator: " ").map(String.init)
        ).stdout
    }

    /// `tabbyctl node status -o json` for a lab node: its peers as dictionaries.
    static func sessions(_ run: LabRun, node: Int) throws -> [[String: Any]] {
        let result = try run.tabbyctl([
            "node", "status", "--bird-socket", "\(run.stateDirectory)/bird-node-\(node)/bird.ctl", "-o", "json",
        ])
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return object?["peers"] as? [[String: Any]] ?? []
    }

    /// Polls until every session of the node is Established with the expected peers (BGP's
    /// connect retry is 3 s), or 20 s pass; returns the last sessions seen.
    static func established(_ run: LabRun, node: Int, peers: Set<String>) throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(20)
        var last: [[String: Any]] = []
        while Date() < deadline {
            last = try sessions(run, node: node)
            if Set(last.compactMap { $0["peerAddress"] as? String }) == peers,
                last.allSatisfy({ $0["info"] as? String == "Established" })
            {
                return last
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        return last
    }

    static func address(of added: ChildProcess.Result) -> String {
        added.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    }

    @Test func kubernetesCasesAcrossTwoNodesOverBGP() throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "2", "--routing", "bgp"])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        try run.apply(LabEndToEndTests.namespaces())
        var index = 0
        for namespace in ["x", "y", "z"] {
            for pod in ["a", "b", "c"] {
                let added = try run.lab([
                    "pod", "add", "\(namespace)/\(pod)", "--node", "\(index % 2 + 1)", "--labels", "pod=\(pod)",
                ])
                index += 1
                try #require(added.status == 0, "pod add: \(added.stdout) \(added.stderr)")
            }
        }
        let mesh1 = try Self.established(run, node: 1, peers: ["10.10.0.12"])
        #expect(mesh1.first?["peerType"] as? String == "node-to-node mesh", "\(mesh1)")
        #expect(mesh1.first?["info"] as? String == "Established", "\(mesh1)")
        #expect(try Self.established(run, node: 2, peers: ["10.10.0.11"]).count == 1)

        #expect(try run.converge() == "")
        let open = try run.lab(["probe", "-o", "json"])
        let results =
            (try JSONSerialization.jsonObject(with: Data(open.stdout.utf8)) as? [String: Any])?["results"]
            as? [[String: Any]] ?? []
        #expect(results.count == 9 * 8 * 4)
        #expect(results.allSatisfy { $0["connected"] as? Bool == true })

        // The routes to the other node's block are BIRD's, straight over the underlay: no tunnel,
        // none of tabbyd's own (protocol 85) through eth0.
        for (node, other) in [(1, "10.10.0.12"), (2, "10.10.0.11")] {
            let routes = try Self.inNode(node, ["/usr/sbin/ip", "route", "show", "proto", "bird"]).stdout
            #expect(routes.contains("via \(other) dev eth0"), "node-\(node):\n\(routes)")
            #expect(routes.contains("blackhole"), "node-\(node) has its block as a blackhole:\n\(routes)")
            #expect(
                try Self.inNode(node, ["/usr/sbin/ip", "route", "show", "proto", "85", "dev", "eth0"]).stdout.isEmpty)
            #expect(try Self.inNode(node, ["/usr/sbin/ip", "link", "show", "vxlan.calico"]).status != 0)
        }

        var previous = ""
        for (name, manifest) in ConformanceKit.kubernetesCases {
            if !previous.isEmpty { try run.delete(manifest: previous) }
            try run.apply(manifest)
            previous = manifest
            let disagreement = try run.converge()
            #expect(disagreement.isEmpty, "BGP, case \(name):\n\(disagreement)")
        }
    }

    /// BIRD killed: tabbyd starts a new one and the sessions and routes come back. BIRD stopped
    /// (SIGSTOP, it holds its socket but never answers): /liveness fails until it answers again.
    @Test func birdIsSupervised() throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "2", "--routing", "bgp"])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        let a = try run.lab(["pod", "add", "x/a", "--node", "1", "--labels", "pod=a", "--serve", "80/tcp"])
        let b = try run.lab(["pod", "add", "x/b", "--node", "2", "--labels", "pod=b", "--serve", "80/tcp"])
        try #require(a.status == 0 && b.status == 0)
        #expect(try run.converge() == "")

        let pidFile = "\(run.stateDirectory)/bird-node-2/bird.pid"
        let first = try #require(
            Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(first, SIGKILL)
        var second: Int32?
        for _ in 0..<50 {
            Thread.sleep(forTimeInterval: 0.2)
            let text = (try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? ""
            if let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid != first {
                second = pid
                break
            }
        }
        #expect(second != nil, "tabbyd did not start a new BIRD after the first was killed")
        #expect(try Self.established(run, node: 2, peers: ["10.10.0.11"]).first?["info"] as? String == "Established")
        #expect(try run.converge() == "", "after BIRD's restart")
        let metrics = try Self.inNode(2, ["/usr/bin/curl", "-s", "http://127.0.0.1:9091/metrics"]).stdout
        #expect(metrics.contains("tabby_bird_restarts_total 1.0"), "\(metrics)")

        func liveness(_ node: Int) throws -> String {
            try Self.inNode(
                node,
                ["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9099/liveness"]
            )
            .stdout
        }
        #expect(try liveness(1) == "200")
        let birdOne = try #require(
            Int32(
                try String(contentsOfFile: "\(run.stateDirectory)/bird-node-1/bird.pid", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(birdOne, SIGSTOP)
        var seen = ""
        for _ in 0..<40 {
            seen = try liveness(1)
            if seen == "503" { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        kill(birdOne, SIGCONT)
        #expect(seen == "503", "a BIRD that does not answer must fail /liveness")
        for _ in 0..<40 {
            seen = try liveness(1)
            if seen == "200" { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(seen == "200")
    }

    /// A pool of one block: node-1's first pod claims it, node-2's pod borrows an address from
    /// it. node-2 announces that address as a /32, which wins over node-1's block (a blackhole on
    /// node-1), so both pods reach each other.
    @Test func borrowedAddressesAreAnnouncedAsHostRoutes() throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "2", "--routing", "bgp"])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        try run.apply(
            """
            apiVersion: projectcalico.org/v3
            kind: IPPool
            metadata: {name: default-ipv4-ippool}
            spec: {cidr: 10.65.0.0/16, blockSize: 26, vxlanMode: Never, nodeSelector: "!all()"}
            ---
            apiVersion: projectcalico.org/v3
            kind: IPPool
            metadata: {name: one-block}
            spec: {cidr: 10.80.0.0/26, blockSize: 26, vxlanMode: Never}
            """)
        let a = try run.lab(["pod", "add", "x/a", "--node", "1", "--labels", "pod=a", "--serve", "80/tcp"])
        let b = try run.lab(["pod", "add", "x/b", "--node", "2", "--labels", "pod=b", "--serve", "80/tcp"])
        try #require(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        let borrowed = Self.address(of: b)
        #expect(borrowed.hasPrefix("10.80.0."), "node-2's pod should borrow from node-1's block: \(borrowed)")
        var routes = ""
        for _ in 0..<50 {
            routes = try Self.inNode(1, ["/usr/sbin/ip", "route", "show", "proto", "bird"]).stdout
            if routes.contains("\(borrowed) via 10.10.0.12") { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(routes.contains("\(borrowed) via 10.10.0.12 dev eth0"), "node-1:\n\(routes)")
        #expect(routes.contains("blackhole 10.80.0.0/26"), "node-1:\n\(routes)")
        #expect(try run.converge() == "")
        #expect(try run.reaches("x/a", "x/b") == true)
        #expect(try run.reaches("x/b", "x/a") == true)
    }

    /// Mesh off, node-1 a route reflector (cluster 224.0.0.1), every node peering with the
    /// reflectors through one BGPPeer with a peerSelector: pods on node-2 and node-3 reach each
    /// other over routes that came through node-1.
    @Test func routeReflector() throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "3", "--routing", "bgp"])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        try run.apply(
            """
            apiVersion: projectcalico.org/v3
            kind: Node
            metadata: {name: node-1, labels: {route-reflector: "true"}}
            spec: {bgp: {ipv4Address: 10.10.0.11/24, routeReflectorClusterID: 224.0.0.1}}
            ---
            apiVersion: projectcalico.org/v3
            kind: BGPPeer
            metadata: {name: peer-with-route-reflectors}
            spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
            ---
            apiVersion: projectcalico.org/v3
            kind: BGPConfiguration
            metadata: {name: default}
            spec: {nodeToNodeMeshEnabled: false}
            """)
        let a = try run.lab(["pod", "add", "x/a", "--node", "2", "--labels", "pod=a", "--serve", "80/tcp"])
        let b = try run.lab(["pod", "add", "x/b", "--node", "3", "--labels", "pod=b", "--serve", "80/tcp"])
        try #require(a.status == 0 && b.status == 0)

        let reflector = try Self.established(run, node: 1, peers: ["10.10.0.12", "10.10.0.13"])
        #expect(reflector.allSatisfy { $0["peerType"] as? String == "node specific" }, "\(reflector)")
        for node in [2, 3] {
            let sessions = try Self.established(run, node: node, peers: ["10.10.0.11"])
            #expect(sessions.count == 1 && sessions.first?["protocol"] as? String == "Node_10_10_0_11", "\(sessions)")
        }
        #expect(try run.converge() == "")
        #expect(try run.reaches("x/a", "x/b") == true)
        #expect(try run.reaches("x/b", "x/a") == true)

        // node-2 learned node-3's block from the reflector, which reflected it (originator
        // node-3, the reflector's cluster in the cluster list), next hop still node-3.
        let route = try Self.birdc(run, node: 2, "show route for \(Self.address(of: b)) all")
        #expect(route.contains("[Node_10_10_0_11 "), "\(route)")
        #expect(route.contains("via 10.10.0.13 on eth0"), "\(route)")
        #expect(route.contains("BGP.originator_id: 10.10.0.13"), "\(route)")
        #expect(route.contains("BGP.cluster_list: 224.0.0.1"), "\(route)")
        #expect(!(try Self.birdc(run, node: 2, "show protocols")).contains("Mesh_"))
    }
}
