import Foundation

/// Where and how `SQLiteStore` keeps its one database file.
public struct SQLiteStoreConfiguration: Sendable {
    /// The file used when neither the `--store` flag nor `TABBY_STORE` names one.
    public static let defaultPath = "/var/lib/tabby/tabby.db"
    /// The environment variable that overrides `defaultPath`.
    public static let environmentVariable = "TABBY_STORE"

    /// The database file. Its directory is created (mode 0700) when missing; the file and its
    /// `-wal`/`-shm` companions are created with mode 0600.
    public var path: String
    /// How many revisions of change history to keep for watchers (older entries are compacted
    /// automatically on write, amortised); default 10_000.
    public var historyRetention: Int
    /// How long a writer waits for another process's lock before failing with .unavailable; default 30 s.
    public var busyTimeout: Duration
    /// How often a watch polls for changes made by other processes (cheap: one read of the
    /// revision row); default 25 ms.
    public var watchPollInterval: Duration
    /// One database connection instead of a pool of readers and a writer. For short-lived
    /// processes: a pool costs about 2 ms more to open than it can save. Such a store runs each
    /// access on the calling thread (it blocks; a one-shot process has nothing else to run) and,
    /// on close, leaves the WAL for a long-lived process to checkpoint. The CNI plugin uses
    /// `SQLiteOneShotStore` instead, which behaves the same without GRDB; `SQLiteOneShotStore`
    /// ignores this setting.
    public var singleConnection = false

    public init(
        path: String = defaultPath, historyRetention: Int = 10_000, busyTimeout: Duration = .seconds(30),
        watchPollInterval: Duration = .milliseconds(25)
    ) {
        self.path = path
        self.historyRetention = historyRetention
        self.busyTimeout = busyTimeout
        self.watchPollInterval = watchPollInterval
    }

    /// Throws `.invalidConfiguration` naming the bad setting.
    func validate() throws(StoreError) {
        if path.isEmpty {
            throw .invalidConfiguration(
                "the SQLite store path is empty; pass --store or set \(Self.environmentVariable)")
        }
        if path == ":memory:" || path.hasPrefix("file:") {
            throw .invalidConfiguration(
                "the SQLite store path \(path) is not a file path; the store must be a file shared by every process")
        }
        if historyRetention < 1 {
            throw .invalidConfiguration(
                "historyRetention must keep at least 1 revision of change history, got \(historyRetention)")
        }
        if busyTimeout < .zero {
            throw .invalidConfiguration("busyTimeout must not be negative, got \(busyTimeout)")
        }
        if watchPollInterval <= .zero {
            throw .invalidConfiguration("watchPollInterval must be positive, got \(watchPollInterval)")
        }
    }

    /// `busyTimeout` in seconds, as SQLite's busy handler wants it.
    var busyTimeoutSeconds: Double {
        let parts = busyTimeout.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
