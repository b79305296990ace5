import Foundation
import Synchronization

/// A real etcd for tests. `tools/test` starts one with `tools/etcd` and exports
/// `TABBY_TEST_ETCD_ENDPOINTS`; without it, the first test that asks starts its own through
/// `tools/etcd` and stops it by PID when the test process exits.
public enum TestEtcd {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Started-by-us server directory, stopped at exit. Guarded by its own lock.
    private static let started = Mutex<(directory: String?, endpoints: [String]?)>((nil, nil))

    /// The repository root, from this file's path (Modules/TabbyTestSupport/TestEtcd.swift).
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// Endpoints of a running etcd, starting one if needed. Fails (never skips) when etcd cannot
    /// be started, saying why: CI and tools/test install etcd-server.
    public static func endpoints() throws -> [String] {
        if let text = ProcessInfo.processInfo.environment["TABBY_TEST_ETCD_ENDPOINTS"], !text.isEmpty {
            return text.split(separator: ",").map(String.init)
        }
        return try started.withLock { state in
            if let endpoints = state.endpoints { return endpoints }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-etcd-\(getpid())").path
            let output = try runTool(["start", directory])
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("ETCD_ENDPOINTS=") }) else {
                throw Failure(description: "tools/etcd start printed no ETCD_ENDPOINTS:\n\(output)")
            }
            let endpoints = line.dropFirst("ETCD_ENDPOINTS=".count).split(separator: ",").map(String.init)
            state = (directory, endpoints)
            atexit {
                if let directory = TestEtcd.started.withLock({ $0.directory }) {
                    _ = try? TestEtcd.runTool(["stop", directory])
                }
            }
            return endpoints
        }
    }

    /// A private etcd for one test (its keys are not shared with any other test): its
    /// endpoints, and a function that stops it by PID and removes its directory.
    public static func startPrivate() throws -> (endpoints: [String], stop: @Sendable () -> Void) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-etcd-\(UUID().uuidString)")
            .path
        let output = try runTool(["start", directory])
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("ETCD_ENDPOINTS=") }) else {
            _ = try? runTool(["stop", directory])
            throw Failure(description: "tools/etcd start printed no ETCD_ENDPOINTS:\n\(output)")
        }
        let endpoints = line.dropFirst("ETCD_ENDPOINTS=".count).split(separator: ",").map(String.init)
        return (endpoints, { _ = try? TestEtcd.runTool(["stop", directory]) })
    }

    /// Runs tools/etcd with arguments; returns its standard output or throws with its errors.
    @discardableResult
    public static func runTool(_ arguments: [String]) throws -> String {
        let result = try ChildProcess.run(repositoryRoot.appendingPathComponent("tools/etcd").path, arguments)
        guard result.status == 0 else {
            throw Failure(
                description:
                    "tools/etcd \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)\(result.stdout)"
            )
        }
        return result.stdout
    }
}
