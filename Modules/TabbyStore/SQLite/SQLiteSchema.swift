import Foundation
import GRDB

/// The database layout, recorded in `PRAGMA user_version` and marked as Tabby's with
/// `PRAGMA application_id`.
///
/// - `meta`: one row (`id` = 1) with the store's current `revision` and `compacted_revision`
///   (history at and below it is gone).
/// - `kv`: the current keys, with `create_revision` and `mod_revision`.
/// - `log`: one row per write, keyed by its revision: `type` is `put` or `delete`, `value` the new
///   value (NULL for a delete), `create_revision` the key's creation revision, and `prev_*` the
///   key's previous value and revisions (NULL when the key was created), so watchers can report
///   `previous` without reading `kv`.
enum SQLiteSchema {
    /// The schema this code reads and writes. Bump it, and add a migration, when the layout changes.
    static let version = 1
    /// "TABB": tells a Tabby datastore from another program's SQLite file.
    static let applicationID = 0x5441_4242

    private static let createStatements = """
        CREATE TABLE IF NOT EXISTS meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            revision INTEGER NOT NULL,
            compacted_revision INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO meta (id, revision, compacted_revision) VALUES (1, 0, 0);
        CREATE TABLE IF NOT EXISTS kv (
            key TEXT NOT NULL PRIMARY KEY,
            value BLOB NOT NULL,
            create_revision INTEGER NOT NULL,
            mod_revision INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS log (
            revision INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
            value BLOB,
            create_revision INTEGER NOT NULL,
            prev_value BLOB,
            prev_create_revision INTEGER,
            prev_mod_revision INTEGER
        );
        """

    private enum State {
        case ready
        case needsCreation
    }

    /// Creates the schema on a new file, or checks an existing one. Safe when several processes
    /// open a new file at once: creation happens in one IMMEDIATE transaction that re-checks the
    /// version, so the first process creates and the others find it done. Never modifies a file
    /// that holds something else.
    static func prepare(_ pool: any DatabaseWriter, path: String) throws {
        // Fast path (every CNI call opens the store): a read, no write lock.
        let state = try pool.read { db in try check(db, path: path) }
        if case .ready = state { return }
        try pool.write { db in
            guard case .needsCreation = try check(db, path: path) else { return }
            let foreignTables = try Int.fetchOne(db, sql: countForeignTables) ?? 0
            try checkNoForeignTables(foreignTables, path: path)
            try db.execute(sql: createStatements)
            try db.execute(sql: stampStatements)
        }
    }

    /// `prepare` on a `SQLiteConnection` (the one-shot store): the same checks and statements.
    static func prepare(_ connection: SQLiteConnection, path: String) throws {
        if case .ready = try check(connection, path: path) { return }
        try connection.run("BEGIN IMMEDIATE")
        do {
            if case .needsCreation = try check(connection, path: path) {
                try checkNoForeignTables(try countTables(connection), path: path)
                try connection.execute(createStatements)
                try connection.execute(stampStatements)
            }
            try connection.run("COMMIT")
        } catch {
            if connection.inTransaction { try? connection.run("ROLLBACK") }
            throw error
        }
    }

    private static let countForeignTables = "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    private static let stampStatements = "PRAGMA application_id = \(applicationID); PRAGMA user_version = \(version)"

    private static func checkNoForeignTables(_ count: Int, path: String) throws {
        if count > 0 {
            throw SQLiteErrorMapping.corrupted(
                path: path,
                detail: "it is an SQLite database, but it holds \(count) tables or indexes that are not Tabby's")
        }
    }

    private static func countTables(_ connection: SQLiteConnection) throws(SQLiteConnection.Error) -> Int {
        var count = 0
        try connection.run(try connection.statement(countForeignTables)) { count = Int($0.int64(at: 0)) }
        return count
    }

    /// Looks at the file header before the file is opened for writing (which switches it to WAL
    /// mode), so that another program's SQLite database, or one from a newer Tabby, is refused
    /// without being modified. Files that are not SQLite at all are left to SQLite, which refuses
    /// them (SQLITE_NOTADB) before writing anything.
    static func checkHeader(path: String) throws {
        // POSIX rather than FileHandle: every CNI call opens the store, and this is on its path.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 100)
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 100, 0) }
        let header = Data(bytes)
        guard count == 100, header.prefix(16) == Data("SQLite format 3\u{0}".utf8) else { return }
        func bigEndian(at offset: Int) -> Int {
            header[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
        }
        // The header in the main file may lag the WAL, but only ever shows 0/0 for a Tabby file
        // whose schema is not checkpointed yet.
        let foundID = Int(Int32(truncatingIfNeeded: bigEndian(at: 68)))
        let foundVersion = bigEndian(at: 60)
        if foundID != 0 && foundID != applicationID {
            throw SQLiteErrorMapping.corrupted(
                path: path, detail: "it is an SQLite database of another program (application_id \(foundID))")
        }
        if foundID == applicationID && foundVersion > version {
            throw newerVersion(path: path, found: foundVersion)
        }
        if foundID == 0 && foundVersion != 0 {
            throw SQLiteErrorMapping.corrupted(
                path: path, detail: "it is an SQLite database of another program (user_version \(foundVersion))")
        }
        // Tabby only writes WAL-mode files (header byte 18 = 2). A rollback-journal file may be an
        // empty database (fine to adopt) or another program's: look without writing.
        if foundID == 0 && header[18] == 1 {
            let connection = try SQLiteConnection(path: path, readOnly: true, busyTimeoutSeconds: 0)
            defer { connection.close() }
            try checkNoForeignTables(try countTables(connection), path: path)
        }
    }

    private static func newerVersion(path: String, found: Int) -> StoreError {
        .unavailable(
            store: path,
            reason: "\(path) was written by a newer Tabby (schema version \(found); this Tabby understands up to "
                + "\(version)); upgrade Tabby on this node, or point --store elsewhere")
    }

    private static func check(_ db: Database, path: String) throws -> State {
        let foundVersion = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        let foundID = try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        return try state(version: foundVersion, applicationID: foundID, path: path)
    }

    private static func check(_ connection: SQLiteConnection, path: String) throws -> State {
        var foundVersion = 0
        var foundID = 0
        try connection.run(try connection.statement("PRAGMA user_version")) { foundVersion = Int($0.int64(at: 0)) }
        try connection.run(try connection.statement("PRAGMA application_id")) { foundID = Int($0.int64(at: 0)) }
        return try state(version: foundVersion, applicationID: foundID, path: path)
    }

    /// What the file's `user_version` and `application_id` say.
    private static func state(version foundVersion: Int, applicationID foundID: Int, path: String) throws -> State {
        if foundID != 0 && foundID != applicationID {
            throw SQLiteErrorMapping.corrupted(
                path: path,
                detail: "it is an SQLite database of another program (application_id \(foundID))")
        }
        if foundVersion == 0 && foundID == 0 { return .needsCreation }
        if foundVersion > version {
            throw newerVersion(path: path, found: foundVersion)
        }
        if foundVersion == version && foundID == applicationID { return .ready }
        throw SQLiteErrorMapping.corrupted(
            path: path,
            detail: "unexpected schema version \(foundVersion) with application_id \(foundID)")
    }
}

/// The statements both stores run, written once so that `SQLiteStore` (GRDB) and
/// `SQLiteOneShotStore` (`SQLiteConnection`) write the same rows.
enum SQLiteStatements {
    static let selectMeta = "SELECT revision, compacted_revision FROM meta WHERE id = 1"
    /// Arguments: revision, compacted revision.
    static let updateMeta = "UPDATE meta SET revision = ?, compacted_revision = ? WHERE id = 1"
    static let updateCompacted = "UPDATE meta SET compacted_revision = ? WHERE id = 1"
    /// Arguments: key.
    static let selectKey = "SELECT value, create_revision, mod_revision FROM kv WHERE key = ?"
    /// Arguments: `SQLiteKeyRange.bounds`.
    static func selectRange(_ range: SQLiteKeyRange) -> String {
        "SELECT key, value, create_revision, mod_revision FROM kv WHERE \(range.condition) ORDER BY key"
    }
    /// Arguments: key, value, revision, revision.
    static let insertKey = "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?, ?, ?, ?)"
    /// Arguments: value, revision, key.
    static let updateKey = "UPDATE kv SET value = ?, mod_revision = ? WHERE key = ?"
    /// Arguments: key.
    static let deleteKey = "DELETE FROM kv WHERE key = ?"
    /// Arguments: revision, key, value, create revision.
    static let logCreate =
        "INSERT INTO log (revision, key, type, value, create_revision) VALUES (?, ?, 'put', ?, ?)"
    /// Arguments: revision, key, value, create revision, previous value, previous create revision,
    /// previous mod revision.
    static let logUpdate = """
        INSERT INTO log (revision, key, type, value, create_revision, prev_value, prev_create_revision,
            prev_mod_revision)
        VALUES (?, ?, 'put', ?, ?, ?, ?, ?)
        """
    /// Arguments: revision, key, create revision, previous value, previous create revision,
    /// previous mod revision.
    static let logDelete = """
        INSERT INTO log (revision, key, type, value, create_revision, prev_value, prev_create_revision,
            prev_mod_revision)
        VALUES (?, ?, 'delete', NULL, ?, ?, ?, ?)
        """
    /// Arguments: the last revision to forget.
    static let deleteLogThrough = "DELETE FROM log WHERE revision <= ?"
}
