import CTabbySQLite
import Foundation
import GRDB
import Synchronization

/// The embedded datastore: one SQLite file in WAL mode, shared by every Tabby process on the node
/// (each CNI call is its own process).
///
/// Every write is one IMMEDIATE transaction (SQLite's file lock serialises writers across
/// processes; a writer waits up to `busyTimeout` for it) that reads the store revision, bumps it,
/// and writes the key and a change-log row. Watches poll the change log, so they see writes from
/// every process. See `SQLiteSchema` for the layout.
public final class SQLiteStore: KeyValueStore {
    public let configuration: SQLiteStoreConfiguration

    public var name: String { configuration.path }

    private struct State {
        /// A pool, or one connection (`singleConnection`); nil once closed.
        var pool: (any DatabaseWriter)?
        var watches: [UInt64: Task<Void, Never>] = [:]
        var nextWatchID: UInt64 = 0
    }

    /// The `state` lock guards the connection pool (nil after `close()`) and the running watch
    /// tasks. Never held across an await or a database access.
    private let state: Mutex<State>

    /// Opens (creating when missing) the datastore file at `configuration.path`.
    public init(configuration: SQLiteStoreConfiguration) throws(StoreError) {
        try configuration.validate()
        let path = configuration.path
        try SQLiteFiles.prepare(path: path)

        var grdbConfiguration = Configuration()
        grdbConfiguration.busyMode = .timeout(configuration.busyTimeoutSeconds)
        grdbConfiguration.maximumReaderCount = 4
        grdbConfiguration.label = "TabbyStore"
        let pool: any DatabaseWriter
        do {
            try SQLiteSchema.checkHeader(path: path)
            if configuration.singleConnection {
                // A queue does not switch the file to WAL by itself (a new file must be WAL, so
                // that long-lived processes' readers never block this writer).
                // Closing it leaves the WAL for a long-lived process to checkpoint: a CNI call
                // then spends no fsyncs on a checkpoint and no time re-creating -wal and -shm.
                grdbConfiguration.prepareDatabase { db in
                    try db.execute(sql: "PRAGMA journal_mode = WAL")
                    // ...but a short WAL: the first connection to open the file (every CNI call
                    // when no agent holds it open) rebuilds the WAL index by reading the whole
                    // WAL, so keep it to about 64 pages by checkpointing from these commits too.
                    try db.execute(sql: "PRAGMA wal_autocheckpoint = 64")
                    let code = tb_sqlite_defer_checkpoints(UnsafeMutableRawPointer(db.sqliteConnection))
                    if code != 0 { throw DatabaseError(resultCode: ResultCode(rawValue: code)) }
                }
                pool = try DatabaseQueue(path: path, configuration: grdbConfiguration)
            } else {
                pool = try DatabasePool(path: path, configuration: grdbConfiguration)
            }
        } catch {
            throw SQLiteErrorMapping.storeError(error, path: path, busyTimeout: configuration.busyTimeout)
        }
        do {
            // GRDB picks synchronous=NORMAL for WAL, which may lose the last commits on power loss;
            // a committed write must survive, so sync the WAL on every commit.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try SQLiteSchema.prepare(pool, path: path)
        } catch {
            try? pool.close()
            throw SQLiteErrorMapping.storeError(error, path: path, busyTimeout: configuration.busyTimeout)
        }
        self.configuration = configuration
        self.state = Mutex(State(pool: pool))
    }

    deinit {
        let tasks = state.withLock { Array($0.watches.values) }
        for task in tasks { task.cancel() }
    }

    // MARK: - Reads

    public func get(_ key: String) async throws(StoreError) -> KeyValue? {
        try await read { db in try Self.fetchKeyValue(db, key: key) }
    }

    public func list(prefix: String) async throws(StoreError) -> (items: [KeyValue], revision: Revision) {
        let path = name
        let range = SQLiteKeyRange(prefix: prefix)
        let result = try await read { db in
            let meta = try Self.fetchMeta(db, path: path)
            let rows = try Row.fetchAll(db, sql: SQLiteStatements.selectRange(range), arguments: range.arguments)
            let items = rows.map { row in
                KeyValue(
                    key: row["key"], value: row["value"], createRevision: row["create_revision"],
                    modRevision: row["mod_revision"])
            }
            return ListResult(items: items, revision: meta.revision)
        }
        return (result.items, result.revision)
    }

    public func currentRevision() async throws(StoreError) -> Revision {
        let path = name
        return try await read { db in try Self.fetchMeta(db, path: path).revision }
    }

    // MARK: - Writes

    /// One IMMEDIATE transaction: a failed condition throws, which rolls back the writes before it.
    @discardableResult
    public func commit(_ writes: [StoreWrite]) async throws(StoreError) -> [KeyValue] {
        try StoreWrite.checkDistinct(writes, store: name)
        let path = name
        let retention = Revision(configuration.historyRetention)
        return try await write { db in
            var results: [KeyValue] = []
            for write in writes { results.append(try Self.apply(write, db: db, path: path, retention: retention)) }
            return results
        }
    }

    /// One write inside a transaction: the key, a log row, and the store revision bumped.
    private static func apply(_ write: StoreWrite, db: Database, path: String, retention: Revision) throws
        -> KeyValue
    {
        let existing = try fetchKeyValue(db, key: write.key)
        try write.checkCondition(current: existing)
        let meta = try fetchMeta(db, path: path)
        let revision = meta.revision + 1
        let result: KeyValue
        switch write {
        case .create(let key, let value):
            try db.execute(sql: SQLiteStatements.insertKey, arguments: [key, value, revision, revision])
            try db.execute(sql: SQLiteStatements.logCreate, arguments: [revision, key, value, revision])
            result = KeyValue(key: key, value: value, createRevision: revision, modRevision: revision)
        case .update(let key, let value, _):
            let existing = existing!
            try db.execute(sql: SQLiteStatements.updateKey, arguments: [value, revision, key])
            try db.execute(
                sql: SQLiteStatements.logUpdate,
                arguments: [
                    revision, key, value, existing.createRevision, existing.value, existing.createRevision,
                    existing.modRevision,
                ])
            result = KeyValue(key: key, value: value, createRevision: existing.createRevision, modRevision: revision)
        case .delete(let key, _):
            let existing = existing!
            try db.execute(sql: SQLiteStatements.deleteKey, arguments: [key])
            try db.execute(
                sql: SQLiteStatements.logDelete,
                arguments: [
                    revision, key, existing.createRevision, existing.value, existing.createRevision,
                    existing.modRevision,
                ])
            result = existing
        }
        try commitRevision(db, revision: revision, meta: meta, retention: retention)
        return result
    }

    public func compact(through revision: Revision) async throws(StoreError) {
        let path = name
        try await write { db in
            let meta = try Self.fetchMeta(db, path: path)
            if revision > meta.revision {
                throw StoreError.backend(
                    store: path,
                    reason: "cannot compact through revision \(revision): the store is only at revision "
                        + "\(meta.revision)")
            }
            guard revision > meta.compactedRevision else { return }
            try db.execute(sql: SQLiteStatements.deleteLogThrough, arguments: [revision])
            try db.execute(sql: SQLiteStatements.updateCompacted, arguments: [revision])
        }
    }

    // MARK: - Watch

    public func watch(prefix: String, after revision: Revision) -> AsyncThrowingStream<WatchEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchEvent, any Error>.makeStream()
        let id = state.withLock { state in
            state.nextWatchID += 1
            return state.nextWatchID
        }
        // Set before the task exists, so a termination from either side always finds it.
        continuation.onTermination = { [weak self] _ in self?.stopWatch(id) }
        let poller = SQLiteWatchPoller(
            range: SQLiteKeyRange(prefix: prefix), pollInterval: configuration.watchPollInterval, path: name,
            busyTimeout: configuration.busyTimeout)
        let started = state.withLock { state -> Bool in
            guard let pool = state.pool else { return false }
            state.watches[id] = Task {
                await poller.run(pool: pool, after: revision, continuation: continuation)
            }
            return true
        }
        if !started {
            continuation.finish(throwing: closedError)
        }
        return stream
    }

    private func stopWatch(_ id: UInt64) {
        let task = state.withLock { $0.watches.removeValue(forKey: id) }
        task?.cancel()
    }

    // MARK: - Close

    public func close() async {
        let (pool, tasks) = state.withLock { state in
            let taken = (state.pool, Array(state.watches.values))
            state.pool = nil
            state.watches = [:]
            return taken
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        guard let pool else { return }
        // Close the readers first (releaseMemory waits for reads in flight), so that the writer is
        // this process's last connection: when no other process has the file open, closing it
        // checkpoints the WAL into the database file and removes the -wal file. On failure GRDB
        // leaves the pool usable; it closes when released.
        // Both calls block until reads in flight finish, and an async read only gives its
        // connection back on a Swift concurrency thread: run them on a Dispatch thread, never on
        // the cooperative pool, which they could otherwise starve into a deadlock.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                (pool as? DatabasePool)?.releaseMemory()
                try? pool.close()
                continuation.resume()
            }
        }
    }

    // MARK: - Helpers

    private var closedError: StoreError {
        .unavailable(store: name, reason: "the store \(name) has been closed; open it again")
    }

    private func currentPool() throws(StoreError) -> any DatabaseWriter {
        guard let pool = state.withLock({ $0.pool }) else { throw closedError }
        return pool
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(StoreError) -> T {
        let pool = try currentPool()
        do {
            // One connection in a one-shot process: run on this thread, no hop to GRDB's queue
            // and back (a CNI ADD makes a dozen of these calls).
            if configuration.singleConnection { return try Self.readHere(pool, body) }
            return try await pool.read(body)
        } catch {
            throw SQLiteErrorMapping.storeError(error, path: name, busyTimeout: configuration.busyTimeout)
        }
    }

    /// Runs `body` in one IMMEDIATE transaction: it holds the write lock of every process from its
    /// first read to its commit, so read-bump-write is atomic across processes.
    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(StoreError) -> T {
        let pool = try currentPool()
        do {
            // IMMEDIATE, explicitly: a deferred transaction that reads and then writes can fail
            // with SQLITE_BUSY at the upgrade without waiting for the busy timeout.
            let transaction: @Sendable (Database) throws -> T = { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
            if configuration.singleConnection { return try Self.writeHere(pool, transaction) }
            return try await pool.writeWithoutTransaction(transaction)
        } catch {
            throw SQLiteErrorMapping.storeError(error, path: name, busyTimeout: configuration.busyTimeout)
        }
    }

    // Synchronous access, in functions that are not async so that GRDB's blocking overloads are
    // the ones chosen.
    private static func readHere<T>(_ pool: any DatabaseWriter, _ body: (Database) throws -> T) throws -> T {
        try pool.read(body)
    }

    private static func writeHere<T>(_ pool: any DatabaseWriter, _ body: (Database) throws -> T) throws -> T {
        try pool.writeWithoutTransaction(body)
    }

    static func fetchMeta(_ db: Database, path: String) throws -> SQLiteMeta {
        guard let row = try Row.fetchOne(db, sql: SQLiteStatements.selectMeta) else {
            throw SQLiteMeta.missing(path: path)
        }
        return SQLiteMeta(revision: row["revision"], compactedRevision: row["compacted_revision"])
    }

    private static func fetchKeyValue(_ db: Database, key: String) throws -> KeyValue? {
        guard
            let row = try Row.fetchOne(db, sql: SQLiteStatements.selectKey, arguments: [key])
        else { return nil }
        return KeyValue(
            key: key, value: row["value"], createRevision: row["create_revision"], modRevision: row["mod_revision"])
    }

    /// Records `revision` as the store revision and, once history exceeds the retention by a
    /// tenth of it (so the cost is amortised over many writes), compacts it back to the retention.
    private static func commitRevision(_ db: Database, revision: Revision, meta: SQLiteMeta, retention: Revision) throws
    {
        var compacted = meta.compactedRevision
        let batch = max(1, retention / 10)
        if revision - compacted - retention >= batch {
            compacted = revision - retention
            try db.execute(sql: SQLiteStatements.deleteLogThrough, arguments: [compacted])
        }
        try db.execute(sql: SQLiteStatements.updateMeta, arguments: [revision, compacted])
    }
}

/// The `meta` row.
struct SQLiteMeta: Sendable {
    var revision: Revision
    var compactedRevision: Revision

    static func missing(path: String) -> StoreError {
        .corrupted(
            store: path,
            reason: "\(path) has no revision row (table meta is empty); restore it from a backup or move it away")
    }
}

private struct ListResult: Sendable {
    var items: [KeyValue]
    var revision: Revision
}
