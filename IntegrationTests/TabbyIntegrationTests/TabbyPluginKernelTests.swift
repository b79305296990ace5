import Foundation
import TabbyCNI
import TabbyCore
import TabbyDataplaneConformance
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// A node namespace with an embedded store and a pool, where the `tabby` plugin runs as a runtime
/// runs it: env + config on stdin, through `nsenter` into the node's namespace (so the host side of
/// every veth lands in a namespace the test made, never in the machine's own).
final class PluginLab: @unchecked Sendable {
    // @unchecked: `namespaces` changes only from the test's own task, before and after its work.
    let work: URL
    let storePath: String
    var namespaces = TestNamespaces()
    let node: String

    init(pool: String = "10.124.0.0/16", blockSize: Int = 26) async throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-plugin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        storePath = work.appendingPathComponent("tabby.db").path
        let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: storePath))
        var spec = IPPoolSpec(cidr: pool)
        spec.blockSize = blockSize
        let client = ResourceClient(store: store)
        try await client.create(AnyResource(IPPool(metadata: ObjectMeta(name: "pods"), spec: spec)))
        // The node registers itself (tabbyd does this on a real node); IPAM's check wants it.
        try await client.create(AnyResource(TabbyCore.Node(metadata: ObjectMeta(name: "node-a"))))
        node = try namespaces.add("node")
        try Self.giveUplink(node)
    }

    /// A node's namespace needs what every real node has: a default route out of some other
    /// interface. Proxy ARP answers for 169.254.1.1 only when it is routed elsewhere; a bridge with
    /// no ports stands in for the uplink.
    static func giveUplink(_ namespace: String) throws {
        for arguments in [
            ["link", "set", "lo", "up"], ["link", "add", "uplink0", "type", "bridge"],
            ["link", "set", "uplink0", "up"],
            ["route", "add", "default", "dev", "uplink0"],
        ] {
            let result = try ChildProcess.run("/usr/sbin/ip", ["-n", namespace] + arguments)
            guard result.status == 0 else {
                throw ChildProcess.Failure(description: "ip -n \(namespace) \(arguments): \(result.stderr)")
            }
        }
    }

    func tearDown() {
        namespaces.removeAll()
        try? FileManager.default.removeItem(at: work)
    }

    func config(version: String = "1.1.0", extra: String = "") -> String {
        """
        {"cniVersion": "\(version)", "name": "tabby-k8s", "type": "tabby", "nodename": "node-a", "mtu": 1400,
         "datastore_type": "embedded", "datastore_path": "\(storePath)",
         "log_level": "info", "log_file_path": "\(work.path)/tabby.log",
         "ipam": {"type": "tabby-ipam"}\(extra)}
        """
    }

    func environment(_ command: String, container: String?, netns: String?, args: String) -> [String: String] {
        var env = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_IFNAME": "eth0"]
        env["CNI_CONTAINERID"] = container
        env["CNI_NETNS"] = netns
        env["CNI_ARGS"] = args
        return env
    }

    /// Runs the plugin in the node namespace and parses what it printed.
    func run(
        _ command: String, container: String? = nil, pod: String? = nil, args: String? = nil, config: String? = nil,
        environment override: [String: String]? = nil
    ) throws -> (status: Int32, output: [String: Any]) {
        let env =
            override
            ?? environment(
                command, container: container, netns: pod.map { "/run/netns/\($0)" },
                args: args ?? "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=\(container ?? "none")")
        let result = try ChildProcess.run(
            "/usr/bin/nsenter",
            ["--net=/run/netns/\(node)", BuiltTools.binDirectory.appendingPathComponent("tabby").path],
            environment: env, stdin: config ?? self.config())
        let output =
            result.stdout.isEmpty
            ? [:] : (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        if result.status != 0 && output.isEmpty {
            throw ChildProcess.Failure(
                description: "tabby \(command) printed no JSON: \(result.stdout) \(result.stderr)")
        }
        return (result.status, output)
    }

    func ip(_ arguments: [String]) throws -> String {
        let result = try ChildProcess.run("/usr/sbin/ip", arguments)
        return result.stdout
    }

    /// `ping -c1` from one namespace to an address.
    func ping(from namespace: String, _ address: String) throws -> Bool {
        try ChildProcess.run(
            "/usr/bin/nsenter", ["--net=/run/netns/\(namespace)", "/usr/bin/ping", "-c1", "-W2", address]
        ).status == 0
    }

    /// The `cali` veths in the node namespace.
    func hostVeths() throws -> [String] {
        try ip(["-n", node, "-o", "link", "show", "type", "veth"]).split(separator: "\n").compactMap { line in
            let name = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
            return name.hasPrefix("cali") ? String(name.split(separator: "@")[0]) : nil
        }
    }

    func ipamCheck() throws -> ChildProcess.Result {
        try ChildProcess.run(
            BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path,
            ["ipam", "check", "--grace-period", "0s", "--store", storePath])
    }
}

func address(of result: [String: Any]) -> String? {
    ((result["ips"] as? [[String: Any]])?.first?["address"] as? String)?.split(separator: "/").first.map(String.init)
}

@Suite(
    "tabby plugin against the kernel",
    .enabled(if: isRoot, "creates network namespaces and veths: needs CAP_NET_ADMIN (root)"), .serialized)
struct TabbyPluginKernelTests {
    @Test(arguments: ["0.4.0", "1.0.0", "1.1.0"])
    func everyVerbInEveryVersion(version: String) async throws {
        let lab = try await PluginLab()
        defer { lab.tearDown() }
        let podA = try lab.namespaces.add("pod-a")
        let podB = try lab.namespaces.add("pod-b")
        let config = lab.config(version: version)

        let addA = try lab.run("ADD", container: "ctr-a", pod: podA, config: config)
        #expect(addA.status == 0, "\(addA.output)")
        let addB = try lab.run("ADD", container: "ctr-b", pod: podB, config: config)
        #expect(addB.status == 0, "\(addB.output)")
        #expect(addA.output["cniVersion"] as? String == version)
        let a = try #require(address(of: addA.output))
        let b = try #require(address(of: addB.output))
        #expect(a.hasPrefix("10.124.") && b.hasPrefix("10.124.") && a != b)

        // Calico's datapath: /32 in the pod, default via 169.254.1.1, host routes with Tabby's protocol.
        let podAddresses = try lab.ip(["-n", podA, "-o", "addr", "show", "dev", "eth0"])
        #expect(podAddresses.contains("inet \(a)/32"))
        #expect(try lab.ip(["-n", podA, "route", "show", "default"]).contains("via 169.254.1.1 dev eth0"))
        let hostRoutes = try lab.ip(["-n", lab.node, "route", "show", "proto", "85"])
        #expect(hostRoutes.contains("\(a) dev cali") && hostRoutes.contains("\(b) dev cali"), "\(hostRoutes)")
        #expect(try lab.hostVeths().count == 2)
        #expect(try lab.ip(["-n", podA, "link", "show", "eth0"]).contains("mtu 1400"))

        // The pods reach each other through the node, both ways.
        #expect(try lab.ping(from: podA, b))
        #expect(try lab.ping(from: podB, a))

        // CHECK with the ADD result as prevResult passes; a removed pod route fails it.
        let checkConfig = { (result: [String: Any]) -> String in
            let json = String(decoding: try! JSONSerialization.data(withJSONObject: result), as: UTF8.self)
            return lab.config(version: version, extra: ", \"prevResult\": \(json)")
        }
        let check = try lab.run("CHECK", container: "ctr-a", pod: podA, config: checkConfig(addA.output))
        #expect(check.status == 0, "\(check.output)")
        _ = try lab.ip(["-n", podA, "route", "del", "default"])
        let broken = try lab.run("CHECK", container: "ctr-a", pod: podA, config: checkConfig(addA.output))
        #expect(broken.status != 0 && broken.output["code"] as? Int == 101, "\(broken.output)")

        // ADD into a namespace whose eth0 exists fails and leaves nothing.
        let again = try lab.run("ADD", container: "ctr-dup", pod: podA, config: config)
        #expect(again.status != 0, "\(again.output)")
        #expect(try lab.hostVeths().count == 2)

        // STATUS and GC are 1.1.0 verbs.
        let status = try lab.run("STATUS", config: config)
        #expect((status.status == 0) == (version == "1.1.0"), "\(status.output)")
        let version_ = try lab.run("VERSION", config: config)
        #expect((version_.output["supportedVersions"] as? [String])?.contains("1.1.0") == true)

        // DEL, twice; then DEL of a pod whose namespace is already gone.
        #expect(try lab.run("DEL", container: "ctr-a", pod: podA, config: config).status == 0)
        #expect(try lab.run("DEL", container: "ctr-a", pod: podA, config: config).status == 0)
        #expect(try lab.hostVeths().count == 1)
        _ = try ChildProcess.run("/usr/sbin/ip", ["netns", "delete", podB])
        #expect(try lab.run("DEL", container: "ctr-b", pod: podB, config: config).status == 0)
        #expect(try lab.hostVeths().isEmpty)
        let ipamCheck = try lab.ipamCheck()
        #expect(ipamCheck.status == 0, "\(ipamCheck.stdout) \(ipamCheck.stderr)")
        let handles = try await IPAM(store: SQLiteStore(configuration: .init(path: lab.storePath))).handleIDs()
        #expect(handles.isEmpty)
    }

    @Test func gcReleasesEverythingNotValid() async throws {
        let lab = try await PluginLab()
        defer { lab.tearDown() }
        var pods: [String] = []
        for index in 0..<3 {
            let pod = try lab.namespaces.add("gc-\(index)")
            pods.append(pod)
            #expect(try lab.run("ADD", container: "gc-\(index)", pod: pod).status == 0)
        }
        #expect(try lab.hostVeths().count == 3)
        let gc = try lab.run(
            "GC",
            config: lab.config(extra: #", "cni.dev/valid-attachments": [{"containerID": "gc-1", "ifname": "eth0"}]"#))
        #expect(gc.status == 0, "\(gc.output)")
        #expect(try lab.hostVeths() == [CalicoNaming.hostInterface(namespace: "lab", pod: "gc-1")])
        let handles = try await IPAM(store: SQLiteStore(configuration: .init(path: lab.storePath))).handleIDs()
        #expect(handles == ["tabby-k8s.gc-1"])
    }

    /// Bad input: the right CNI code, a message naming what is wrong, nothing allocated.
    @Test func badInputGetsTheRightCodes() async throws {
        let lab = try await PluginLab()
        defer { lab.tearDown() }
        let pod = try lab.namespaces.add("bad")
        let cases: [(String, String, [String: String]?, Int)] = [
            ("not JSON", "{", nil, 6),
            ("unknown version", lab.config(version: "9.9.9"), nil, 1),
            (
                "bad TABBY_LABELS", lab.config(),
                lab.environment("ADD", container: "x", netns: "/run/netns/\(pod)", args: "TABBY_LABELS=a"), 4
            ),
            ("no CNI_COMMAND", lab.config(), ["CNI_CONTAINERID": "x"], 4),
            ("no CNI_NETNS", lab.config(), lab.environment("ADD", container: "x", netns: nil, args: ""), 4),
            (
                "missing netns", lab.config(),
                lab.environment("ADD", container: "x", netns: "/run/netns/tabby-t-none", args: ""), 4
            ),
            ("bad mtu", lab.config(extra: #", "mtu": "big""#), nil, 7),
        ]
        for (what, config, env, code) in cases {
            let result = try lab.run("ADD", container: "x", pod: pod, config: config, environment: env)
            #expect(result.status != 0, "\(what)")
            #expect(result.output["code"] as? Int == code, "\(what): \(result.output)")
            #expect((result.output["msg"] as? String)?.isEmpty == false, "\(what)")
        }
        #expect(try lab.hostVeths().isEmpty)
        let handles = try await IPAM(store: SQLiteStore(configuration: .init(path: lab.storePath))).handleIDs()
        #expect(handles.isEmpty)
    }

    /// 200 attachments with failures injected the way nodes fail: the plugin killed part-way
    /// through ADD, the pod's namespace deleted before DEL. The runtime then does what runtimes do
    /// (DEL after a failed ADD, GC at the end); nothing may leak.
    @Test func noLeakAfterKilledADDsAndEarlyNamespaceDeletion() async throws {
        let lab = try await PluginLab()
        defer { lab.tearDown() }
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &generator)
        var random = SplitMix(seed: seed)
        var live: [String] = []
        var killed = 0
        var earlyDeleted = 0
        for index in 0..<200 {
            let container = "r\(index)"
            let pod = try lab.namespaces.add("r\(index)")
            let env = lab.environment(
                "ADD", container: container, netns: "/run/netns/\(pod)",
                args: "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=\(container)")
            switch random.next() % 4 {
            case 0:
                // Killed mid-ADD: SIGKILL after a random 0-15 ms, then the runtime's DEL.
                let process = try ChildProcess.spawn(
                    "/usr/bin/nsenter",
                    ["--net=/run/netns/\(lab.node)", BuiltTools.binDirectory.appendingPathComponent("tabby").path],
                    environment: env, stdin: lab.config())
                try await Task.sleep(for: .milliseconds(Int(random.next() % 16)))
                kill(process.pid, SIGKILL)
                _ = await process.finished()
                killed += 1
                let del = try lab.run("DEL", container: container, pod: pod)
                #expect(del.status == 0, "seed \(seed): DEL after killed ADD of \(container): \(del.output)")
            case 1:
                // Namespace deleted before DEL (the kernel removes the veth with it).
                #expect(try lab.run("ADD", container: container, pod: pod).status == 0, "seed \(seed)")
                _ = try ChildProcess.run("/usr/sbin/ip", ["netns", "delete", pod])
                earlyDeleted += 1
                let del = try lab.run("DEL", container: container, pod: pod)
                #expect(del.status == 0, "seed \(seed): DEL of \(container) after its netns went: \(del.output)")
            case 2:
                #expect(try lab.run("ADD", container: container, pod: pod).status == 0, "seed \(seed)")
                #expect(try lab.run("DEL", container: container, pod: pod).status == 0, "seed \(seed)")
            default:
                #expect(try lab.run("ADD", container: container, pod: pod).status == 0, "seed \(seed)")
                live.append(container)
            }
        }
        // A killed ADD whose DEL was lost too is what GC is for.
        let valid = live.map { #"{"containerID": "\#($0)", "ifname": "eth0"}"# }.joined(separator: ",")
        let gc = try lab.run("GC", config: lab.config(extra: #", "cni.dev/valid-attachments": [\#(valid)]"#))
        #expect(gc.status == 0, "seed \(seed): \(gc.output)")

        let expectedVeths = Set(live.map { CalicoNaming.hostInterface(namespace: "lab", pod: $0) })
        #expect(Set(try lab.hostVeths()) == expectedVeths, "seed \(seed)")
        let check = try lab.ipamCheck()
        #expect(check.status == 0, "seed \(seed): tabbyctl ipam check: \(check.stdout) \(check.stderr)")
        let handles = try await IPAM(store: SQLiteStore(configuration: .init(path: lab.storePath))).handleIDs()
        #expect(Set(handles) == Set(live.map { "tabby-k8s.\($0)" }), "seed \(seed)")
        print("seed \(seed): \(killed) killed ADDs, \(earlyDeleted) namespaces deleted early, \(live.count) live")
    }
}
