import Foundation
import TabbyStore
import TabbyTestSupport
import Testing

/// The backends every conformance test runs against.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    /// `sqliteSingleConnection`: SQLiteStore's one-connection mode; `sqliteOneShot`: the store
    /// the CNI plugin opens (`SQLiteOneShotStore`, no GRDB).
    case memory, sqlite, sqliteSingleConnection, sqliteOneShot, etcd

    var testDescription: String { rawValue }

    /// A fresh store and a key prefix no other test uses (etcd is shared by the whole run).
    func open() throws -> (store: any KeyValueStore, prefix: String, cleanup: @Sendable () async -> Void) {
        let prefix = "/conformance/\(UUID().uuidString.lowercased())/"
        switch self {
        case .memory:
            let store = InMemoryStore()
            return (store, prefix, { await store.close() })
        case .sqlite, .sqliteSingleConnection, .sqliteOneShot:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "tabby-store-\(UUID().uuidString)")
            var configuration = SQLiteStoreConfiguration(path: directory.appendingPathComponent("tabby.db").path)
            configuration.singleConnection = self == .sqliteSingleConnection
            let store: any KeyValueStore =
                self == .sqliteOneShot
                ? try SQLiteOneShotStore(configuration: configuration) : try SQLiteStore(configuration: configuration)
            return (
                store, prefix,
                {
                    await store.close()
                    try? FileManager.default.removeItem(at: directory)
                }
            )
        case .etcd:
            let store = try EtcdStore(configuration: EtcdConfiguration(endpoints: try TestEtcd.endpoints()))
            return (store, prefix, { await store.close() })
        }
    }
}

/// Collects the first `count` events of a watch, failing after a deadline instead of hanging.
func collect(_ stream: AsyncThrowingStream<WatchEvent, any Error>, count: Int, within seconds: Double = 10) async throws
    -> [WatchEvent]
{
    try await withThrowingTaskGroup(of: [WatchEvent]?.self) { group in
        group.addTask {
            var events: [WatchEvent] = []
            for try await event in stream {
                events.append(event)
                if events.count == count { break }
            }
            return events
        }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let events = first else {
            throw TestEtcd.Failure(description: "watch delivered fewer than \(count) events within \(seconds) s")
        }
        return events
    }
}

func bytes(_ text: String) -> Data { Data(text.utf8) }

/// One suite, every backend: the datastore contract the rest of Tabby relies on. Serialized
/// because compaction on the shared etcd would otherwise cut other tests' watch history.
@Suite("Datastore conformance", .serialized)
struct StoreConformanceTests {
    @Test("create, get, update, delete", arguments: Backend.allCases)
    func crud(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let key = prefix + "a"
        #expect(try await store.get(key) == nil)
        let created = try await store.create(key, value: bytes("one"))
        #expect(created.key == key)
        #expect(created.value == bytes("one"))
        #expect(created.createRevision == created.modRevision)
        #expect(try await store.get(key) == created)
        let updated = try await store.update(key, value: bytes("two"), expectedRevision: created.modRevision)
        #expect(updated.modRevision > created.modRevision)
        #expect(updated.createRevision == created.createRevision)
        #expect(try await store.get(key)?.value == bytes("two"))
        #expect(try await store.currentRevision() >= updated.modRevision)
        let deleted = try await store.delete(key, expectedRevision: updated.modRevision)
        #expect(deleted.value == bytes("two"))
        #expect(try await store.get(key) == nil)
        // A key created again starts a new life.
        let again = try await store.create(key, value: bytes("three"))
        #expect(again.createRevision > updated.modRevision)
    }

    @Test("create of an existing key fails", arguments: Backend.allCases)
    func createTwice(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        try await store.create(prefix + "k", value: bytes("1"))
        await #expect(throws: StoreError.alreadyExists(key: prefix + "k")) {
            try await store.create(prefix + "k", value: bytes("2"))
        }
        #expect(try await store.get(prefix + "k")?.value == bytes("1"))
    }

    @Test("compare-and-swap conflicts name the actual revision", arguments: Backend.allCases)
    func casConflicts(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let key = prefix + "cas"
        let first = try await store.create(key, value: bytes("1"))
        let second = try await store.update(key, value: bytes("2"), expectedRevision: first.modRevision)
        await #expect(
            throws: StoreError.conflict(
                key: key, expectedRevision: first.modRevision, actualRevision: second.modRevision)
        ) {
            try await store.update(key, value: bytes("stale"), expectedRevision: first.modRevision)
        }
        await #expect(
            throws: StoreError.conflict(
                key: key, expectedRevision: first.modRevision, actualRevision: second.modRevision)
        ) {
            try await store.delete(key, expectedRevision: first.modRevision)
        }
        #expect(try await store.get(key)?.value == bytes("2"))
        await #expect(throws: StoreError.notFound(key: prefix + "missing")) {
            try await store.update(prefix + "missing", value: bytes("x"), expectedRevision: 1)
        }
        await #expect(throws: StoreError.notFound(key: prefix + "missing")) {
            try await store.delete(prefix + "missing", expectedRevision: nil)
        }
        // An unconditional delete succeeds whatever the revision.
        try await store.delete(key, expectedRevision: nil)
        #expect(try await store.get(key) == nil)
    }

    @Test("list by prefix is sorted and exact", arguments: Backend.allCases)
    func listByPrefix(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        for name in ["a/2", "a/1", "ab", "a/3/x", "b/1"] {
            try await store.create(prefix + name, value: bytes(name))
        }
        let listing = try await store.list(prefix: prefix + "a/")
        #expect(listing.items.map(\.key) == ["a/1", "a/2", "a/3/x"].map { prefix + $0 })
        #expect(listing.items.map(\.value) == ["a/1", "a/2", "a/3/x"].map(bytes))
        #expect(listing.revision >= listing.items.map(\.modRevision).max()!)
        #expect(try await store.list(prefix: prefix + "zzz/").items.isEmpty)
        #expect(try await store.list(prefix: prefix).items.count == 5)
    }

    @Test("watch delivers changes in revision order with previous values", arguments: Backend.allCases)
    func watchOrdering(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let start = try await store.list(prefix: prefix).revision
        let stream = store.watch(prefix: prefix + "w/", after: start)
        let a = try await store.create(prefix + "w/a", value: bytes("1"))
        try await store.create(prefix + "other", value: bytes("not watched"))
        let a2 = try await store.update(prefix + "w/a", value: bytes("2"), expectedRevision: a.modRevision)
        let b = try await store.create(prefix + "w/b", value: bytes("b"))
        let deleted = try await store.delete(prefix + "w/a", expectedRevision: nil)
        let events = try await collect(stream, count: 4)
        #expect(events.count == 4)
        guard events.count == 4 else { return }
        #expect(events[0] == .added(a))
        #expect(events[1] == .modified(a2, previous: a))
        #expect(events[2] == .added(b))
        guard case .deleted(let key, let revision, let previous) = events[3] else {
            Issue.record("expected a delete, got \(events[3])")
            return
        }
        #expect(key == prefix + "w/a")
        #expect(revision > b.modRevision)
        #expect(previous == deleted)
        #expect(events.map(\.revision) == events.map(\.revision).sorted())
    }

    @Test("watch resumes after a revision without gaps or repeats", arguments: Backend.allCases)
    func watchResume(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        var written: [KeyValue] = []
        for index in 0..<5 { written.append(try await store.create(prefix + "r/\(index)", value: bytes("\(index)"))) }
        let events = try await collect(store.watch(prefix: prefix + "r/", after: written[1].modRevision), count: 3)
        #expect(events == written[2...].map { WatchEvent.added($0) })
    }

    @Test("a watch that needs compacted history is told to resync", arguments: Backend.allCases)
    func resyncAfterCompaction(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let first = try await store.create(prefix + "c/1", value: bytes("1"))
        let second = try await store.update(prefix + "c/1", value: bytes("2"), expectedRevision: first.modRevision)
        let third = try await store.create(prefix + "c/2", value: bytes("3"))
        try await store.compact(through: third.modRevision)
        let stale = try await collect(store.watch(prefix: prefix + "c/", after: first.modRevision), count: 1)
        guard case .resyncRequired(let compacted)? = stale.first else {
            Issue.record("expected resyncRequired, got \(stale)")
            return
        }
        #expect(compacted >= second.modRevision)
        // Data survives compaction; only history goes. Watching from the present works.
        #expect(try await store.get(prefix + "c/1")?.value == bytes("2"))
        let now = try await store.list(prefix: prefix + "c/").revision
        let fresh = store.watch(prefix: prefix + "c/", after: now)
        let fourth = try await store.create(prefix + "c/3", value: bytes("4"))
        #expect(try await collect(fresh, count: 1) == [.added(fourth)])
    }

    @Test("concurrent compare-and-swap increments lose nothing", arguments: Backend.allCases)
    func concurrentIncrements(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let key = prefix + "counter"
        try await store.create(key, value: bytes("0"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { try await increment(store, key: key, times: 25) }
            }
            try await group.waitForAll()
        }
        #expect(try await store.get(key)?.value == bytes("100"))
    }
}

/// Adds one to a counter `times` times with get + compare-and-swap, retrying on conflict.
func increment(_ store: any KeyValueStore, key: String, times: Int) async throws {
    var done = 0
    while done < times {
        let current = try #require(try await store.get(key))
        let value = Int(String(decoding: current.value, as: UTF8.self))! + 1
        // (Matching `catch .conflict` inside this loop crashes the 6.3 compiler: test the case instead.)
        do {
            try await store.update(key, value: bytes("\(value)"), expectedRevision: current.modRevision)
            done += 1
        } catch {
            guard case .conflict = error else { throw error }
        }
    }
}

/// `commit`: several writes, all or nothing, on every backend.
@Suite("Datastore multi-key commit")
struct StoreCommitTests {
    @Test("a commit applies every write, each readable afterwards", arguments: Backend.allCases)
    func appliesEveryWrite(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let existing = try await store.create(prefix + "existing", value: bytes("old"))
        let doomed = try await store.create(prefix + "doomed", value: bytes("bye"))
        let results = try await store.commit([
            .create(key: prefix + "new", value: bytes("fresh")),
            .update(key: prefix + "existing", value: bytes("new"), expectedRevision: existing.modRevision),
            .delete(key: prefix + "doomed", expectedRevision: doomed.modRevision),
        ])
        #expect(results.count == 3)
        #expect(results[0].value == bytes("fresh"))
        #expect(results[1].createRevision == existing.createRevision)
        #expect(results[1].modRevision > existing.modRevision)
        #expect(results[2].value == bytes("bye"))
        #expect(try await store.get(prefix + "new")?.value == bytes("fresh"))
        #expect(try await store.get(prefix + "existing")?.value == bytes("new"))
        #expect(try await store.get(prefix + "doomed") == nil)
        #expect(try await store.currentRevision() >= results[1].modRevision)
    }

    @Test("a failed condition names its key and changes nothing", arguments: Backend.allCases)
    func failedConditionChangesNothing(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let held = try await store.create(prefix + "held", value: bytes("v1"))
        let before = try await store.currentRevision()

        // The last write's compare fails: the create before it must not happen.
        await #expect(
            throws: StoreError.conflict(
                key: prefix + "held", expectedRevision: held.modRevision + 99,
                actualRevision: held.modRevision)
        ) {
            try await store.commit([
                .create(key: prefix + "a", value: bytes("x")),
                .update(key: prefix + "held", value: bytes("v2"), expectedRevision: held.modRevision + 99),
            ])
        }
        await #expect(throws: StoreError.alreadyExists(key: prefix + "held")) {
            try await store.commit([
                .create(key: prefix + "b", value: bytes("x")), .create(key: prefix + "held", value: bytes("x")),
            ])
        }
        await #expect(throws: StoreError.notFound(key: prefix + "missing")) {
            try await store.commit([
                .update(key: prefix + "held", value: bytes("v2"), expectedRevision: held.modRevision),
                .delete(key: prefix + "missing", expectedRevision: nil),
            ])
        }
        #expect(try await store.get(prefix + "a") == nil)
        #expect(try await store.get(prefix + "b") == nil)
        #expect(try await store.get(prefix + "held")?.value == bytes("v1"))
        if backend != .etcd {  // the shared etcd moves on with other suites' writes
            #expect(try await store.currentRevision() == before)
        }
    }

    @Test("a key may appear once per commit", arguments: Backend.allCases)
    func refusesARepeatedKey(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        await #expect(throws: StoreError.self) {
            try await store.commit([
                .create(key: prefix + "twice", value: bytes("1")),
                .delete(key: prefix + "twice", expectedRevision: nil),
            ])
        }
        #expect(try await store.get(prefix + "twice") == nil)
    }

    @Test("watchers see every write of a commit", arguments: Backend.allCases)
    func watchersSeeEveryWrite(backend: Backend) async throws {
        let (store, prefix, cleanup) = try backend.open()
        defer { Task { await cleanup() } }
        let start = try await store.currentRevision()
        let events = store.watch(prefix: prefix, after: start)
        try await store.commit([
            .create(key: prefix + "one", value: bytes("1")), .create(key: prefix + "two", value: bytes("2")),
        ])
        let seen = try await collect(events, count: 2)
        #expect(
            Set(seen.compactMap { event -> String? in if case .added(let kv) = event { kv.key } else { nil } })
                == [prefix + "one", prefix + "two"])
    }
}
