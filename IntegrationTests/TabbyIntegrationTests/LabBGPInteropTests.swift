import Foundation
import TabbyTestSupport
import Testing

let gobgpInstalled =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/gobgpd")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/gobgp")

/// An operator's router that is not BIRD: gobgpd (AS 64600) in a namespace of its own on the
/// lab's underlay, with a client network (192.168.100.0/24) behind it. A global BGPPeer makes
/// both Tabby nodes peer with it (eBGP); it must learn both pod blocks over BGP, the nodes must
/// learn the client network from it, and a client behind it must reach pods on both nodes.
///
/// gobgpd keeps what it learns in its RIB and programs no kernel without zebra, so the test
/// copies the RIB's best paths (read from `gobgp global rib -j`) into the router namespace's
/// kernel with `ip route`, as zebra would.
@Suite(
    "lab over BGP with an external router",
    .enabled(if: isRoot, "creates network namespaces and runs tabbyd, BIRD and gobgpd: needs root"),
    .enabled(if: birdInstalled, "needs BIRD 2 (apt-get install bird2; tools/test installs it)"),
    .enabled(if: gobgpInstalled, "needs gobgpd and gobgp (apt-get install gobgpd; tools/test installs it)"),
    .serialized)
struct LabBGPInteropTests {
    typealias LabRun = LabEndToEndTests.LabRun

    static let router = "tabby-lab-router"
    static let client = "tabby-lab-client"

    static func ip(_ arguments: String) throws {
        let result = try ChildProcess.run("/usr/sbin/ip", arguments.split(separator: " ").map(String.init))
        guard result.status == 0 else {
            throw ChildProcess.Failure(description: "ip \(arguments): \(result.stderr)")
        }
    }

    static func inRouter(_ command: [String]) throws -> ChildProcess.Result {
        try ChildProcess.run("/usr/bin/nsenter", ["--net=/run/netns/\(router)"] + command)
    }

    /// The router's namespace on the underlay bridge (10.10.0.100) and a client namespace behind
    /// it (192.168.100.2, default route through the router).
    static func buildRouterAndClient() throws {
        try ip("netns add \(router)")
        try ip("netns add \(client)")
        try ip("-n tabby-lab-underlay link add lab-router type veth peer name eth0 netns \(router)")
        try ip("-n tabby-lab-underlay link set lab-router master br0 up")
        try ip("-n \(router) addr add 10.10.0.100/24 dev eth0")
        try ip("-n \(router) link set eth0 up")
        try ip("-n \(router) link set lo up")
        try ip("-n \(router) link add clients type veth peer name eth0 netns \(client)")
        try ip("-n \(router) addr add 192.168.100.1/24 dev clients")
        try ip("-n \(router) link set clients up")
        try ip("-n \(client) addr add 192.168.100.2/24 dev eth0")
        try ip("-n \(client) link set eth0 up")
        try ip("-n \(client) link set lo up")
        try ip("-n \(client) route add default via 192.168.100.1")
        // nsenter, not `ip netns exec` (it remounts /sys): the sysctl is the router namespace's own.
        _ = try inRouter(["/usr/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1"])
    }

    /// The best path's next hop per prefix in gobgp's RIB.
    static func rib() throws -> [String: String] {
        let result = try inRouter(["/usr/bin/gobgp", "global", "rib", "-a", "ipv4", "-j"])
        guard let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else { return [:] }
        var best: [String: String] = [:]
        for (prefix, value) in object {
            for path in value as? [[String: Any]] ?? [] where path["best"] as? Bool == true {
                let attributes = path["attrs"] as? [[String: Any]] ?? []
                if let hop = attributes.first(where: { $0["type"] as? Int == 3 })?["nexthop"] as? String {
                    best[prefix] = hop
                }
            }
        }
        return best
    }

    @Test func gobgpdLearnsThePodBlocksAndItsClientsReachThePods() throws {
        let run = LabRun(datastore: "embedded")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-gobgp-\(UUID())")
        var gobgpd: ChildProcess?
        var started = false
        defer {
            if let gobgpd {
                kill(gobgpd.pid, SIGKILL)
                _ = gobgpd.wait()
            }
            try? Self.ip("netns del \(Self.client)")
            try? Self.ip("netns del \(Self.router)")
            // Only a lab this test started comes down: a refused `up` means another lab is running.
            if started { _ = try? run.lab(["down"]) }
            try? FileManager.default.removeItem(at: directory)
        }
        let up = try run.lab(["up", "--nodes", "2", "--routing", "bgp"])
        started = up.status == 0
        try #require(started, "lab up: \(up.stdout) \(up.stderr)")
        let a = try run.lab(["pod", "add", "x/a", "--node", "1", "--labels", "pod=a", "--serve", "80/tcp"])
        let b = try run.lab(["pod", "add", "x/b", "--node", "2", "--labels", "pod=b", "--serve", "80/tcp"])
        try #require(a.status == 0 && b.status == 0)
        let pods = [LabBGPTests.address(of: a), LabBGPTests.address(of: b)]
        try Self.buildRouterAndClient()

        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configuration = directory.appendingPathComponent("gobgpd.toml")
        try """
        [global.config]
          as = 64600
          router-id = "10.10.0.100"
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "10.10.0.11"
            peer-as = 64512
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "10.10.0.12"
            peer-as = 64512
        """.write(to: configuration, atomically: true, encoding: .utf8)
        gobgpd = try ChildProcess.spawn(
            "/usr/bin/nsenter",
            [
                "--net=/run/netns/\(Self.router)", "/usr/bin/gobgpd", "-f", configuration.path, "-p",
                "--api-hosts", "127.0.0.1:50051", "--pprof-disable",
            ])
        // The operator's side: a global peer (every node peers with the router).
        try run.apply(
            """
            apiVersion: projectcalico.org/v3
            kind: BGPPeer
            metadata: {name: tor}
            spec: {peerIP: 10.10.0.100, asNumber: 64600}
            """)
        for node in [1, 2] {
            let sessions = try LabBGPTests.established(
                run, node: node, peers: ["10.10.0.100", node == 1 ? "10.10.0.12" : "10.10.0.11"])
            let tor = sessions.first { $0["peerAddress"] as? String == "10.10.0.100" }
            #expect(tor?["peerType"] as? String == "global" && tor?["info"] as? String == "Established", "\(sessions)")
        }

        // The router learns both nodes' blocks over BGP.
        var rib: [String: String] = [:]
        for _ in 0..<50 {
            rib = try Self.rib()
            if rib.count >= 2 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        for pod in pods {
            let block = rib.keys.first { prefix in
                guard let network = prefix.split(separator: "/").first,
                    let length = Int(prefix.split(separator: "/").last ?? "")
                else { return false }
                return length < 32 && Self.contains(network: String(network), length: length, address: pod)
            }
            #expect(block != nil, "no block of \(pod) in gobgp's RIB: \(rib)")
            #expect(["10.10.0.11", "10.10.0.12"].contains(block.flatMap { rib[$0] } ?? ""), "next hop: \(rib)")
        }

        // The router announces its client network; both nodes put it in their kernels.
        let added = try Self.inRouter(["/usr/bin/gobgp", "global", "rib", "add", "-a", "ipv4", "192.168.100.0/24"])
        #expect(added.status == 0, "\(added.stderr)")
        for node in [1, 2] {
            var routes = ""
            for _ in 0..<50 {
                routes = try LabBGPTests.inNode(node, ["/usr/sbin/ip", "route", "show", "192.168.100.0/24"]).stdout
                if routes.contains("via 10.10.0.100") { break }
                Thread.sleep(forTimeInterval: 0.2)
            }
            #expect(routes.contains("via 10.10.0.100 dev eth0 proto bird"), "node-\(node): \(routes)")
        }

        // gobgpd has no FIB of its own: install its best paths as zebra would, then send traffic.
        for (prefix, hop) in rib {
            try Self.ip("-n \(Self.router) route replace \(prefix) via \(hop)")
        }
        for pod in pods {
            let ping = try ChildProcess.run(
                "/usr/bin/nsenter", ["--net=/run/netns/\(Self.client)", "/usr/bin/ping", "-c", "2", "-W", "1", pod])
            #expect(ping.status == 0, "client -> \(pod): \(ping.stdout)")
            let tcp = try ChildProcess.run(
                "/usr/bin/nsenter",
                [
                    "--net=/run/netns/\(Self.client)", "/usr/bin/python3", "-c",
                    "import socket; socket.create_connection(('\(pod)', 80), timeout=2); print('connected')",
                ])
            #expect(tcp.stdout.contains("connected"), "client -> \(pod):80: \(tcp.stderr)")
        }
    }

    static func contains(network: String, length: Int, address: String) -> Bool {
        func value(_ text: String) -> UInt32? {
            let parts = text.split(separator: ".").compactMap { UInt32($0) }
            guard parts.count == 4 else { return nil }
            return parts.reduce(0) { $0 << 8 | $1 }
        }
        guard let network = value(network), let address = value(address) else { return false }
        let mask: UInt32 = length == 0 ? 0 : ~0 << (32 - UInt32(length))
        return network & mask == address & mask
    }
}
