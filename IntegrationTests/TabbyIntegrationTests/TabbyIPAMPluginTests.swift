import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// tabby-ipam driven as a container runtime drives it: CNI_* variables, config on stdin.
@Suite("tabby-ipam, every CNI verb")
struct TabbyIPAMPluginTests {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-cni-\(UUID().uuidString)")
    var storePath: String { work.appendingPathComponent("tabby.db").path }
    var plugin: String { work.appendingPathComponent("tabby-ipam").path }

    init() throws {
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: plugin, withDestinationPath: BuiltTools.binDirectory.appendingPathComponent("tabby").path)
    }

    func config(version: String = "1.1.0", extra: String = "") -> String {
        """
        {"cniVersion": "\(version)", "name": "net1", "type": "bridge"\(extra),
         "ipam": {"type": "tabby-ipam", "datastore_path": "\(storePath)", "nodename": "node-a", "assign_ipv6": "true"}}
        """
    }

    func run(_ command: String, container: String? = "c1", stdin: String, arguments: String = "") throws -> (
        status: Int32, json: [String: Any]
    ) {
        var env: [String: String] = [
            "CNI_COMMAND": command, "CNI_IFNAME": "eth0", "CNI_NETNS": "/var/run/netns/x", "CNI_PATH": work.path,
        ]
        if let container { env["CNI_CONTAINERID"] = container }
        if !arguments.isEmpty { env["CNI_ARGS"] = arguments }
        let result = try ChildProcess.run(plugin, [], environment: env, stdin: stdin)
        #expect(result.stderr == "", "logs never go to stdout; nothing expected on stderr either")
        let json =
            result.stdout.isEmpty
            ? [:] : (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:])
        return (result.status, json)
    }

    func pools() async throws {
        let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: storePath))
        let client = ResourceClient(store: store)
        try await client.create(
            AnyResource(IPPool(metadata: ObjectMeta(name: "v4"), spec: IPPoolSpec(cidr: "10.50.0.0/24"))))
        try await client.create(
            AnyResource(IPPool(metadata: ObjectMeta(name: "v6"), spec: IPPoolSpec(cidr: "fd50::/120"))))
        await store.close()
    }

    @Test func everyVerb() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        // VERSION needs no config.
        let version = try run("VERSION", container: nil, stdin: "")
        #expect(version.status == 0)
        #expect(version.json["supportedVersions"] as? [String] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])

        // STATUS before any pool: 50, with what to do.
        let notReady = try run("STATUS", container: nil, stdin: config())
        #expect(notReady.status != 0)
        #expect(notReady.json["code"] as? Int == 50)
        try await pools()
        #expect(try run("STATUS", container: nil, stdin: config()).status == 0)

        // ADD, dual stack, in each result version.
        for (container, version) in [("c1", "1.1.0"), ("c2", "1.0.0"), ("c3", "0.4.0")] {
            let add = try run(
                "ADD", container: container, stdin: config(version: version),
                arguments: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=\(container)")
            #expect(add.status == 0, "\(add.json)")
            #expect(add.json["cniVersion"] as? String == version)
            let ips = try #require(add.json["ips"] as? [[String: Any]])
            #expect(ips.count == 2)
            #expect((ips[0]["address"] as? String)?.hasSuffix("/32") == true)
            #expect((ips[1]["address"] as? String)?.hasSuffix("/128") == true)
            #expect((ips[0]["version"] as? String) == (version == "0.4.0" ? "4" : nil))
        }
        // A second ADD for the same attachment is refused, not a second address.
        let again = try run("ADD", container: "c1", stdin: config())
        #expect(again.json["code"] as? Int == 7)

        // CHECK: what IPAM holds must match prevResult.
        let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: storePath))
        let ipam = IPAM(store: store)
        let held = try await ipam.addresses(handleID: "net1.c1").map { "\"\($0)/\($0.bitWidth)\"" }
        let previous =
            ", \"prevResult\": {\"cniVersion\": \"1.1.0\", \"ips\": [\(held.map { "{\"address\": \($0)}" }.joined(separator: ", "))]}"
        #expect(try run("CHECK", stdin: config(extra: previous)).status == 0)
        let wrong = ", \"prevResult\": {\"cniVersion\": \"1.1.0\", \"ips\": [{\"address\": \"10.50.0.250/32\"}]}"
        #expect(try run("CHECK", stdin: config(extra: wrong)).json["code"] as? Int == 101)

        // GC keeps c2 only.
        let gc = try run(
            "GC", container: nil,
            stdin: config(extra: ", \"cni.dev/valid-attachments\": [{\"containerID\": \"c2\", \"ifname\": \"eth0\"}]"))
        #expect(gc.status == 0, "\(gc.json)")
        #expect(try await ipam.addresses(handleID: "net1.c1").isEmpty)
        #expect(try await ipam.addresses(handleID: "net1.c3").isEmpty)
        #expect(try await ipam.addresses(handleID: "net1.c2").count == 2)

        // DEL twice: idempotent.
        #expect(try run("DEL", container: "c2", stdin: config()).status == 0)
        #expect(try run("DEL", container: "c2", stdin: config()).status == 0)
        #expect(try await ipam.addresses(handleID: "net1.c2").isEmpty)
        await store.close()
    }

    @Test(
        "bad input gets the right CNI error code",
        arguments: [
            ([String: String](), "", 4),
            (["CNI_COMMAND": "ADDD"], "", 4),
            (["CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0"], "{}", 4),
            (["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"], "not json", 6),
            (["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"], "{\"name\": \"n\"}", 7),
            (
                ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"],
                "{\"cniVersion\": \"9.9.9\", \"name\": \"n\"}", 1
            ),
            (["CNI_COMMAND": "GC"], "{\"cniVersion\": \"1.0.0\", \"name\": \"n\"}", 1),
            (
                ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"],
                "{\"cniVersion\": \"1.1.0\", \"name\": \"n\", \"ipam\": {\"datastore_type\": \"kubernetes\"}}", 7
            ),
        ]
    )
    func badInput(environment: [String: String], stdin: String, code: Int) throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let result = try ChildProcess.run(plugin, [], environment: environment, stdin: stdin)
        #expect(result.status == 1)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(json?["code"] as? Int == code, "\(result.stdout)")
        #expect((json?["msg"] as? String)?.isEmpty == false)
    }
}
