import Foundation
import GRDB
import GRDBSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns whatever GRDB, `SQLiteConnection` or SQLite raised into a `StoreError` naming the database file.
enum SQLiteErrorMapping {
    static func storeError(_ error: any Error, path: String, busyTimeout: Duration) -> StoreError {
        if let storeError = error as? StoreError { return storeError }
        if error is CancellationError {
            return .backend(store: path, reason: "the operation was cancelled before it completed")
        }
        if let connectionError = error as? SQLiteConnection.Error {
            return storeError(
                code: connectionError.code, message: connectionError.description, path: path, busyTimeout: busyTimeout)
        }
        guard let databaseError = error as? DatabaseError else {
            return .backend(store: path, reason: String(describing: error))
        }
        let sqliteMessage = databaseError.message ?? "SQLite error \(databaseError.extendedResultCode.rawValue)"
        return storeError(
            code: databaseError.resultCode.rawValue, message: sqliteMessage, path: path, busyTimeout: busyTimeout)
    }

    /// The same errors whether GRDB or `SQLiteConnection` reported them. `code`: the primary
    /// result code.
    private static func storeError(code: Int32, message sqliteMessage: String, path: String, busyTimeout: Duration)
        -> StoreError
    {
        switch code {
        case SQLITE_NOTADB, SQLITE_CORRUPT:
            return corrupted(path: path, detail: sqliteMessage)
        case SQLITE_BUSY, SQLITE_LOCKED:
            return .unavailable(
                store: path,
                reason: "the database \(path) stayed locked by another process for longer than the busy timeout "
                    + "(\(busyTimeout)); retry, or find the process holding it (e.g. `fuser \(path)`)")
        case SQLITE_READONLY:
            return .permissionDenied(
                store: path,
                reason: "\(path) (or its directory, which must hold the -wal and -shm files) is read-only for "
                    + "this process: \(sqliteMessage)")
        case SQLITE_PERM, SQLITE_AUTH:
            return .permissionDenied(store: path, reason: "\(path): \(sqliteMessage)")
        case SQLITE_CANTOPEN:
            return cannotOpen(path: path, detail: sqliteMessage)
        case SQLITE_FULL:
            return .unavailable(store: path, reason: "the disk holding \(path) is full: \(sqliteMessage)")
        case SQLITE_IOERR:
            return .unavailable(store: path, reason: "I/O error on \(path): \(sqliteMessage)")
        default:
            return .backend(store: path, reason: "SQLite error on \(path): \(sqliteMessage)")
        }
    }

    static func corrupted(path: String, detail: String) -> StoreError {
        .corrupted(
            store: path,
            reason: "\(path) is not a valid Tabby SQLite datastore (\(detail)). Tabby has not modified it; "
                + "restore it from a backup, or move it away (e.g. `mv \(path) \(path).corrupt`) so that a new, "
                + "empty datastore is created")
    }

    /// SQLITE_CANTOPEN says little; look at the file and its directory to say why.
    private static func cannotOpen(path: String, detail: String) -> StoreError {
        let directory = (path as NSString).deletingLastPathComponent
        let directoryToCheck = directory.isEmpty ? "." : directory
        if access(path, R_OK | W_OK) != 0 && errno == EACCES {
            return SQLiteFiles.error(errno: EACCES, path: path, doing: "open the database file")
        }
        if access(directoryToCheck, W_OK | X_OK) != 0 && errno == EACCES {
            return .permissionDenied(
                store: path,
                reason: "cannot create the -wal and -shm files next to \(path): the directory \(directoryToCheck) "
                    + "is not writable by this process")
        }
        return .unavailable(store: path, reason: "cannot open \(path): \(detail)")
    }
}
