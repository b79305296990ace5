import Foundation
import TabbyCore
import TabbyStore
import TabbyTestSupport
import Testing

/// tabbyctl's resource commands against real datastores, as a new user would try them.
@Suite("tabbyctl create/apply/get/delete/label on both datastores")
struct TabbyctlStoreTests {
    static let fixtures = "Tests/TabbyCoreTests/Fixtures/calico-docs"

    static func fixtureFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(
            atPath: BuiltTools.repositoryRoot.appendingPathComponent(fixtures).path
        )
        .sorted().map { "\(fixtures)/\($0)" }
    }

    /// Drops what the datastore adds, to compare with what was applied.
    static func withoutServerFields(_ resource: AnyResource) -> AnyResource {
        var resource = resource
        resource.base.metadata.resourceVersion = nil
        resource.base.metadata.uid = nil
        resource.base.metadata.creationTimestamp = nil
        return resource
    }

    @Test(
        "apply of Calico's documented manifests, then get -o yaml, round-trips",
        arguments: StoreProcessTests.Kind.allCases)
    func applyAndGetRoundTrip(kind: StoreProcessTests.Kind) throws {
        let (env, cleanup) = try StoreProcessTests.environment(kind)
        defer { cleanup() }
        var applied: [AnyResource] = []
        for file in try Self.fixtureFiles() {
            let run = try BuiltTools.run("tabbyctl", ["apply", "-f", file], environment: env)
            #expect(run.status == 0, "\(file): \(run.stderr)")
            let manifest = Manifest(
                text: try String(
                    contentsOfFile: BuiltTools.repositoryRoot.appendingPathComponent(file).path, encoding: .utf8),
                source: file)
            #expect(run.stdout.split(separator: "\n").count == manifest.entries.count)
            #expect(run.stdout.split(separator: "\n").allSatisfy { $0.hasSuffix(": created") }, "\(run.stdout)")
            applied += manifest.resources
        }
        // Ensure names are unique across fixtures, so every applied resource should come back.
        let kinds = Set(applied.map(\.kind))
        var fetched: [AnyResource] = []
        for kind in kinds.sorted(by: { $0.rawValue < $1.rawValue }) {
            let run = try BuiltTools.run("tabbyctl", ["get", kind.plural, "-A", "-o", "yaml"], environment: env)
            #expect(run.status == 0, "\(kind): \(run.stderr)")
            let manifest = Manifest(text: run.stdout, source: "get \(kind.plural)")
            #expect(manifest.problems.isEmpty, "\(manifest.problems)\n\(run.stdout)")
            #expect(manifest.resources.allSatisfy { $0.metadata.resourceVersion != nil && $0.metadata.uid != nil })
            fetched += manifest.resources.map(Self.withoutServerFields)
        }
        #expect(Set(fetched) == Set(applied))
        #expect(fetched.count == applied.count)

        // JSON too, for one resource.
        let json = try BuiltTools.run(
            "tabbyctl", ["get", "gnp", "allow-ping-in-cluster", "-o", "json"], environment: env)
        let fromJSON = Manifest(text: json.stdout, source: "json").resources.map(Self.withoutServerFields)
        #expect(fromJSON == applied.filter { $0.description == "GlobalNetworkPolicy allow-ping-in-cluster" })

        // Applying again configures what exists.
        let again = try BuiltTools.run("tabbyctl", ["apply", "-f", "\(Self.fixtures)/ipam.yaml"], environment: env)
        #expect(again.status == 0)
        #expect(again.stdout.split(separator: "\n").allSatisfy { $0.hasSuffix(": configured") }, "\(again.stdout)")
    }

    @Test("a partly failed create says which documents were written", arguments: StoreProcessTests.Kind.allCases)
    func partialCreateIsReported(kind: StoreProcessTests.Kind) throws {
        let (env, cleanup) = try StoreProcessTests.environment(kind)
        defer { cleanup() }
        let file = "\(Self.fixtures)/networksets.yaml"
        #expect(try BuiltTools.run("tabbyctl", ["create", "-f", file], environment: env).status == 0)
        try BuiltTools.run("tabbyctl", ["delete", "globalnetworkset", "a-name-for-the-set"], environment: env)
        let run = try BuiltTools.run("tabbyctl", ["create", "-f", file], environment: env)
        #expect(run.status == 1)
        #expect(run.stdout == "\(file): document 2: GlobalNetworkSet a-name-for-the-set: created\n")
        #expect(
            run.stderr
                == "\(file): document 1: NetworkSet staging/external-database: NOT created: NetworkSet staging/external-database already exists\n1 resource(s) created, 1 failed\n"
        )
        let skip = try BuiltTools.run("tabbyctl", ["create", "--skip-exists", "-f", file], environment: env)
        #expect(skip.status == 0)
    }

    @Test("an invalid manifest writes nothing", arguments: StoreProcessTests.Kind.allCases)
    func invalidManifestWritesNothing(kind: StoreProcessTests.Kind) throws {
        let (env, cleanup) = try StoreProcessTests.environment(kind)
        defer { cleanup() }
        let run = try BuiltTools.run("tabbyctl", ["apply", "-f", "docs/examples/broken.yaml"], environment: env)
        #expect(run.status == 1)
        #expect(run.stderr.hasSuffix("6 problem(s) found; nothing was written\n"))
        let get = try BuiltTools.run("tabbyctl", ["get", "ippools"], environment: env)
        #expect(get.status == 0)
        #expect(get.stdout == "NAME   CIDR   SELECTOR\n")
    }

    @Test("get, label and delete by name", arguments: StoreProcessTests.Kind.allCases)
    func getLabelDelete(kind: StoreProcessTests.Kind) throws {
        let (env, cleanup) = try StoreProcessTests.environment(kind)
        defer { cleanup() }
        #expect(
            try BuiltTools.run("tabbyctl", ["apply", "-f", "\(Self.fixtures)/endpoints.yaml"], environment: env).status
                == 0)
        let table = try BuiltTools.run("tabbyctl", ["get", "wep", "-o", "wide"], environment: env)
        #expect(
            table.stdout.contains(
                "node1-k8s-my--nginx--b1337a-eth0   my-nginx-b1337a   node1   192.168.0.0/32   cali0ef24ba"),
            "\(table.stdout)")

        let label = try BuiltTools.run(
            "tabbyctl", ["label", "wep", "node1-k8s-my--nginx--b1337a-eth0", "tier=web"], environment: env)
        #expect(label.status == 0, "\(label.stderr)")
        let clash = try BuiltTools.run(
            "tabbyctl", ["label", "wep", "node1-k8s-my--nginx--b1337a-eth0", "app=backend"], environment: env)
        #expect(clash.status == 1)
        #expect(clash.stderr.contains("already has app=frontend; add --overwrite"))
        #expect(
            try BuiltTools.run(
                "tabbyctl", ["label", "wep", "node1-k8s-my--nginx--b1337a-eth0", "app=backend", "--overwrite"],
                environment: env
            ).status == 0
        )
        let yaml = try BuiltTools.run(
            "tabbyctl", ["get", "wep", "node1-k8s-my--nginx--b1337a-eth0", "-o", "yaml"], environment: env)
        let endpoint = try #require(
            Manifest(text: yaml.stdout, source: "wep").resources.first?.as(WorkloadEndpoint.self))
        #expect(endpoint.metadata.labels?["tier"] == "web")
        #expect(endpoint.metadata.labels?["app"] == "backend")
        #expect(
            try BuiltTools.run(
                "tabbyctl", ["label", "wep", "node1-k8s-my--nginx--b1337a-eth0", "tier", "--remove"], environment: env
            ).status == 0)

        let delete = try BuiltTools.run("tabbyctl", ["delete", "hostendpoint", "some.name"], environment: env)
        #expect(delete.status == 0)
        #expect(delete.stdout == "HostEndpoint some.name: deleted\n")
        let gone = try BuiltTools.run("tabbyctl", ["get", "hep", "some.name"], environment: env)
        #expect(gone.status == 1)
        #expect(gone.stderr == "tabbyctl: HostEndpoint some.name does not exist\n")
        let unknown = try BuiltTools.run("tabbyctl", ["get", "widgets"], environment: env)
        #expect(unknown.status == 64)
        #expect(unknown.stderr.contains("unknown resource kind \"widgets\""))
    }

    @Test func aCorruptedStoreFileIsReportedAndLeftAlone() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tabby-corrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("tabby.db").path
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: path))
        var env = ProcessInfo.processInfo.environment
        env["TABBY_STORE"] = path
        env["DATASTORE_TYPE"] = "embedded"
        env["ETCD_ENDPOINTS"] = nil
        let run = try BuiltTools.run("tabbyctl", ["get", "ippools"], environment: env)
        #expect(run.status == 1)
        #expect(run.stderr.contains("corrupted"), "\(run.stderr)")
        #expect(run.stderr.contains(path))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
    }

    @Test func aStoppedEtcdIsReportedQuickly() throws {
        var env = ProcessInfo.processInfo.environment
        env["DATASTORE_TYPE"] = "etcdv3"
        env["ETCD_ENDPOINTS"] = "http://127.0.0.1:9"  // discard port: nothing listens
        let started = Date()
        let run = try BuiltTools.run("tabbyctl", ["get", "ippools"], environment: env)
        #expect(run.status == 1)
        #expect(run.stderr.contains("127.0.0.1:9"), "\(run.stderr)")
        #expect(Date().timeIntervalSince(started) < 30)
    }
}
