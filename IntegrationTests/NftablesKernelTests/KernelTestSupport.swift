import Foundation
import Glibc
import TabbyCore

/// Runs a program and returns its exit status and output. Used only for setup (`ip`) and for
/// independent verification (`nft -j`), never for programming nftables under test.
@discardableResult
func run(_ arguments: [String], check: Bool = true) throws -> (status: Int32, output: String, error: String) {
    let ran = try Command.run(arguments)
    let result = (ran.status, ran.stdout, ran.stderr)
    if check && result.0 != 0 {
        throw ShellError(command: arguments.joined(separator: " "), status: result.0, error: result.2)
    }
    return result
}

struct ShellError: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var error: String
    var description: String { "\(command) exited \(status): \(error)" }
}

/// A network namespace named `tabby-t-nft-<role>-<random>`, created with `ip netns add` and deleted
/// by `delete()` (call it from a `defer`). Everything a test programs lives inside these.
final class TestNamespace {
    let name: String
    var path: String { "/run/netns/\(name)" }

    init(_ role: String) throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        name = "tabby-t-nft-\(role)-\(suffix)"
        try run(["ip", "netns", "add", name])
    }

    func delete() {
        _ = try? run(["ip", "netns", "delete", name], check: false)
    }

    /// Runs a command inside the namespace (network namespace only; /sys and mounts stay as they are).
    @discardableResult
    func exec(_ arguments: [String], check: Bool = true) throws -> (status: Int32, output: String, error: String) {
        try run(["nsenter", "--net=\(path)"] + arguments, check: check)
    }

    /// `nft -j list ruleset` inside the namespace, as the `nftables` array of JSON objects.
    func ruleset() throws -> [[String: Any]] {
        let text = try exec(["nft", "-j", "list", "ruleset"]).output
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return (json?["nftables"] as? [[String: Any]]) ?? []
    }
}

/// The objects of one kind ("table", "chain", "set", "map", "rule") in an `nft -j` ruleset.
func objects(_ kind: String, in ruleset: [[String: Any]]) -> [[String: Any]] {
    ruleset.compactMap { $0[kind] as? [String: Any] }
}

/// Starts a long-running process (a listener) and returns it; stop it with `stop(_:)`.
func spawn(_ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

/// Kills a process started by `spawn` (by its PID) and reaps it. SIGKILL, because children of the test
/// runner's threads inherit a signal mask that blocks SIGTERM (so `terminate()` would never land).
func stop(_ process: Process) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
}
