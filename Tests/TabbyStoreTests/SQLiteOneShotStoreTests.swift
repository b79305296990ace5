import Foundation
import TabbyTestSupport
import Testing

@testable import TabbyStore

private func data(_ string: String) -> Data { Data(string.utf8) }

/// `SQLiteOneShotStore` shares the file with `SQLiteStore` (tabbyd's pool): both must write the
/// same rows and read each other's. The contract tests are in `StoreConformanceTests`, the file
/// and damage tests in `SQLiteStoreFileTests` (both run against this store too).
@Suite("SQLiteOneShotStore: one file with SQLiteStore")
struct SQLiteOneShotStoreTests {
    /// Every kind of write, an empty value, a value that is not UTF-8, and automatic compaction.
    private static func writeSample(_ store: any KeyValueStore) async throws {
        let a = try await store.create("/s/a", value: data("one"))
        try await store.create("/s/empty", value: Data())
        try await store.create("/s/bytes", value: Data([0, 0xFF, 0xC3, 0x28, 0]))
        try await store.commit([
            .update(key: "/s/a", value: data("two"), expectedRevision: a.modRevision),
            .create(key: "/s/é/\u{10FFFF}", value: data("x")),
        ])
        try await store.create("/s/gone", value: data("g"))
        try await store.delete("/s/gone", expectedRevision: nil)
        for index in 0..<30 { try await store.create("/s/n/\(index)", value: data("\(index)")) }
        try await store.compact(through: 3)
    }

    /// The rows and header fields as text, with SQLite's own quoting and storage classes.
    private static func dump(_ path: String) throws -> String {
        let sql = """
            SELECT 'meta', revision, compacted_revision FROM meta;
            SELECT 'kv', quote(key), typeof(key), quote(value), typeof(value), create_revision, mod_revision
                FROM kv ORDER BY key;
            SELECT 'log', revision, quote(key), type, quote(value), typeof(value), create_revision,
                quote(prev_value), typeof(prev_value), prev_create_revision, prev_mod_revision FROM log ORDER BY revision;
            PRAGMA user_version; PRAGMA application_id; PRAGMA journal_mode;
            """
        let result = try ChildProcess.run(try #require(SQLiteTestSupport.sqlite3), [path, sql])
        #expect(result.status == 0, "sqlite3 failed: \(result.stderr)")
        return result.stdout
    }

    @Test("writes exactly the rows SQLiteStore writes", .enabled(if: SQLiteTestSupport.sqlite3 != nil))
    func sameRows() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            var dumps: [String] = []
            for kind in SQLiteStoreKind.allCases {
                let path = (directory as NSString).appendingPathComponent("\(kind.rawValue).db")
                let store = try kind.open(SQLiteStoreConfiguration(path: path, historyRetention: 10))
                try await Self.writeSample(store)
                await store.close()
                dumps.append(try Self.dump(path))
            }
            #expect(dumps[0].contains("wal"))
            #expect(dumps[0].contains("X'00FFC32800'|blob"))
            #expect(dumps[0] == dumps[1])
        }
    }

    @Test("each store reads what the other writes, both open on the file at once")
    func interleaved() async throws {
        try await SQLiteTestSupport.withStore { pool, path in
            let oneShot = try SQLiteOneShotStore(configuration: SQLiteStoreConfiguration(path: path))
            let watch = pool.watch(prefix: "/i/", after: 0)
            let first = try await oneShot.create("/i/k", value: data("1"))
            #expect(try await pool.get("/i/k") == first)
            let second = try await pool.update("/i/k", value: Data(), expectedRevision: first.modRevision)
            #expect(try await oneShot.get("/i/k") == second)
            await #expect(throws: StoreError.conflict(key: "/i/k", expectedRevision: 1, actualRevision: 2)) {
                try await oneShot.update("/i/k", value: data("stale"), expectedRevision: 1)
            }
            let third = try await oneShot.create("/i/l", value: data("3"))
            let listed = try await pool.list(prefix: "/i/")
            #expect(listed.items == [second, third])
            #expect(listed.revision == 3)
            let listedByOneShot = try await oneShot.list(prefix: "/i/")
            #expect(listedByOneShot.items == listed.items)
            #expect(listedByOneShot.revision == listed.revision)
            #expect(try await oneShot.currentRevision() == 3)
            let deleted = try await oneShot.delete("/i/k", expectedRevision: 2)
            #expect(deleted == second)

            // The pool's watch sees the one-shot store's writes, with previous values.
            let events = try await SQLiteTestSupport.collect(watch, count: 4)
            #expect(
                events == [
                    .added(first), .modified(second, previous: first), .added(third),
                    .deleted(key: "/i/k", revision: 4, previous: second),
                ])
            // ...and the one-shot store's watch sees the pool's.
            let oneShotWatch = oneShot.watch(prefix: "/i/", after: 4)
            let fifth = try await pool.create("/i/m", value: data("5"))
            #expect(try await SQLiteTestSupport.collect(oneShotWatch, count: 1) == [.added(fifth)])
            await oneShot.close()
        }
    }

    @Test("closing leaves the WAL for a long-lived process to checkpoint")
    func closeKeepsWAL() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteOneShotStore(configuration: SQLiteStoreConfiguration(path: path))
            let created = try await store.create("/k", value: data("v"))
            await store.close()
            await store.close()  // idempotent
            #expect(FileManager.default.fileExists(atPath: path + "-wal"))
            #expect(FileManager.default.fileExists(atPath: path + "-shm"))

            // The next process finds the write in the WAL.
            let pool = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            #expect(try await pool.get("/k") == created)
            await pool.close()
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        }
    }

    @Test("a closed store refuses operations with unavailable, and its watches end")
    func closedStore() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteOneShotStore(configuration: SQLiteStoreConfiguration(path: path))
            let running = store.watch(prefix: "", after: 0)
            await store.close()
            await #expect {
                try await store.get("/k")
            } throws: { error in
                guard case .unavailable(let store, _) = error as? StoreError else { return false }
                return store == path
            }
            await #expect(throws: StoreError.self) { try await store.commit([.create(key: "/k", value: Data())]) }
            #expect(try await SQLiteTestSupport.ends(running, within: .seconds(10)))
            var iterator = store.watch(prefix: "", after: 0).makeAsyncIterator()
            await #expect(throws: StoreError.self) { try await iterator.next() }
        }
    }

    @Test("a failed commit rolls back and leaves the connection usable")
    func rollback() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteOneShotStore(configuration: SQLiteStoreConfiguration(path: path))
            try await store.create("/k", value: data("1"))
            await #expect(throws: StoreError.alreadyExists(key: "/k")) {
                try await store.commit([.create(key: "/new", value: data("n")), .create(key: "/k", value: data("2"))])
            }
            #expect(try await store.get("/new") == nil)
            #expect(try await store.currentRevision() == 1)
            #expect(try await store.create("/new", value: data("n")).modRevision == 2)
            await store.close()
        }
    }
}
