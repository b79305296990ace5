import Foundation
import Synchronization
import TabbyStore
import TabbyTestSupport
import Testing

/// Temporary directories, stores and watch helpers for the SQLite store tests.
enum SQLiteTestSupport {
    /// A new empty directory under the system temporary directory.
    static func makeTemporaryDirectory() throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("tabby-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs `body` with a fresh temporary directory, removed afterwards.
    static func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(directory)
    }

    /// Runs `body` with a store in a fresh temporary directory; closes it and removes the directory.
    static func withStore<T>(
        historyRetention: Int = 10_000, _ body: (SQLiteStore, String) async throws -> T
    ) async throws -> T {
        try await withTemporaryDirectory { directory in
            let path = (directory as NSString).appendingPathComponent("tabby.db")
            let store = try SQLiteStore(
                configuration: SQLiteStoreConfiguration(
                    path: path, historyRetention: historyRetention, watchPollInterval: .milliseconds(10)))
            do {
                let result = try await body(store, path)
                await store.close()
                return result
            } catch {
                await store.close()
                throw error
            }
        }
    }

    struct WatchTimeout: Error, CustomStringConvertible {
        var received: Int
        var wanted: Int
        var description: String { "watch delivered \(received) of \(wanted) events before the timeout" }
    }

    /// The first `count` events of `stream` (fewer if it ends first); throws after `timeout`.
    static func collect(
        _ stream: AsyncThrowingStream<WatchEvent, any Error>, count: Int, timeout: Duration = .seconds(30)
    ) async throws -> [WatchEvent] {
        let received = SQLiteReceivedEvents()
        return try await withThrowingTaskGroup(of: [WatchEvent]?.self) { group in
            group.addTask {
                var events: [WatchEvent] = []
                for try await event in stream {
                    events.append(event)
                    received.set(events.count)
                    if events.count == count { break }
                }
                return events
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let events = try await group.next()! else {
                throw WatchTimeout(received: received.get(), wanted: count)
            }
            return events
        }
    }

    /// Whether `stream` ends (finishes) within `timeout`, consuming nothing else.
    static func ends(_ stream: AsyncThrowingStream<WatchEvent, any Error>, within timeout: Duration) async throws
        -> Bool
    {
        let rest = try await collect(stream, count: Int.max, timeout: timeout)
        return rest.isEmpty
    }

    /// Runs the `tabby-store-helper` executable and returns its standard output.
    static func runHelper(_ arguments: [String]) async throws -> String {
        let helper = try #require(helperURL(), "build the tabby-store-helper executable (swift build) before testing")
        let result = await (try ChildProcess.spawn(helper.path, arguments)).finished()
        let (status, stdout, stderr) = (result.status, result.stdout, result.stderr)
        #expect(status == 0, "tabby-store-helper \(arguments.joined(separator: " ")) failed: \(stderr)")
        return stdout
    }

    /// `tabby-store-helper` next to the test binary (SwiftPM puts every product of a package in
    /// one directory), or at `$TABBY_STORE_HELPER`.
    static func helperURL() -> URL? {
        let name = "tabby-store-helper"
        if let explicit = ProcessInfo.processInfo.environment["TABBY_STORE_HELPER"] {
            return URL(fileURLWithPath: explicit)
        }
        var starts = [URL(fileURLWithPath: CommandLine.arguments[0]), Bundle.main.bundleURL]
        starts += Bundle.allBundles.map(\.bundleURL).filter { $0.pathExtension == "xctest" }
        for start in starts {
            var directory = start.deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                directory = directory.deletingLastPathComponent()
            }
        }
        return nil
    }

    /// The sqlite3 command-line shell, when installed (some tests use it to play another program).
    static let sqlite3: String? = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3", "/opt/homebrew/bin/sqlite3"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Runs `sqlite3 path sql` to completion.
    static func runSQLite3(_ path: String, _ sql: String) throws {
        let result = try ChildProcess.run(try #require(sqlite3), [path, sql])
        #expect(result.status == 0, "sqlite3 \(sql) failed: \(result.stderr)")
    }

    /// Permission bits of `path`.
    static func mode(of path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }
}

/// The two SQLite stores on the same file format: the tests of files, permissions and damaged
/// stores run against both, because the CNI plugin opens the one-shot store.
enum SQLiteStoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    /// `SQLiteStore` (GRDB, a pool of connections).
    case pool
    /// `SQLiteOneShotStore` (SQLite's C API, one connection).
    case oneShot

    var testDescription: String { rawValue }

    func open(_ configuration: SQLiteStoreConfiguration) throws -> any KeyValueStore {
        switch self {
        case .pool: return try SQLiteStore(configuration: configuration)
        case .oneShot: return try SQLiteOneShotStore(configuration: configuration)
        }
    }
}

/// A counter shared with the collecting task, for timeout messages.
final class SQLiteReceivedEvents: Sendable {
    /// Guards the number of events received so far.
    private let count = Mutex(0)

    func set(_ value: Int) { count.withLock { $0 = value } }
    func get() -> Int { count.withLock { $0 } }
}
