import CTabbySQLite
import Foundation
import Synchronization

/// The embedded datastore for a process that opens it for one short call (each CNI call is its own
/// process): the same file, schema, statements, revision semantics and errors as `SQLiteStore`,
/// but through one `SQLiteConnection` on the calling thread instead of GRDB, whose per-connection
/// set-up (functions, collations, authorizer, format check) and per-access savepoints a one-shot
/// process pays for and never uses. It shares the file with every other process, `SQLiteStore`
/// pools included:
///
/// - every write is one `BEGIN IMMEDIATE` transaction (SQLite's file lock serialises writers
///   across processes; a writer waits up to `busyTimeout` for it), as in `SQLiteStore`;
/// - a read of one statement (get, the revision) needs no transaction; a read of several (list,
///   a watch round) runs in one deferred read transaction, so it sees one snapshot;
/// - each statement is prepared once and kept until `close()`;
/// - closing neither checkpoints the WAL nor deletes -wal and -shm (`tb_sqlite_defer_checkpoints`),
///   and the connection checkpoints from its own commits once the WAL passes 64 pages, exactly
///   like `SQLiteStore`'s `singleConnection` mode.
///
/// Each access blocks its thread (while waiting for a lock, up to `busyTimeout`): a one-shot
/// process has nothing else to run. Watches work (they poll, as `SQLiteStore`'s do), on the same
/// connection.
public final class SQLiteOneShotStore: KeyValueStore {
    public let configuration: SQLiteStoreConfiguration

    public var name: String { configuration.path }

    /// The connection, shared with the watch tasks; nil once closed.
    private final class Connection: Sendable {
        /// Guards the connection: every use of it holds this lock, for the whole access (a
        /// transaction included). Never held across an await.
        let lock: Mutex<SQLiteConnection?>
        let path: String
        let busyTimeout: Duration

        init(_ connection: sending SQLiteConnection, path: String, busyTimeout: Duration) {
            self.lock = Mutex(connection)
            self.path = path
            self.busyTimeout = busyTimeout
        }

        /// Runs `body` with the connection, outside any transaction (one statement).
        func access<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws(StoreError) -> T {
            do {
                return try lock.withLock { connection throws -> T in
                    guard let connection else {
                        throw StoreError.unavailable(
                            store: path, reason: "the store \(path) has been closed; open it again")
                    }
                    return try body(connection)
                }
            } catch {
                throw SQLiteErrorMapping.storeError(error, path: path, busyTimeout: busyTimeout)
            }
        }

        /// Runs `body` in one transaction: `BEGIN IMMEDIATE` (holding the write lock of every
        /// process from its first read to its commit, so read-bump-write is atomic across
        /// processes) or a deferred `BEGIN` for reads that must see one snapshot. Rolls back when
        /// `body` throws.
        func transaction<T: Sendable>(immediate: Bool, _ body: (SQLiteConnection) throws -> T) throws(StoreError)
            -> T
        {
            try access { connection in
                try connection.run(immediate ? "BEGIN IMMEDIATE" : "BEGIN")
                do {
                    let result = try body(connection)
                    try connection.run("COMMIT")
                    return result
                } catch {
                    if connection.inTransaction { try? connection.run("ROLLBACK") }
                    throw error
                }
            }
        }

        func close() {
            lock.withLock { connection in
                connection?.close()
                connection = nil
            }
        }
    }

    private struct Watches {
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var nextID: UInt64 = 0
        var closed = false
    }

    private let connection: Connection
    /// Guards the running watch tasks and whether `close()` has begun. Never held across an await
    /// or a database access.
    private let watches = Mutex(Watches())

    /// Opens (creating when missing) the datastore file at `configuration.path`, with the checks
    /// and errors of `SQLiteStore.init`. `configuration.singleConnection` is ignored: this store
    /// always has one connection.
    public init(configuration: SQLiteStoreConfiguration) throws(StoreError) {
        try configuration.validate()
        let path = configuration.path
        try SQLiteFiles.prepare(path: path)
        let opened: SQLiteConnection
        do {
            try SQLiteSchema.checkHeader(path: path)
            opened = try SQLiteConnection(
                path: path, readOnly: false, busyTimeoutSeconds: configuration.busyTimeoutSeconds)
        } catch {
            throw SQLiteErrorMapping.storeError(error, path: path, busyTimeout: configuration.busyTimeout)
        }
        do {
            // A new file must be WAL, so that long-lived processes' readers never block this
            // writer. A short WAL: the first connection to open the file (every CNI call when no
            // agent holds it open) rebuilds the WAL index by reading the whole WAL, so checkpoint
            // from these commits too once it passes 64 pages. A committed write must survive power
            // loss: sync the WAL on every commit.
            try opened.execute("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 64; PRAGMA synchronous = FULL")
            let code = tb_sqlite_defer_checkpoints(opened.rawHandle)
            if code != 0 { throw SQLiteConnection.Error(extendedCode: code, message: nil) }
            try SQLiteSchema.prepare(opened, path: path)
        } catch {
            opened.close()
            throw SQLiteErrorMapping.storeError(error, path: path, busyTimeout: configuration.busyTimeout)
        }
        self.configuration = configuration
        self.connection = Connection(opened, path: path, busyTimeout: configuration.busyTimeout)
    }

    deinit {
        let tasks = watches.withLock { Array($0.tasks.values) }
        for task in tasks { task.cancel() }
    }

    // MARK: - Reads

    public func get(_ key: String) async throws(StoreError) -> KeyValue? {
        try connection.access { connection in try Self.fetchKeyValue(connection, key: key) }
    }

    public func list(prefix: String) async throws(StoreError) -> (items: [KeyValue], revision: Revision) {
        let path = name
        let range = SQLiteKeyRange(prefix: prefix)
        let result = try connection.transaction(immediate: false) { connection in
            let meta = try Self.fetchMeta(connection, path: path)
            let statement = try connection.statement(SQLiteStatements.selectRange(range))
            statement.bind(range.bounds)
            var items: [KeyValue] = []
            try connection.run(statement) { row in
                items.append(
                    KeyValue(
                        key: row.text(at: 0), value: row.data(at: 1), createRevision: row.int64(at: 2),
                        modRevision: row.int64(at: 3)))
            }
            return ListResult(items: items, revision: meta.revision)
        }
        return (result.items, result.revision)
    }

    public func currentRevision() async throws(StoreError) -> Revision {
        let path = name
        return try connection.access { connection in try Self.fetchMeta(connection, path: path).revision }
    }

    // MARK: - Writes

    /// One IMMEDIATE transaction: a failed condition throws, which rolls back the writes before it.
    @discardableResult
    public func commit(_ writes: [StoreWrite]) async throws(StoreError) -> [KeyValue] {
        try StoreWrite.checkDistinct(writes, store: name)
        let path = name
        let retention = Revision(configuration.historyRetention)
        return try connection.transaction(immediate: true) { connection in
            var results: [KeyValue] = []
            for write in writes {
                results.append(try Self.apply(write, connection: connection, path: path, retention: retention))
            }
            return results
        }
    }

    /// One write inside a transaction: the key, a log row, and the store revision bumped. The
    /// same checks, rows and order as `SQLiteStore.apply`.
    private static func apply(
        _ write: StoreWrite, connection: SQLiteConnection, path: String, retention: Revision
    ) throws -> KeyValue {
        let existing = try fetchKeyValue(connection, key: write.key)
        try write.checkCondition(current: existing)
        let meta = try fetchMeta(connection, path: path)
        let revision = meta.revision + 1
        let result: KeyValue
        switch write {
        case .create(let key, let value):
            try connection.run(SQLiteStatements.insertKey, key, value, revision, revision)
            try connection.run(SQLiteStatements.logCreate, revision, key, value, revision)
            result = KeyValue(key: key, value: value, createRevision: revision, modRevision: revision)
        case .update(let key, let value, _):
            let existing = existing!
            try connection.run(SQLiteStatements.updateKey, value, revision, key)
            try connection.run(
                SQLiteStatements.logUpdate, revision, key, value, existing.createRevision, existing.value,
                existing.createRevision, existing.modRevision)
            result = KeyValue(key: key, value: value, createRevision: existing.createRevision, modRevision: revision)
        case .delete(let key, _):
            let existing = existing!
            try connection.run(SQLiteStatements.deleteKey, key)
            try connection.run(
                SQLiteStatements.logDelete, revision, key, existing.createRevision, existing.value,
                existing.createRevision, existing.modRevision)
            result = existing
        }
        try commitRevision(connection, revision: revision, meta: meta, retention: retention)
        return result
    }

    public func compact(through revision: Revision) async throws(StoreError) {
        let path = name
        try connection.transaction(immediate: true) { connection in
            let meta = try Self.fetchMeta(connection, path: path)
            if revision > meta.revision {
                throw StoreError.backend(
                    store: path,
                    reason: "cannot compact through revision \(revision): the store is only at revision "
                        + "\(meta.revision)")
            }
            guard revision > meta.compactedRevision else { return }
            try Self.deleteLog(connection, through: revision)
            try connection.run(SQLiteStatements.updateCompacted, revision)
        }
    }

    // MARK: - Watch

    public func watch(prefix: String, after revision: Revision) -> AsyncThrowingStream<WatchEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchEvent, any Error>.makeStream()
        let id = watches.withLock { watches in
            watches.nextID += 1
            return watches.nextID
        }
        // Set before the task exists, so a termination from either side always finds it.
        continuation.onTermination = { [weak self] _ in self?.stopWatch(id) }
        let poller = SQLiteWatchPoller(
            range: SQLiteKeyRange(prefix: prefix), pollInterval: configuration.watchPollInterval, path: name,
            busyTimeout: configuration.busyTimeout)
        // The task holds the connection, not the store, so that dropping the store cancels it.
        let connection = self.connection
        let started = watches.withLock { watches -> Bool in
            guard !watches.closed else { return false }
            watches.tasks[id] = Task {
                await poller.run(after: revision, continuation: continuation) { seen in
                    try connection.transaction(immediate: false) { connection in
                        try Self.round(poller, connection: connection, after: seen)
                    }
                }
            }
            return true
        }
        if !started {
            continuation.finish(
                throwing: StoreError.unavailable(
                    store: name, reason: "the store \(name) has been closed; open it again"))
        }
        return stream
    }

    private static func round(_ poller: SQLiteWatchPoller, connection: SQLiteConnection, after seen: Revision) throws
        -> SQLiteWatchPoller.Round
    {
        let meta = try fetchMeta(connection, path: poller.path)
        return try poller.round(meta: meta, after: seen) {
            let query = try connection.statement(poller.logQuery)
            query.bind([seen, meta.revision] + poller.range.bounds)
            var rows: [SQLiteLogRow] = []
            try connection.run(query) { row in
                rows.append(
                    SQLiteLogRow(
                        revision: row.int64(at: 0), key: row.text(at: 1), type: row.text(at: 2),
                        value: row.isNull(at: 3) ? nil : row.data(at: 3), createRevision: row.int64(at: 4),
                        previousValue: row.isNull(at: 5) ? nil : row.data(at: 5),
                        previousCreateRevision: row.isNull(at: 6) ? nil : row.int64(at: 6),
                        previousModRevision: row.isNull(at: 7) ? nil : row.int64(at: 7)))
            }
            return rows
        }
    }

    private func stopWatch(_ id: UInt64) {
        let task = watches.withLock { $0.tasks.removeValue(forKey: id) }
        task?.cancel()
    }

    // MARK: - Close

    public func close() async {
        let tasks = watches.withLock { watches in
            watches.closed = true
            let tasks = Array(watches.tasks.values)
            watches.tasks = [:]
            return tasks
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        connection.close()
    }

    // MARK: - Helpers

    private static func fetchMeta(_ connection: SQLiteConnection, path: String) throws -> SQLiteMeta {
        var meta: SQLiteMeta?
        try connection.run(try connection.statement(SQLiteStatements.selectMeta)) { row in
            meta = SQLiteMeta(revision: row.int64(at: 0), compactedRevision: row.int64(at: 1))
        }
        guard let meta else { throw SQLiteMeta.missing(path: path) }
        return meta
    }

    private static func fetchKeyValue(_ connection: SQLiteConnection, key: String) throws -> KeyValue? {
        let select = try connection.statement(SQLiteStatements.selectKey)
        select.bind([key])
        var found: KeyValue?
        try connection.run(select) { row in
            found = KeyValue(
                key: key, value: row.data(at: 0), createRevision: row.int64(at: 1), modRevision: row.int64(at: 2))
        }
        return found
    }

    private static func deleteLog(_ connection: SQLiteConnection, through revision: Revision) throws {
        try connection.run(SQLiteStatements.deleteLogThrough, revision)
    }

    /// As `SQLiteStore.commitRevision`: records `revision` and, once history exceeds the
    /// retention by a tenth of it, compacts it back to the retention.
    private static func commitRevision(
        _ connection: SQLiteConnection, revision: Revision, meta: SQLiteMeta, retention: Revision
    ) throws {
        var compacted = meta.compactedRevision
        let batch = max(1, retention / 10)
        if revision - compacted - retention >= batch {
            compacted = revision - retention
            try deleteLog(connection, through: compacted)
        }
        try connection.run(SQLiteStatements.updateMeta, revision, compacted)
    }
}

private struct ListResult: Sendable {
    var items: [KeyValue]
    var revision: Revision
}
