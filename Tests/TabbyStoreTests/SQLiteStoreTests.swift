import Foundation
import Testing

@testable import TabbyStore

private func data(_ string: String) -> Data { Data(string.utf8) }

@Suite("SQLiteStore: key/value operations")
struct SQLiteStoreOperationTests {
    @Test("create, get, update, delete")
    func crud() async throws {
        try await SQLiteTestSupport.withStore { store, path in
            #expect(store.name == path)
            #expect(try await store.currentRevision() == 0)
            #expect(try await store.get("/a") == nil)

            let created = try await store.create("/a", value: data("one"))
            #expect(created == KeyValue(key: "/a", value: data("one"), createRevision: 1, modRevision: 1))
            #expect(try await store.get("/a") == created)

            let updated = try await store.update("/a", value: data("two"), expectedRevision: 1)
            #expect(updated == KeyValue(key: "/a", value: data("two"), createRevision: 1, modRevision: 2))
            #expect(try await store.get("/a") == updated)

            let deleted = try await store.delete("/a", expectedRevision: 2)
            #expect(deleted == updated)
            #expect(try await store.get("/a") == nil)
            #expect(try await store.currentRevision() == 3)

            // Re-created keys start a new life; empty values round-trip.
            let again = try await store.create("/a", value: Data())
            #expect(again == KeyValue(key: "/a", value: Data(), createRevision: 4, modRevision: 4))
            #expect(try await store.get("/a") == again)
            // A delete without an expected revision deletes whatever is there.
            #expect(try await store.delete("/a", expectedRevision: nil) == again)
        }
    }

    @Test("create of an existing key fails with alreadyExists")
    func createTwice() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            try await store.create("/k", value: data("1"))
            await #expect(throws: StoreError.alreadyExists(key: "/k")) {
                try await store.create("/k", value: data("2"))
            }
            #expect(try await store.get("/k")?.value == data("1"))
            #expect(try await store.currentRevision() == 1)
        }
    }

    @Test("update and delete at a stale revision fail with the actual revision")
    func staleRevision() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            try await store.create("/k", value: data("1"))
            try await store.update("/k", value: data("2"), expectedRevision: 1)
            await #expect(throws: StoreError.conflict(key: "/k", expectedRevision: 1, actualRevision: 2)) {
                try await store.update("/k", value: data("3"), expectedRevision: 1)
            }
            await #expect(throws: StoreError.conflict(key: "/k", expectedRevision: 1, actualRevision: 2)) {
                try await store.delete("/k", expectedRevision: 1)
            }
            #expect(try await store.get("/k")?.value == data("2"))
            #expect(try await store.currentRevision() == 2)
        }
    }

    @Test("update and delete of a missing key fail with notFound")
    func missingKey() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            await #expect(throws: StoreError.notFound(key: "/nope")) {
                try await store.delete("/nope", expectedRevision: nil)
            }
            await #expect(throws: StoreError.notFound(key: "/nope")) {
                try await store.delete("/nope", expectedRevision: 3)
            }
            await #expect(throws: StoreError.notFound(key: "/nope")) {
                try await store.update("/nope", value: data("x"), expectedRevision: 1)
            }
            let revision = try await store.currentRevision()
            #expect(revision == 0)
        }
    }

    @Test("list returns the keys under a prefix, sorted, with the revision read")
    func listByPrefix() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            for key in ["/a/z", "/ab", "/a/b", "/a", "/b/1", "/a/\u{10FFFF}", "/a/é", "/a0"] {
                try await store.create(key, value: data(key))
            }
            let (items, revision) = try await store.list(prefix: "/a/")
            #expect(items.map(\.key) == ["/a/b", "/a/z", "/a/é", "/a/\u{10FFFF}"])
            #expect(items.allSatisfy { $0.value == data($0.key) })
            #expect(revision == 8)

            #expect(
                try await store.list(prefix: "/a").items.map(\.key) == [
                    "/a", "/a/b", "/a/z", "/a/é", "/a/\u{10FFFF}", "/a0", "/ab",
                ])
            #expect(try await store.list(prefix: "").items.count == 8)
            #expect(try await store.list(prefix: "/c/").items.isEmpty)
            #expect(try await store.list(prefix: "/a/\u{10FFFF}").items.map(\.key) == ["/a/\u{10FFFF}"])
        }
    }

    @Test(
        "prefix upper bounds",
        arguments: [
            ("/a/", "/a0"), ("", nil), ("a\u{D7FF}", "a\u{E000}"), ("a\u{10FFFF}", "b"), ("\u{10FFFF}", nil),
        ] as [(String, String?)])
    func prefixUpperBound(prefix: String, upper: String?) {
        #expect(SQLiteKeyRange.upperBound(of: prefix) == upper)
    }

    @Test("concurrent writers in one process get distinct revisions")
    func concurrentWrites() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            let revisions = try await withThrowingTaskGroup(of: Revision.self) { group in
                for index in 0..<50 {
                    group.addTask { try await store.create("/c/\(index)", value: data("\(index)")).modRevision }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(revisions) == Set(1...50))
            #expect(try await store.list(prefix: "/c/").items.count == 50)
        }
    }

    @Test("data survives close and reopen; revisions continue")
    func reopen() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let first = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            try await first.create("/k", value: data("kept"))
            try await first.create("/gone", value: data("x"))
            try await first.delete("/gone", expectedRevision: nil)
            await first.close()
            await first.close()  // idempotent

            let second = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            #expect(
                try await second.get("/k")
                    == KeyValue(key: "/k", value: data("kept"), createRevision: 1, modRevision: 1))
            #expect(try await second.get("/gone") == nil)
            #expect(try await second.currentRevision() == 3)
            #expect(try await second.create("/next", value: data("y")).modRevision == 4)
            await second.close()
        }
    }

    @Test("a closed store refuses operations with unavailable")
    func closedStore() async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            await store.close()
            await #expect {
                try await store.get("/k")
            } throws: { error in
                guard case .unavailable(let store, _) = error as? StoreError else { return false }
                return store == path
            }
            var iterator = store.watch(prefix: "", after: 0).makeAsyncIterator()
            await #expect(throws: StoreError.self) { try await iterator.next() }
        }
    }

    @Test("bad configurations fail with invalidConfiguration", arguments: SQLiteStoreKind.allCases)
    func invalidConfiguration(kind: SQLiteStoreKind) throws {
        for configuration in [
            SQLiteStoreConfiguration(path: ""),
            SQLiteStoreConfiguration(path: ":memory:"),
            SQLiteStoreConfiguration(path: "/tmp/x.db", historyRetention: 0),
            SQLiteStoreConfiguration(path: "/tmp/x.db", watchPollInterval: .zero),
        ] {
            #expect {
                _ = try kind.open(configuration)
            } throws: { error in
                guard case .invalidConfiguration = error as? StoreError else { return false }
                return true
            }
        }
    }
}

@Suite("SQLiteStore: watch and compaction")
struct SQLiteStoreWatchTests {
    @Test("watch from a revision delivers added, modified and deleted in order, with previous values")
    func watchHistoryAndLive() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            let a1 = try await store.create("/w/a", value: data("1"))  // 1
            try await store.create("/other", value: data("x"))  // 2, not under /w/
            let a2 = try await store.update("/w/a", value: data("2"), expectedRevision: 1)  // 3
            try await store.delete("/w/a", expectedRevision: 3)  // 4

            let stream = store.watch(prefix: "/w/", after: 0)
            let history = try await SQLiteTestSupport.collect(stream, count: 3)
            #expect(
                history == [
                    .added(a1),
                    .modified(a2, previous: a1),
                    .deleted(key: "/w/a", revision: 4, previous: a2),
                ])

            // Live: writes after the watch started.
            let live = store.watch(prefix: "/w/", after: 4)
            let b1 = try await store.create("/w/b", value: data("b"))  // 5
            try await store.create("/wx", value: data("not a child"))  // 6
            let b2 = try await store.update("/w/b", value: data("b2"), expectedRevision: 5)  // 7
            let events = try await SQLiteTestSupport.collect(live, count: 2)
            #expect(events == [.added(b1), .modified(b2, previous: b1)])
            #expect(events.map(\.revision) == [5, 7])
        }
    }

    @Test("watch resumes after a revision")
    func watchResume() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            for index in 1...5 {
                try await store.create("/r/\(index)", value: data("\(index)"))
            }
            let events = try await SQLiteTestSupport.collect(store.watch(prefix: "/r/", after: 3), count: 2)
            #expect(events.map(\.revision) == [4, 5])
            #expect(events.first == .added(KeyValue(key: "/r/4", value: data("4"), createRevision: 4, modRevision: 4)))
        }
    }

    @Test("watch delivers more changes than one polling batch, in order")
    func watchLargeBacklog() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            let count = SQLiteWatchPoller.batchSize * 2 + 7
            for index in 0..<count {
                try await store.create("/many/\(index)", value: data("\(index)"))
            }
            let events = try await SQLiteTestSupport.collect(store.watch(prefix: "/many/", after: 0), count: count)
            #expect(events.map(\.revision) == Array(1...Revision(count)))
        }
    }

    @Test("watch before the compacted revision gets resyncRequired, then ends")
    func resyncAfterCompaction() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            for index in 1...4 {
                try await store.create("/c/\(index)", value: data("\(index)"))
            }
            try await store.compact(through: 2)
            try await store.compact(through: 1)  // older: no effect

            let stale = store.watch(prefix: "/c/", after: 1)
            let events = try await SQLiteTestSupport.collect(stale, count: 2, timeout: .seconds(10))
            #expect(events == [.resyncRequired(compactedRevision: 2)])

            let fresh = try await SQLiteTestSupport.collect(store.watch(prefix: "/c/", after: 2), count: 2)
            #expect(fresh.map(\.revision) == [3, 4])

            await #expect(throws: StoreError.self) { try await store.compact(through: 99) }
        }
    }

    @Test("a watch overtaken by compaction while running gets resyncRequired")
    func resyncWhileWatching() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            try await store.create("/c/1", value: data("1"))  // 1
            let stream = store.watch(prefix: "/nothing/", after: 1)
            try await Task.sleep(for: .milliseconds(50))
            try await store.create("/c/2", value: data("2"))  // 2
            try await store.create("/c/3", value: data("3"))  // 3
            try await store.compact(through: 3)
            // The watch has either passed revision 3 already (no events: /nothing/ is empty) or
            // must resync; it must not hang or skip silently past a gap.
            try await store.create("/nothing/x", value: data("x"))  // 4
            let events = try await SQLiteTestSupport.collect(stream, count: 1)
            #expect(
                events == [.resyncRequired(compactedRevision: 3)]
                    || events.map(\.revision) == [4])
        }
    }

    @Test("automatic compaction keeps the configured retention")
    func automaticRetention() async throws {
        try await SQLiteTestSupport.withStore(historyRetention: 5) { store, _ in
            for index in 1...30 {
                try await store.create("/k/\(index)", value: data("\(index)"))
            }
            let events = try await SQLiteTestSupport.collect(store.watch(prefix: "", after: 0), count: 2)
            guard case .resyncRequired(let compacted) = events.first, events.count == 1 else {
                Issue.record("expected a single resyncRequired, got \(events)")
                return
            }
            #expect(compacted >= 20 && compacted <= 25)
            // The last `historyRetention` revisions are always there.
            let recent = try await SQLiteTestSupport.collect(store.watch(prefix: "", after: 25), count: 5)
            #expect(recent.map(\.revision) == [26, 27, 28, 29, 30])
        }
    }

    @Test("cancelling the consumer stops the watch")
    func cancellation() async throws {
        try await SQLiteTestSupport.withStore { store, _ in
            let consumer = Task {
                var count = 0
                for try await _ in store.watch(prefix: "", after: 0) { count += 1 }
                return count
            }
            try await store.create("/x", value: data("x"))
            try await Task.sleep(for: .milliseconds(100))
            consumer.cancel()
            let delivered = try await consumer.value
            #expect(delivered <= 1)
        }
    }
}

@Suite("SQLiteStore: files, permissions and damaged stores")
struct SQLiteStoreFileTests {
    @Test("creates its directory 0700 and the database, -wal and -shm files 0600", arguments: SQLiteStoreKind.allCases)
    func fileModes(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let storeDirectory = (directory as NSString).appendingPathComponent("var/lib/tabby")
            let path = (storeDirectory as NSString).appendingPathComponent("tabby.db")
            let store = try kind.open(SQLiteStoreConfiguration(path: path))
            try await store.create("/k", value: data("v"))
            #expect(try SQLiteTestSupport.mode(of: storeDirectory) == 0o700)
            #expect(try SQLiteTestSupport.mode(of: path) == 0o600)
            #expect(try SQLiteTestSupport.mode(of: path + "-wal") == 0o600)
            #expect(try SQLiteTestSupport.mode(of: path + "-shm") == 0o600)
            await store.close()
        }
    }

    @Test(
        "a file of garbage is reported corrupted and left byte-for-byte unchanged", arguments: SQLiteStoreKind.allCases)
    func garbageFile(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            var generator = SystemRandomNumberGenerator()
            let garbage = Data((0..<8192).map { _ in UInt8.random(in: 0...255, using: &generator) })
            try garbage.write(to: URL(fileURLWithPath: path))
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .corrupted(let store, let reason) = error as? StoreError else { return false }
                return store == path && reason.contains(path) && reason.contains("move it away")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
        }
    }

    @Test("a text file is reported corrupted and left unchanged", arguments: SQLiteStoreKind.allCases)
    func textFile(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let text = Data(String(repeating: "this is not a database\n", count: 200).utf8)
            try text.write(to: URL(fileURLWithPath: path))
            #expect(throws: StoreError.self) {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == text)
        }
    }

    @Test("a store written by a newer Tabby is refused with a clear error", arguments: SQLiteStoreKind.allCases)
    func newerSchema(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            try await store.create("/k", value: data("v"))
            await store.close()
            // Closing the last connection checkpoints the WAL into the file; then bump the
            // header's user_version (big-endian at offset 60) as a future Tabby would.
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes.replaceSubrange(60..<64, with: [0, 0, 0, 99])
            try bytes.write(to: URL(fileURLWithPath: path))

            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .unavailable(_, let reason) = error as? StoreError else { return false }
                return reason.contains("schema version 99") && reason.contains("upgrade Tabby")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
        }
    }

    @Test("a directory where the file should be is a typed error", arguments: SQLiteStoreKind.allCases)
    func directoryInsteadOfFile(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .unavailable(let store, let reason) = error as? StoreError else { return false }
                return store == path && reason.contains("is a directory")
            }
        }
    }

    @Test("a path under a regular file is a typed error", arguments: SQLiteStoreKind.allCases)
    func pathUnderFile(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let file = (directory as NSString).appendingPathComponent("plain")
            try data("x").write(to: URL(fileURLWithPath: file))
            let path = (file as NSString).appendingPathComponent("sub/tabby.db")
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .unavailable(let store, let reason) = error as? StoreError else { return false }
                return store == path && reason.contains(file)
            }
        }
    }

    @Test(
        "an unreadable file is permissionDenied (skipped as root)", .enabled(if: getuid() != 0),
        arguments: SQLiteStoreKind.allCases)
    func unreadableFile(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            await store.close()
            try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: path)
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .permissionDenied = error as? StoreError else { return false }
                return true
            }
        }
    }

    @Test("another program's SQLite database is refused and left unchanged", arguments: SQLiteStoreKind.allCases)
    func foreignDatabase(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            await store.close()
            // Same file, other application_id (big-endian at offset 68).
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes.replaceSubrange(68..<72, with: [1, 2, 3, 4])
            try bytes.write(to: URL(fileURLWithPath: path))
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .corrupted(_, let reason) = error as? StoreError else { return false }
                return reason.contains("another program")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
        }
    }

    @Test("damaged pages in a valid file are reported corrupted", arguments: SQLiteStoreKind.allCases)
    func damagedPages(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: path))
            for index in 0..<40 {
                try await store.create("/k/\(index)", value: Data(repeating: UInt8(index), count: 1000))
            }
            await store.close()
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            try #require(bytes.count > 8192)
            bytes.replaceSubrange(4096..<bytes.count, with: Data(repeating: 0xA5, count: bytes.count - 4096))
            try bytes.write(to: URL(fileURLWithPath: path))

            await #expect {
                let reopened = try kind.open(SQLiteStoreConfiguration(path: path))
                defer { Task { await reopened.close() } }
                _ = try await reopened.list(prefix: "/k/")
            } throws: { error in
                guard case .corrupted(let store, let reason) = error as? StoreError else { return false }
                return store == path && reason.contains("restore it from a backup")
            }
        }
    }

    @Test(
        "another program's rollback-journal database is refused without being touched",
        .enabled(if: SQLiteTestSupport.sqlite3 != nil), arguments: SQLiteStoreKind.allCases)
    func foreignRollbackDatabase(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            try SQLiteTestSupport.runSQLite3(path, "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
            let before = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect {
                _ = try kind.open(SQLiteStoreConfiguration(path: path))
            } throws: { error in
                guard case .corrupted(_, let reason) = error as? StoreError else { return false }
                return reason.contains("not Tabby's")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        }
    }

    @Test(
        "a writer blocked by another process beyond busyTimeout gets unavailable",
        .enabled(if: SQLiteTestSupport.sqlite3 != nil), arguments: SQLiteStoreKind.allCases)
    func busyTimeout(kind: SQLiteStoreKind) async throws {
        try await SQLiteTestSupport.withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try kind.open(SQLiteStoreConfiguration(path: path, busyTimeout: .milliseconds(300)))

            // Another process takes the write lock and keeps it.
            let shell = Process()
            shell.executableURL = URL(fileURLWithPath: try #require(SQLiteTestSupport.sqlite3))
            shell.arguments = [path]
            let input = Pipe()
            let output = Pipe()
            shell.standardInput = input
            shell.standardOutput = output
            try shell.run()
            input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nSELECT 'locked';\n".utf8))
            var seen = ""
            while !seen.contains("locked") {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen += String(decoding: chunk, as: UTF8.self)
            }
            try #require(seen.contains("locked"))

            let started = ContinuousClock.now
            await #expect {
                try await store.create("/k", value: data("v"))
            } throws: { error in
                guard case .unavailable(let store, let reason) = error as? StoreError else { return false }
                return store == path && reason.contains("locked")
            }
            #expect(ContinuousClock.now - started >= .milliseconds(250))
            // Reads are not blocked by a writer (WAL).
            #expect(try await store.get("/k") == nil)

            input.fileHandleForWriting.write(Data("COMMIT;\n.quit\n".utf8))
            try input.fileHandleForWriting.close()
            shell.waitUntilExit()
            #expect(try await store.create("/k", value: data("v")).modRevision == 1)
            await store.close()
        }
    }
}
