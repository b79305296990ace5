import CTabbyShims
import Foundation
import Glibc

/// Runs other programs: to completion with their output captured (`run`), or detached in a
/// session of their own (`spawnDetached`: tabbyd's BIRD, the lab's agents).
///
/// posix_spawn and waitpid, no Foundation `Process`: its `waitUntilExit` polls the run loop every
/// 50 ms on Linux, which added up to 50 ms to every iptables restore. Input is written and both
/// outputs read in one poll loop, so a large input or output never deadlocks on a full pipe. The
/// child gets no descriptor of ours beyond its standard three.
public enum Command {
    public struct Result: Sendable, Equatable {
        /// The exit status; 128 + the signal number when a signal ended it (as a shell reports).
        public var status: Int32
        public var stdout: String
        public var stderr: String

        public init(status: Int32, stdout: String, stderr: String) {
            self.status = status
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// The program could not be started (or waited for); names it and why.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Runs `command` to its end, writing `input` to its stdin; `command[0]` is a path, or a name
    /// looked up in `PATH`. `environment` replaces ours when given.
    public static func run(_ command: [String], environment: [String: String]? = nil, input: String = "")
        throws(Failure) -> Result
    {
        guard let program = command.first else { throw Failure("no command to run") }
        // Socket pairs, not pipes: created close-on-exec in one call (pipe2 does not import), and a
        // child that exits before reading all its input makes a pipe write raise SIGPIPE, while
        // send(MSG_NOSIGNAL) just fails.
        var stdinPair: [Int32] = [-1, -1]
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &stdinPair) == 0, socketpair(AF_UNIX, type, 0, &stdoutPipe) == 0,
            socketpair(AF_UNIX, type, 0, &stderrPipe) == 0
        else {
            let code = errno
            for fd in stdinPair + stdoutPipe + stderrPipe where fd >= 0 { close(fd) }
            throw Failure("\(program): cannot make pipes: \(String(cString: strerror(code)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        _ = TB_spawn_actions_closefrom(&actions, 3)
        let spawned = spawn(command, actions: &actions, attributes: nil, environment: environment)
        for fd in [stdinPair[1], stdoutPipe[1], stderrPipe[1]] { close(fd) }
        let pid: pid_t
        switch spawned {
        case .success(let started): pid = started
        case .failure(let code):
            for fd in [stdinPair[0], stdoutPipe[0], stderrPipe[0]] { close(fd) }
            throw Failure("cannot run \(program): \(String(cString: strerror(code)))")
        }
        let (stdout, stderr) = exchange(
            input: Array(input.utf8), stdin: stdinPair[0], outputs: stdoutPipe[0], stderrPipe[0])
        return Result(
            status: try wait(pid, program: program), stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Starts `command` in its own session (it outlives us and ignores our terminal's signals),
    /// stdin from /dev/null, stdout and stderr appended to `log`; returns its PID. The caller
    /// reaps it (`waitpid`) or leaves it to init when it exits after us.
    public static func spawnDetached(_ command: [String], log: String) throws(Failure) -> Int32 {
        guard let program = command.first else { throw Failure("no command to run") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of ours: a long-lived child must not keep our listening sockets (the next
        // tabbyd could not bind its health port) or the lab CLI's pipes open.
        _ = TB_spawn_actions_closefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (0x80, glibc) is behind _GNU_SOURCE and does not import.
        posix_spawnattr_setflags(&attributes, Int16(0x80 | POSIX_SPAWN_SETSIGMASK))
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        switch spawn(command, actions: &actions, attributes: &attributes, environment: nil) {
        case .success(let pid): return pid
        case .failure(let code): throw Failure("could not start \(program): \(String(cString: strerror(code)))")
        }
    }

    /// Whether `pid` is a process that has not exited (a zombie counts as exited).
    public static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
    }

    private enum Spawned {
        case success(pid_t)
        case failure(Int32)
    }

    private static func spawn(
        _ command: [String], actions: inout posix_spawn_file_actions_t, attributes: UnsafePointer<posix_spawnattr_t>?,
        environment: [String: String]?
    ) -> Spawned {
        var arguments = command.map { strdup($0) }
        arguments.append(nil)
        defer { for argument in arguments { free(argument) } }
        var variables = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for variable in variables ?? [] { free(variable) } }
        var pid: pid_t = 0
        // A bare name is looked up in PATH, as a shell would.
        let spawner = command[0].contains("/") ? posix_spawn : posix_spawnp
        let code: Int32
        if variables != nil {
            code = spawner(&pid, command[0], &actions, attributes, arguments, &variables!)
        } else {
            code = spawner(&pid, command[0], &actions, attributes, arguments, environ)
        }
        return code == 0 ? .success(pid) : .failure(code)
    }

    /// Writes `input` to `stdin` (then closes it) while reading both outputs to their end.
    private static func exchange(input: [UInt8], stdin: Int32, outputs stdout: Int32, _ stderr: Int32) -> (
        [UInt8], [UInt8]
    ) {
        var written = 0
        var inputOpen = true
        if input.isEmpty {
            close(stdin)
            inputOpen = false
        } else {
            _ = fcntl(stdin, F_SETFL, fcntl(stdin, F_GETFL) | O_NONBLOCK)
        }
        var open = [stdout: true, stderr: true]
        var collected: [Int32: [UInt8]] = [stdout: [], stderr: []]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while inputOpen || open.values.contains(true) {
            var fds: [pollfd] = []
            if inputOpen { fds.append(pollfd(fd: stdin, events: Int16(POLLOUT), revents: 0)) }
            for (fd, isOpen) in open where isOpen { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            guard poll(&fds, nfds_t(fds.count), -1) >= 0 || errno == EINTR else { break }
            for entry in fds where entry.revents != 0 {
                if entry.fd == stdin {
                    let sent = input[written...].withUnsafeBytes {
                        send(stdin, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                    }
                    if sent > 0 { written += sent }
                    if written == input.count || (sent < 0 && errno != EAGAIN && errno != EINTR) {
                        close(stdin)
                        inputOpen = false
                    }
                } else {
                    let count = read(entry.fd, &buffer, buffer.count)
                    if count > 0 {
                        collected[entry.fd]! += buffer[0..<count]
                    } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                        close(entry.fd)
                        open[entry.fd] = false
                    }
                }
            }
        }
        if inputOpen { close(stdin) }
        for (fd, isOpen) in open where isOpen { close(fd) }
        return (collected[stdout]!, collected[stderr]!)
    }

    private static func wait(_ pid: pid_t, program: String) throws(Failure) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw Failure("waiting for \(program): \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which do not import.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
