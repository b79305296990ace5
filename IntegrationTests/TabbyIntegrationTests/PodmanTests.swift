import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// podman 4.3 (CNI backend) as the runtime: two containers on a Tabby network get Tabby addresses
/// and reach each other (ping both ways, a TCP connection), and podman's DELs leave nothing.
/// tools/podman-lab runs podman inside a namespace it creates, with private configuration, and
/// checks that the root namespace's network is unchanged.
@Suite(
    "podman as a CNI client of tabby",
    .enabled(if: isRoot, "runs podman and creates network namespaces: needs root"), .serialized)
struct PodmanTests {
    @Test func twoContainersTalkOverATabbyNetwork() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/podman"), "tools/test installs podman")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-podman-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        let storePath = work.appendingPathComponent("tabby.db").path
        let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: storePath))
        let client = ResourceClient(store: store)
        try await client.create(
            AnyResource(IPPool(metadata: ObjectMeta(name: "podman"), spec: IPPoolSpec(cidr: "10.125.0.0/16"))))
        try await client.create(AnyResource(TabbyCore.Node(metadata: ObjectMeta(name: "podman-node"))))

        let plugins = work.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: plugins.appendingPathComponent("tabby").path,
            withDestinationPath: BuiltTools.binDirectory.appendingPathComponent("tabby").path)
        // A conflist as an operator writes it, with Calico's keys.
        let conflist = work.appendingPathComponent("tabby.conflist")
        try """
        {"cniVersion": "1.0.0", "name": "tabbypod", "plugins": [
          {"type": "tabby", "nodename": "podman-node", "mtu": 1450, "datastore_type": "embedded",
           "datastore_path": "\(storePath)", "log_file_path": "\(work.path)/tabby.log", "log_level": "info",
           "ipam": {"type": "tabby-ipam"}}]}
        """.write(to: conflist, atomically: true, encoding: .utf8)

        let run = try await ChildProcess.spawn(
            BuiltTools.repositoryRoot.appendingPathComponent("tools/podman-lab").path,
            [
                "run", "--plugin-dir", plugins.path, "--conflist", conflist.path, "--no-trace",
                "--log-dir", work.appendingPathComponent("logs").path,
            ]
        ).finished()
        let log = (try? String(contentsOf: work.appendingPathComponent("tabby.log"), encoding: .utf8)) ?? ""
        #expect(run.status == 0, "tools/podman-lab: \(run.stderr.suffix(3000))\ntabby.log:\n\(log.suffix(2000))")

        // Both containers had Tabby addresses (podman inspect, as the script logged them).
        let line = run.stderr.split(separator: "\n").first { $0.contains("c1 IP=") } ?? ""
        let addresses = line.split(separator: " ").filter { $0.hasPrefix("IP=") }.compactMap {
            IPAddress(String($0.dropFirst(3)))
        }
        #expect(addresses.count == 2 && addresses.allSatisfy { CIDR("10.125.0.0/16")!.contains($0) }, "\(line)")
        // podman's DELs released everything: no address, no endpoint.
        #expect(try await IPAM(store: store).handleIDs().isEmpty)
        #expect(try await client.list(WorkloadEndpoint.self).isEmpty)
    }
}
