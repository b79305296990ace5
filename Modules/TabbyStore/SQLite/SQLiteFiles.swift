import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// File-system preparation for the database file, done before SQLite sees it, so that failures
/// come back as typed errors naming the path (SQLite would only say "unable to open database
/// file", or silently fall back to read-only).
enum SQLiteFiles {
    /// Mode of the database file (SQLite gives `-wal`, `-shm` and `-journal` the same mode).
    static let fileMode: mode_t = 0o600
    /// Mode of directories the store creates.
    static let directoryMode: mode_t = 0o700

    /// Makes sure `path`'s directory exists and `path` is a regular file this process can read
    /// and write, creating an empty one (mode 0600) when missing. Never changes an existing file.
    static func prepare(path: String) throws(StoreError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try makeDirectories(directory, storePath: path)
        }

        var info = stat()
        if stat(path, &info) == 0 {
            try checkExisting(path: path, info: info)
            return
        }
        let statErrno = errno
        guard statErrno == ENOENT else {
            throw error(errno: statErrno, path: path, doing: "look up the database file")
        }

        let descriptor = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, fileMode)
        if descriptor < 0 {
            let openErrno = errno
            if openErrno == EEXIST {
                // Another process created it between our stat and open: use theirs.
                guard stat(path, &info) == 0 else {
                    throw error(errno: errno, path: path, doing: "look up the database file")
                }
                try checkExisting(path: path, info: info)
                return
            }
            throw error(errno: openErrno, path: path, doing: "create the database file")
        }
        // The umask may have cleared bits of 0600; set the mode exactly.
        _ = fchmod(descriptor, fileMode)
        close(descriptor)
    }

    private static func checkExisting(path: String, info: stat) throws(StoreError) {
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR {
            throw .unavailable(
                store: path,
                reason: "\(path) is a directory, not a database file; point --store or TABBY_STORE at a file "
                    + "such as \((path as NSString).appendingPathComponent("tabby.db"))")
        }
        if type != S_IFREG {
            throw .unavailable(store: path, reason: "\(path) is not a regular file, so it cannot hold a datastore")
        }
        if access(path, R_OK | W_OK) != 0 {
            throw error(errno: errno, path: path, doing: "open the database file for reading and writing")
        }
    }

    /// `mkdir -p` with mode 0700 for the directories it creates.
    private static func makeDirectories(_ directory: String, storePath: String) throws(StoreError) {
        var info = stat()
        if stat(directory, &info) == 0 {
            if info.st_mode & S_IFMT != S_IFDIR {
                throw .unavailable(
                    store: storePath,
                    reason: "\(directory) is not a directory, so the database file \(storePath) cannot be created in it"
                )
            }
            return
        }
        let statErrno = errno
        guard statErrno == ENOENT else {
            throw error(errno: statErrno, path: storePath, doing: "look up the directory \(directory)")
        }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != directory {
            try makeDirectories(parent, storePath: storePath)
        }
        if mkdir(directory, directoryMode) != 0 {
            let mkdirErrno = errno
            if mkdirErrno == EEXIST { return }  // created concurrently by another process
            throw error(errno: mkdirErrno, path: storePath, doing: "create the directory \(directory)")
        }
        _ = chmod(directory, directoryMode)
    }

    /// A typed error for a failed system call on the store's files.
    static func error(errno code: Int32, path: String, doing action: String) -> StoreError {
        let detail = String(cString: strerror(code))
        let reason = "cannot \(action) (\(path)): \(detail)"
        switch code {
        case EACCES, EPERM:
            return .permissionDenied(
                store: path,
                reason: reason + "; run as a user that owns the file (mode 0600) or choose another --store path")
        case ENOTDIR:
            return .unavailable(store: path, reason: reason + "; a component of the path is a file, not a directory")
        case EISDIR:
            return .unavailable(store: path, reason: reason + "; the path is a directory, not a database file")
        case EROFS:
            return .unavailable(store: path, reason: reason + "; the file system is read-only")
        default:
            return .unavailable(store: path, reason: reason)
        }
    }
}
