import Foundation
import Synchronization
import TabbyTestSupport
import Testing

@testable import TabbyStore

/// Every etcd test, one at a time (each starts its own etcd through tools/etcd).
@Suite(.serialized) struct EtcdTests {}

/// A real etcd started by `tools/etcd` in a fresh temporary directory.
struct EtcdServer: Sendable {
    /// tools/etcd, found from this file: Tests/TabbyStoreTests/X.swift -> tools/etcd.
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("tools/etcd").path

    let directory: String
    let options: [String]
    /// DIR/env: ETCD_ENDPOINTS and, with --tls/--auth, the files and credentials.
    var env: [String: String]

    var endpoint: String { env["ETCD_ENDPOINTS"] ?? "" }

    /// Starts etcd; fails (never skips) when etcd is not installed, with tools/etcd's message.
    static func start(_ options: [String] = []) throws -> EtcdServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-etcd-\(UUID().uuidString)")
            .path
        var server = EtcdServer(directory: directory, options: options, env: [:])
        do {
            try server.restart()
        } catch {
            server.stop()  // The error already carries etcd's log tail; leave nothing behind.
            throw error
        }
        return server
    }

    /// Starts etcd on the directory (again, after `stop(keep: true)`: same data, ports and credentials).
    mutating func restart() throws {
        let output = try Self.run(["start", directory] + options)
        env = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { env[parts[0]] = parts[1] }
        }
        guard env["ETCD_ENDPOINTS"] != nil else {
            throw EtcdTestError("tools/etcd start printed no ETCD_ENDPOINTS: \(output)")
        }
    }

    /// Stops etcd by PID; removes the directory unless `keep`.
    func stop(keep: Bool = false) {
        _ = try? Self.run(["stop", directory] + (keep ? ["--keep"] : []))
    }

    func configuration(
        endpoints: [String]? = nil, tls: Bool = true, auth: Bool = true, maxAttempts: Int = 5
    ) -> EtcdConfiguration {
        EtcdConfiguration(
            endpoints: endpoints ?? [endpoint], caCertFile: tls ? env["ETCD_CA_CERT_FILE"] : nil,
            certFile: tls ? env["ETCD_CERT_FILE"] : nil, keyFile: tls ? env["ETCD_KEY_FILE"] : nil,
            username: auth ? env["ETCD_USERNAME"] : nil, password: auth ? env["ETCD_PASSWORD"] : nil,
            requestTimeout: .seconds(3), maxAttempts: maxAttempts)
    }

    /// Runs tools/etcd (through ChildProcess: no pipes for etcd to inherit).
    private static func run(_ arguments: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: script) else {
            throw EtcdTestError("\(script) is missing or not executable")
        }
        let result = try ChildProcess.run(script, arguments)
        guard result.status == 0 else {
            throw EtcdTestError(
                "tools/etcd \(arguments.joined(separator: " ")) failed (exit \(result.status)): \(result.stderr)")
        }
        return result.stdout
    }
}

struct EtcdTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a started etcd and a store on it; stops etcd and closes the store in every case.
func withEtcd(
    _ options: [String] = [], maxAttempts: Int = 5, _ body: (inout EtcdServer, EtcdStore) async throws -> Void
) async throws {
    var server = try EtcdServer.start(options)
    defer { server.stop() }
    let store = try EtcdStore(configuration: server.configuration(maxAttempts: maxAttempts))
    do {
        try await body(&server, store)
    } catch {
        await store.close()
        throw error
    }
    await store.close()
}

/// The `StoreError` `body` throws, or nil (another error becomes `.backend` naming it).
func storeError<T>(_ body: () async throws -> T) async -> StoreError? {
    do {
        _ = try await body()
        return nil
    } catch let error as StoreError {
        return error
    } catch {
        return .backend(store: "test", reason: "not a StoreError: \(error)")
    }
}

/// Reads a watch stream in the background; tests wait for what it collected.
final class WatchCollector: Sendable {
    struct Collected {
        var events: [WatchEvent] = []
        var ended = false
        var error: (any Error)?
    }
    /// `collected` lock: guards what the reading task has seen so far.
    let collected = Mutex(Collected())
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(_ stream: AsyncThrowingStream<WatchEvent, any Error>) {
        task.withLock { task in
            task = Task { [self] in
                do {
                    for try await event in stream {
                        self.collected.withLock { $0.events.append(event) }
                    }
                    self.collected.withLock { $0.ended = true }
                } catch {
                    self.collected.withLock {
                        $0.ended = true
                        $0.error = error
                    }
                }
            }
        }
    }

    /// Stops reading: the stream is cancelled.
    func cancel() { task.withLock { $0?.cancel() } }

    /// The events once there are `count` of them (or the stream ended); throws after `timeout`.
    func wait(
        for count: Int, orEnd: Bool = false, timeout: Duration = .seconds(10)
    ) async throws -> [WatchEvent] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (events, ended) = collected.withLock { ($0.events, $0.ended) }
            if events.count >= count || (orEnd && ended) { return events }
            try await Task.sleep(for: .milliseconds(20))
        }
        let events = collected.withLock { $0.events }
        throw EtcdTestError("expected \(count) watch events within \(timeout), got \(events.count): \(events)")
    }

    /// Waits for the stream to end; its error, if any.
    func end(timeout: Duration = .seconds(10)) async throws -> (any Error)? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (ended, error) = collected.withLock { ($0.ended, $0.error) }
            if ended { return error }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw EtcdTestError("the watch stream did not end within \(timeout)")
    }
}

extension Data {
    init(text: String) { self.init(text.utf8) }
}
