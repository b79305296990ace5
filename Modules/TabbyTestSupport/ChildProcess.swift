import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process for tests, started with posix_spawn and reaped with waitpid.
///
/// Why not Foundation's `Process`: with several tests starting processes at once its reaping
/// sometimes never happens (the child stays a zombie and `waitUntilExit` hangs), and pipes wait
/// for EOF from any grandchild that inherited them (a daemon). Output goes to temporary files.
public struct ChildProcess: Sendable {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public let pid: pid_t
    private let files: (stdin: String, stdout: String, stderr: String)

    /// Starts `executable` with `arguments`, in `directory` when given, with `environment` (the
    /// test process's own when nil) and `stdin` as its standard input.
    public static func spawn(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        stdin: String = "",
        directory: String? = nil
    ) throws -> ChildProcess {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-child-\(UUID().uuidString)")
            .path
        let files = (stdin: base + ".in", stdout: base + ".out", stderr: base + ".err")
        try Data(stdin.utf8).write(to: URL(fileURLWithPath: files.stdin))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, files.stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, files.stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, files.stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // Glibc's posix_spawn_file_actions_addchdir_np does not import: a shell changes directory.
        let command =
            directory.map { ["/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", $0, executable] } ?? [
                executable
            ]
        let argv = (command + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
        guard result == 0 else {
            for file in [files.stdin, files.stdout, files.stderr] { try? FileManager.default.removeItem(atPath: file) }
            throw Failure(description: "cannot run \(executable): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid, files: files)
    }

    /// Waits for the child to exit; returns its exit status (128 + signal when killed) and output.
    public func wait() -> Result {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let exit: Int32 = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let stdout = (try? String(contentsOfFile: files.stdout, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: files.stderr, encoding: .utf8)) ?? ""
        for file in [files.stdin, files.stdout, files.stderr] { try? FileManager.default.removeItem(atPath: file) }
        return Result(status: exit, stdout: stdout, stderr: stderr)
    }

    /// Waits without holding one of Swift concurrency's few threads: waitpid runs on a thread of
    /// its own. Async tests must use this (a test blocked for minutes in `wait()` starves every
    /// other test of the cooperative pool, which has one thread per core).
    public func finished() async -> Result {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: self.wait()) }
        }
    }

    /// Runs to completion.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        stdin: String = "",
        directory: String? = nil
    ) throws -> Result {
        try spawn(executable, arguments, environment: environment, stdin: stdin, directory: directory).wait()
    }
}
