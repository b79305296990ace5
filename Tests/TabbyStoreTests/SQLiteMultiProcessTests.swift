import Foundation
import TabbyStore
import Testing

/// Several processes share one store file, as CNI invocations do. Uses the `tabby-store-helper`
/// executable built next to the test binary.
@Suite("SQLiteStore: many processes", .serialized)
struct SQLiteMultiProcessTests {
    /// Which store each process opens: all SQLiteStore (GRDB), or half of them SQLiteOneShotStore
    /// (a CNI call's) beside tabbyd's kind.
    enum Mix: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case pool, poolAndOneShot
        var testDescription: String { rawValue }
    }

    @Test(
        "8 processes x 500 compare-and-swap increments of one key end at exactly 4000", arguments: Mix.allCases)
    func compareAndSwapIncrements(mix: Mix) async throws {
        let processes = 8
        let increments = 500
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            // The file does not exist yet: the processes also race to create it.
            let path = (directory as NSString).appendingPathComponent("store/tabby.db")
            let started = ContinuousClock.now
            let outputs = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<processes {
                    let flags = mix == .poolAndOneShot && index % 2 == 1 ? ["--one-shot"] : []
                    group.addTask {
                        try await SQLiteTestSupport.runHelper(
                            flags + ["increment", path, "/counter", String(increments)])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            print("SQLiteMultiProcessTests: \(processes)x\(increments) increments took \(elapsed)")
            for output in outputs { print("  \(output.trimmingCharacters(in: .whitespacesAndNewlines))") }

            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            let counter = try #require(try await store.get("/counter"))
            #expect(String(decoding: counter.value, as: UTF8.self) == String(processes * increments))
            // One write per increment (a create, then updates): nothing lost, nothing doubled.
            #expect(counter.createRevision == 1)
            #expect(counter.modRevision == Revision(processes * increments))
            #expect(try await store.currentRevision() == Revision(processes * increments))
            await store.close()
        }
    }

    @Test("a watch in this process sees writes made by another process")
    func crossProcessWatch() async throws {
        try await SQLiteTestSupport.withStore { store, path in
            try await store.create("/x/before", value: Data("b".utf8))
            let stream = store.watch(prefix: "/x/", after: try await store.currentRevision())
            _ = try await SQLiteTestSupport.runHelper(["put", path, "/x/remote", "hello"])
            _ = try await SQLiteTestSupport.runHelper(["put", path, "/x/remote", "again"])
            let events = try await SQLiteTestSupport.collect(stream, count: 2)
            let added = KeyValue(key: "/x/remote", value: Data("hello".utf8), createRevision: 2, modRevision: 2)
            #expect(
                events == [
                    .added(added),
                    .modified(
                        KeyValue(key: "/x/remote", value: Data("again".utf8), createRevision: 2, modRevision: 3),
                        previous: added),
                ])
        }
    }
}
