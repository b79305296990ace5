import Foundation
import GRDBSQLite

/// One SQLite connection through the C API, with no library between: no per-connection set-up
/// beyond what Tabby asks for, and each statement prepared once and kept for the connection's life.
/// For `SQLiteOneShotStore` (a CNI call opens it, makes a dozen accesses and exits) and for looking
/// at a file read-only before anything writes to it (`SQLiteSchema.checkHeader`).
///
/// Not thread-safe. `@unchecked Sendable` so that a `Mutex` can hold it: `SQLiteOneShotStore`
/// keeps it in the `Mutex` of its `Connection` and uses it only while holding that lock.
final class SQLiteConnection: @unchecked Sendable {
    /// What SQLite reported: the extended result code and, when SQLite had one, its message.
    struct Error: Swift.Error, CustomStringConvertible {
        var extendedCode: Int32
        var message: String?
        /// The primary result code (SQLITE_BUSY for SQLITE_BUSY_SNAPSHOT, ...).
        var code: Int32 { extendedCode & 0xFF }
        var description: String { message ?? "SQLite error \(extendedCode)" }
    }

    /// A prepared statement, reset after each use so that it holds no lock between uses.
    final class Statement {
        fileprivate let handle: OpaquePointer

        fileprivate init(handle: OpaquePointer) { self.handle = handle }

        /// Binds `values` to parameters 1, 2, ... in order.
        func bind(_ values: [any SQLiteBindable]) {
            for (index, value) in values.enumerated() { value.bind(to: self, at: Int32(index + 1)) }
        }

        /// Parameters are numbered from 1, as in SQLite.
        func bind(_ value: Int64, at index: Int32) {
            sqlite3_bind_int64(handle, index, value)
        }

        /// As NUL-terminated UTF-8, as GRDB binds a String (so both write the same bytes).
        func bind(_ value: String, at index: Int32) {
            sqlite3_bind_text(handle, index, value, -1, SQLiteConnection.transient)
        }

        /// An empty value is a zero-length blob, never NULL.
        func bind(_ value: Data, at index: Int32) {
            if value.isEmpty {
                sqlite3_bind_zeroblob(handle, index, 0)
                return
            }
            value.withUnsafeBytes { bytes in
                _ = sqlite3_bind_blob(handle, index, bytes.baseAddress, Int32(bytes.count), SQLiteConnection.transient)
            }
        }

        /// Columns are numbered from 0, as in SQLite.
        func int64(at column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

        func isNull(at column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

        func text(at column: Int32) -> String {
            guard let bytes = sqlite3_column_text(handle, column) else { return "" }
            let count = Int(sqlite3_column_bytes(handle, column))
            return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
        }

        /// A zero-length blob (and NULL) reads as empty data.
        func data(at column: Int32) -> Data {
            let count = Int(sqlite3_column_bytes(handle, column))
            guard count > 0, let bytes = sqlite3_column_blob(handle, column) else { return Data() }
            return Data(bytes: bytes, count: count)
        }
    }

    /// SQLite copies the bound value before the bind call returns.
    fileprivate static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private var handle: OpaquePointer?
    private var statements: [String: Statement] = [:]

    /// Opens `path` (creating it when `readOnly` is false and it is missing). `busyTimeoutSeconds`:
    /// how long a statement waits for another connection's lock before failing with SQLITE_BUSY
    /// (whole milliseconds, rounded as GRDB rounds it).
    init(path: String, readOnly: Bool, busyTimeoutSeconds: Double) throws(Error) {
        // Multi-thread mode (no SQLite mutexes: the owner serialises), extended result codes.
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        flags |= readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        var opened: OpaquePointer?
        let code = sqlite3_open_v2(path, &opened, flags, nil)
        guard code == SQLITE_OK, let opened else {
            // SQLite allocates a handle even when opening fails; it must be closed.
            sqlite3_close(opened)
            throw Error(extendedCode: code, message: nil)
        }
        handle = opened
        sqlite3_busy_timeout(opened, Int32(busyTimeoutSeconds * 1000))
    }

    deinit { close() }

    /// The `sqlite3 *`, for the C helpers in CTabbySQLite; nil once closed.
    var rawHandle: UnsafeMutableRawPointer? { handle.map { UnsafeMutableRawPointer($0) } }

    /// Runs one or more statements that return nothing this code needs (pragmas, DDL, BEGIN).
    func execute(_ sql: String) throws(Error) {
        let handle = try open()
        if sqlite3_exec(handle, sql, nil, nil, nil) != SQLITE_OK { throw lastError(handle) }
    }

    /// Prepares `sql` once per connection; later calls return the same statement.
    func statement(_ sql: String) throws(Error) -> Statement {
        if let cached = statements[sql] { return cached }
        let handle = try open()
        var prepared: OpaquePointer?
        let code = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
        guard code == SQLITE_OK, let prepared else { throw lastError(handle) }
        let statement = Statement(handle: prepared)
        statements[sql] = statement
        return statement
    }

    /// Runs one statement without parameters or results (BEGIN, COMMIT), prepared once.
    /// Runs `sql` (prepared once per connection) with `values` bound to its parameters 1, 2, ...
    func run(_ sql: String, _ values: any SQLiteBindable...) throws(Error) {
        let statement = try statement(sql)
        statement.bind(values)
        try run(statement)
    }

    /// Runs `statement` (bound by the caller), calling `row` for each result row; then resets it
    /// and clears its bindings, also when it fails.
    func run(_ statement: Statement, row: (Statement) -> Void = { _ in }) throws(Error) {
        defer {
            sqlite3_reset(statement.handle)
            sqlite3_clear_bindings(statement.handle)
        }
        while true {
            switch sqlite3_step(statement.handle) {
            case SQLITE_ROW: row(statement)
            case SQLITE_DONE: return
            default: throw lastError(try open())
            }
        }
    }

    /// Whether a transaction is open (BEGIN ran, and neither COMMIT nor ROLLBACK yet).
    var inTransaction: Bool {
        guard let handle else { return false }
        return sqlite3_get_autocommit(handle) == 0
    }

    /// Finalizes every statement and closes the connection. Idempotent.
    func close() {
        for statement in statements.values { sqlite3_finalize(statement.handle) }
        statements = [:]
        if let handle { sqlite3_close(handle) }
        handle = nil
    }

    private func open() throws(Error) -> OpaquePointer {
        guard let handle else { throw Error(extendedCode: SQLITE_MISUSE, message: "the connection is closed") }
        return handle
    }

    private func lastError(_ handle: OpaquePointer) -> Error {
        Error(extendedCode: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)))
    }
}

/// A value `SQLiteConnection.Statement` binds: INTEGER, TEXT or BLOB, as GRDB binds them.
protocol SQLiteBindable {
    func bind(to statement: SQLiteConnection.Statement, at index: Int32)
}

extension Int64: SQLiteBindable {
    func bind(to statement: SQLiteConnection.Statement, at index: Int32) { statement.bind(self, at: index) }
}

extension String: SQLiteBindable {
    func bind(to statement: SQLiteConnection.Statement, at index: Int32) { statement.bind(self, at: index) }
}

extension Data: SQLiteBindable {
    func bind(to statement: SQLiteConnection.Statement, at index: Int32) { statement.bind(self, at: index) }
}
