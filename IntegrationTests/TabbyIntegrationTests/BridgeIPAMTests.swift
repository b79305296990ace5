import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// Creating network namespaces needs CAP_NET_ADMIN: root here and in CI.
let isRoot = getuid() == 0

/// Network namespaces this test created, deleted by name however the test ends. Only ever
/// namespaces named tabby-t-*: the machine's own network is never touched.
struct TestNamespaces {
    var names: [String] = []

    mutating func add(_ purpose: String) throws -> String {
        let name = "tabby-t-\(purpose)-\(UUID().uuidString.prefix(6).lowercased())"
        let result = try ChildProcess.run("/usr/sbin/ip", ["netns", "add", name])
        guard result.status == 0 else {
            throw ChildProcess.Failure(description: "ip netns add \(name): \(result.stderr)")
        }
        names.append(name)
        return name
    }

    func removeAll() {
        for name in names { _ = try? ChildProcess.run("/usr/sbin/ip", ["netns", "delete", name]) }
    }
}

@Suite(
    "tabby-ipam under the reference bridge plugin",
    .enabled(if: isRoot, "creates network namespaces: needs CAP_NET_ADMIN (root)"))
struct BridgeIPAMTests {
    @Test func bridgeGetsAddressesFromATabbyPool() async throws {
        let bridgePlugin = "/usr/lib/cni/bridge"
        try #require(
            FileManager.default.isExecutableFile(atPath: bridgePlugin),
            "install containernetworking-plugins (tools/test does)")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-bridge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        var namespaces = TestNamespaces()
        defer {
            namespaces.removeAll()
            try? FileManager.default.removeItem(at: work)
        }
        // CNI_PATH holds tabby-ipam: the tabby binary under that name.
        let pluginDirectory = work.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: pluginDirectory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: pluginDirectory.appendingPathComponent("tabby-ipam").path,
            withDestinationPath: BuiltTools.binDirectory.appendingPathComponent("tabby").path
        )
        let storePath = work.appendingPathComponent("tabby.db").path
        let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: storePath))
        let client = ResourceClient(store: store)
        try await client.create(
            AnyResource(IPPool(metadata: ObjectMeta(name: "bridge-pool"), spec: IPPoolSpec(cidr: "10.123.0.0/24"))))
        // The bridge takes the subnet's first address as its gateway: keep IPAM off it.
        var reservation = IPReservationSpec()
        reservation.reservedCIDRs = ["10.123.0.1"]
        try await client.create(AnyResource(IPReservation(metadata: ObjectMeta(name: "gateway"), spec: reservation)))

        let node = try namespaces.add("node")
        let pod = try namespaces.add("pod")
        let config = """
            {"cniVersion": "1.0.0", "name": "tabbynet", "type": "bridge", "bridge": "tbr0", "isGateway": true,
             "ipam": {"type": "tabby-ipam", "prefix": "pool", "datastore_path": "\(storePath)", "nodename": "node-a"}}
            """
        func bridge(_ command: String) throws -> ChildProcess.Result {
            var env = ProcessInfo.processInfo.environment
            env["CNI_COMMAND"] = command
            env["CNI_CONTAINERID"] = "ctr1"
            env["CNI_NETNS"] = "/run/netns/\(pod)"
            env["CNI_IFNAME"] = "eth0"
            env["CNI_PATH"] = pluginDirectory.path
            // The bridge plugin makes its bridge in the namespace it runs in: the node's.
            return try ChildProcess.run(
                "/usr/bin/nsenter", ["--net=/run/netns/\(node)", bridgePlugin], environment: env, stdin: config)
        }

        let add = try bridge("ADD")
        #expect(add.status == 0, "bridge ADD: \(add.stdout) \(add.stderr)")
        let result = try JSONSerialization.jsonObject(with: Data(add.stdout.utf8)) as? [String: Any]
        let address = try #require((result?["ips"] as? [[String: Any]])?.first?["address"] as? String)
        let cidr = try #require(CIDR(address))
        #expect(cidr.prefixLength == 24)
        #expect(CIDR("10.123.0.0/24")!.contains(try #require(IPAddress(String(address.split(separator: "/")[0])))))
        #expect(address != "10.123.0.1/24")

        // The address is on the pod's eth0, and the pod reaches the bridge's gateway address.
        let shown = try ChildProcess.run("/usr/sbin/ip", ["-n", pod, "-o", "addr", "show", "dev", "eth0"])
        #expect(shown.stdout.contains("inet \(address)"), "\(shown.stdout)")
        let ping = try ChildProcess.run(
            "/usr/bin/nsenter", ["--net=/run/netns/\(pod)", "ping", "-c", "1", "-W", "2", "10.123.0.1"])
        #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr)")

        let ipam = IPAM(store: store)
        let held = try await ipam.addresses(handleID: "tabbynet.ctr1")
        #expect(held.map { "\($0)/24" } == [address])

        let del = try bridge("DEL")
        #expect(del.status == 0, "bridge DEL: \(del.stdout) \(del.stderr)")
        #expect(try await ipam.addresses(handleID: "tabbynet.ctr1").isEmpty)
        // DEL again (the runtime may repeat it): still fine.
        #expect(try bridge("DEL").status == 0)
        await store.close()
    }
}
