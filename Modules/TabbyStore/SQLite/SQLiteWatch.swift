import Foundation
import GRDB

/// The keys starting with a prefix, as an index-friendly SQL range: `key >= prefix AND key < upper`,
/// where `upper` is the prefix with its last Unicode scalar incremented. SQLite compares TEXT
/// bytewise, and UTF-8 byte order is scalar order, so the range holds exactly the keys with that
/// prefix ("/a/" does not match "/ab").
struct SQLiteKeyRange: Sendable {
    let lower: String
    let upper: String?

    init(prefix: String) {
        lower = prefix
        upper = Self.upperBound(of: prefix)
    }

    /// SQL condition on column `key`, to use with `arguments`.
    var condition: String {
        if lower.isEmpty { return "1" }
        return upper == nil ? "key >= ?" : "key >= ? AND key < ?"
    }

    var arguments: StatementArguments { StatementArguments(bounds) }

    /// The values of `condition`'s parameters, in order.
    var bounds: [String] {
        if lower.isEmpty { return [] }
        if let upper { return [lower, upper] }
        return [lower]
    }

    /// The smallest string greater than every string with `prefix`; nil when there is none.
    static func upperBound(of prefix: String) -> String? {
        var scalars = Array(prefix.unicodeScalars)
        while let last = scalars.popLast() {
            var next = last.value + 1
            if next == 0xD800 { next = 0xE000 }  // skip the surrogates, which are not scalars
            if let scalar = Unicode.Scalar(next) {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                view.append(scalar)
                return String(view)
            }
        }
        return nil
    }
}

/// Follows the change log for one watch. Each round reads the `meta` row (one row, no write lock)
/// and, only when the revision moved, the new log rows; then it sleeps `pollInterval`. Because the
/// log is in the shared file, this sees writes of every process. The reads go through GRDB
/// (`SQLiteStore`) or a `SQLiteConnection` (`SQLiteOneShotStore`); the rounds are the same.
struct SQLiteWatchPoller: Sendable {
    let range: SQLiteKeyRange
    let pollInterval: Duration
    let path: String
    let busyTimeout: Duration

    /// Log rows read per round; more wait for the next (immediate) round.
    static let batchSize = 256

    /// The query for one round's log rows; arguments: the revision seen, the store revision, then
    /// `range.arguments`.
    var logQuery: String {
        """
        SELECT revision, key, type, value, create_revision, prev_value, prev_create_revision, prev_mod_revision
        FROM log WHERE revision > ? AND revision <= ? AND \(range.condition)
        ORDER BY revision LIMIT \(Self.batchSize)
        """
    }

    enum Round: Sendable {
        case resync(compactedRevision: Revision)
        /// `events` in order; the watch has seen everything up to `through`.
        case changes([WatchEvent], through: Revision)
    }

    func run(
        pool: any DatabaseReader, after revision: Revision,
        continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation
    ) async {
        await run(after: revision, continuation: continuation) { position in
            try await pool.read { db in try self.fetch(db, after: position) }
        }
    }

    /// Polls with `fetch`, which reads one round after a revision in one read transaction.
    func run(
        after revision: Revision, continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation,
        fetch: @Sendable (Revision) async throws -> Round
    ) async {
        // Revisions start at 1: "after" anything below 0 means the whole history.
        var seen = max(revision, 0)
        do {
            while true {
                try Task.checkCancellation()
                let round = try await fetch(seen)
                switch round {
                case .resync(let compactedRevision):
                    continuation.yield(.resyncRequired(compactedRevision: compactedRevision))
                    continuation.finish()
                    return
                case .changes(let events, let through):
                    for event in events {
                        continuation.yield(event)
                    }
                    if through == seen {
                        try await Task.sleep(for: pollInterval)
                    }
                    seen = through
                }
            }
        } catch {
            if Task.isCancelled || error is CancellationError {
                continuation.finish()
            } else {
                continuation.finish(
                    throwing: SQLiteErrorMapping.storeError(error, path: path, busyTimeout: busyTimeout))
            }
        }
    }

    /// The round after `seen`, given the `meta` row and a way to read the log rows (only called
    /// when there are new revisions).
    func round(meta: SQLiteMeta, after seen: Revision, logRows: () throws -> [SQLiteLogRow]) throws -> Round {
        // History after `seen` is complete only if nothing above `seen` was compacted.
        if seen < meta.compactedRevision {
            return .resync(compactedRevision: meta.compactedRevision)
        }
        if meta.revision <= seen {
            return .changes([], through: seen)
        }
        let rows = try logRows()
        let events = try rows.map { try $0.event(path: path) }
        let through = rows.count == Self.batchSize ? rows[rows.count - 1].revision : meta.revision
        return .changes(events, through: through)
    }

    private func fetch(_ db: Database, after seen: Revision) throws -> Round {
        let meta = try SQLiteStore.fetchMeta(db, path: path)
        return try round(meta: meta, after: seen) {
            try Row.fetchAll(db, sql: logQuery, arguments: [seen, meta.revision] + range.arguments).map { row in
                SQLiteLogRow(
                    revision: row["revision"], key: row["key"], type: row["type"], value: row["value"],
                    createRevision: row["create_revision"], previousValue: row["prev_value"],
                    previousCreateRevision: row["prev_create_revision"], previousModRevision: row["prev_mod_revision"])
            }
        }
    }
}

/// One row of the `log` table.
struct SQLiteLogRow: Sendable {
    var revision: Revision
    var key: String
    var type: String
    var value: Data?
    var createRevision: Revision
    var previousValue: Data?
    var previousCreateRevision: Revision?
    var previousModRevision: Revision?

    func event(path: String) throws -> WatchEvent {
        var previous: KeyValue?
        if let previousModRevision {
            previous = KeyValue(
                key: key, value: previousValue ?? Data(), createRevision: previousCreateRevision ?? 0,
                modRevision: previousModRevision)
        }
        switch type {
        case "delete":
            return .deleted(key: key, revision: revision, previous: previous)
        case "put":
            let current = KeyValue(
                key: key, value: value ?? Data(), createRevision: createRevision, modRevision: revision)
            if let previous {
                return .modified(current, previous: previous)
            }
            return .added(current)
        default:
            throw StoreError.corrupted(
                store: path,
                reason:
                    "\(path): change log entry at revision \(revision) has unknown type \(type); restore the file from a backup or move it away"
            )
        }
    }
}
