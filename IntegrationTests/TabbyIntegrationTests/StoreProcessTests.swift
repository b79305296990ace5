import Foundation
import TabbyStore
import TabbyTestSupport
import Testing

/// The datastore under many processes at once, as every CNI call is its own process.
@Suite("Datastore across processes")
struct StoreProcessTests {
    enum Kind: String, CaseIterable, Sendable { case sqlite, etcd }

    /// The environment that points tabby tools at a fresh store of `kind`, and its cleanup.
    static func environment(_ kind: Kind) throws -> (env: [String: String], cleanup: @Sendable () -> Void) {
        var env = ProcessInfo.processInfo.environment
        for name in ["DATASTORE_TYPE", "TABBY_STORE", "ETCD_ENDPOINTS"] { env[name] = nil }
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "tabby-proc-\(UUID().uuidString)")
            env["DATASTORE_TYPE"] = "embedded"
            env["TABBY_STORE"] = directory.appendingPathComponent("tabby.db").path
            return (env, { try? FileManager.default.removeItem(at: directory) })
        case .etcd:
            // Resources live at fixed keys: each test gets an etcd of its own.
            let etcd = try TestEtcd.startPrivate()
            env["DATASTORE_TYPE"] = "etcdv3"
            env["ETCD_ENDPOINTS"] = etcd.endpoints.joined(separator: ",")
            return (env, etcd.stop)
        }
    }

    @Test("8 processes x 500 compare-and-swap increments end at exactly 4000", arguments: Kind.allCases)
    func eightProcessesIncrement(kind: Kind) async throws {
        let (env, cleanup) = try Self.environment(kind)
        defer { cleanup() }
        let key = "/stress/\(UUID().uuidString)"
        var children: [ChildProcess] = []
        for _ in 0..<8 {
            children.append(
                try ChildProcess.spawn(
                    BuiltTools.binDirectory.appendingPathComponent("tabby-store-helper").path,
                    ["increment", "-", key, "500"],
                    environment: env
                )
            )
        }
        for child in children {
            let result = await child.finished()
            #expect(result.status == 0, "\(result.stderr)")
        }
        let store = try DatastoreConfiguration.fromEnvironment(env).makeStore()
        let value = try await store.get(key).map { String(decoding: $0.value, as: UTF8.self) }
        await store.close()
        #expect(value == "4000")
    }
}
