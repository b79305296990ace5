import CTabbyShims
import Foundation
import Logging
import Synchronization
import TabbyCore
import TabbyRouting

/// Where BIRD runs and which binary (tabbyd `--routing bgp`).
public struct BIRDOptions: Sendable, Hashable {
    /// Holds `bird.conf`, the control socket `bird.ctl`, `bird.pid` and `bird.log`.
    public var runDirectory: String
    public var birdPath: String

    public static let defaultRunDirectory = "/run/tabby/bird"

    public init(runDirectory: String = defaultRunDirectory, birdPath: String = "/usr/sbin/bird") {
        self.runDirectory = runDirectory
        self.birdPath = birdPath
    }

    public var configPath: String { runDirectory + "/bird.conf" }
    public var socketPath: String { runDirectory + "/bird.ctl" }
    public var pidPath: String { runDirectory + "/bird.pid" }
    public var logPath: String { runDirectory + "/bird.log" }
}

/// Runs BIRD for tabbyd, as calico-node's runit runs it beside Felix: `bird -f -c bird.conf -s
/// bird.ctl -P bird.pid` in the node's namespace. A new configuration is written atomically and
/// loaded with `configure` on the control socket (BIRD keeps its sessions and keeps running the
/// old configuration if it rejects the new one). A BIRD left running by a tabbyd that crashed is
/// adopted (its pid file names a live `bird` with this socket), so routes and sessions survive an
/// agent crash. Once a second the supervisor restarts a BIRD that exited and asks the control
/// socket for `show status`: when BIRD does not answer, `/liveness` fails (Calico #7472, #7712).
final class BIRDSupervisor: Sendable {
    let options: BIRDOptions
    let logger: Logger
    let metrics: AgentMetrics

    struct State {
        var pid: Int32?
        /// Started by this tabbyd (reaped with waitpid) rather than adopted.
        var child = false
        var written: String?
    }
    // Mutex: sync (the agent's loop), the supervision loop and stop() all touch it.
    let state = Mutex(State())
    /// Serialises what starts or reconfigures BIRD (the agent's sync and the supervision loop's
    /// restart), so two BIRDs are never started at once.
    let operations = Mutex(())

    init(options: BIRDOptions, logger: Logger, metrics: AgentMetrics) {
        self.options = options
        self.logger = logger
        self.metrics = metrics
    }

    /// The configuration BIRD should run: written and loaded when it differs from the last one,
    /// BIRD started (or adopted) when it is not running.
    func apply(configuration text: String) throws {
        try operations.withLock { _ in try applyLocked(configuration: text) }
    }

    private func applyLocked(configuration text: String) throws {
        let (pid, written) = state.withLock { ($0.pid, $0.written) }
        if let pid, Self.alive(pid), written == text { return }
        try FileManager.default.createDirectory(atPath: options.runDirectory, withIntermediateDirectories: true)
        try text.write(toFile: options.configPath, atomically: true, encoding: .utf8)
        state.withLock { $0.written = text }
        if let pid, Self.alive(pid) {
            try control().configure()
            logger.info("BIRD reconfigured")
        } else if let adopted = adoptable() {
            state.withLock {
                $0.pid = adopted
                $0.child = false
            }
            try control().configure()
            logger.info("adopted the running BIRD (pid \(adopted)) and reconfigured it")
        } else {
            try start()
        }
    }

    func control() throws -> BIRDControl { try BIRDControl(socketPath: options.socketPath) }

    /// A BIRD from an earlier tabbyd on this run directory that still answers.
    func adoptable() -> Int32? {
        guard let text = try? String(contentsOfFile: options.pidPath, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), Self.alive(pid),
            let commandLine = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
            commandLine.contains("bird"), commandLine.contains(options.socketPath),
            (try? control()) != nil
        else { return nil }
        return pid
    }

    func start() throws {
        try? FileManager.default.removeItem(atPath: options.socketPath)
        let pid = try Self.spawn(
            [options.birdPath, "-f", "-c", options.configPath, "-s", options.socketPath, "-P", options.pidPath],
            log: options.logPath)
        state.withLock {
            $0.pid = pid
            $0.child = true
        }
        logger.info("started BIRD (pid \(pid)), control socket \(options.socketPath)")
        // Until BIRD answers, its sessions are not up; wait briefly so the first sync reports it.
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if (try? control()) != nil { return }
            if reapIfExited(pid) {
                let log = (try? String(contentsOfFile: options.logPath, encoding: .utf8)) ?? ""
                throw AgentError("BIRD exited at start: \(log.suffix(600))")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw AgentError("BIRD did not open its control socket \(options.socketPath) within 5 s")
    }

    /// Restarts BIRD when it has exited and reports whether its control socket answers, once a
    /// second until cancelled.
    func supervise() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            guard let (pid, child) = state.withLock({ state in state.pid.map { ($0, state.child) } }) else { continue }
            let exited = child ? reapIfExited(pid) : !Self.alive(pid)
            if exited {
                logger.error("BIRD (pid \(pid)) exited; restarting it")
                metrics.update { $0.birdRestarts += 1 }
                do {
                    try operations.withLock { _ in
                        // A sync may have started one meanwhile.
                        if let current = state.withLock({ $0.pid }), current != pid, Self.alive(current) { return }
                        try start()
                    }
                } catch {
                    logger.error("restarting BIRD failed: \(error)")
                    setLive(false, "BIRD is not running: \(error)")
                    continue
                }
            }
            let answer = await probe()
            setLive(answer == nil, answer ?? "")
        }
    }

    /// `show status` on a thread of its own (the socket calls block for up to their timeout);
    /// nil when BIRD says it is up, else why not.
    func probe() async -> String? {
        let socketPath = options.socketPath
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let reply = try BIRDControl(socketPath: socketPath).run("show status")
                    continuation.resume(
                        returning: reply.contains { $0.code == 13 }
                            ? nil : "BIRD status: \(reply.map(\.text).joined(separator: "; "))")
                } catch {
                    continuation.resume(returning: "\(error)")
                }
            }
        }
    }

    func setLive(_ live: Bool, _ reason: String) {
        let changed = metrics.update { values -> Bool in
            defer {
                values.birdUp = live
                values.live = live
                values.liveReason = live ? "" : reason
            }
            return values.live != live
        }
        if changed {
            if live {
                logger.info("BIRD answers its control socket again")
            } else {
                logger.error("not live: \(reason)")
            }
        }
    }

    /// Stops BIRD (SIGTERM, SIGKILL after 5 s): tabbyd is shutting down. Its routes stay
    /// (`persist`) until a new BIRD replaces them.
    func stop() {
        guard let (pid, child) = state.withLock({ state in state.pid.map { ($0, state.child) } }) else { return }
        let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        guard commandLine.contains("bird") else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if child ? reapIfExited(pid) : !Self.alive(pid) { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        if Self.alive(pid) { kill(pid, SIGKILL) }
        if child { _ = reapIfExited(pid) }
        state.withLock { $0.pid = nil }
        logger.info("stopped BIRD (pid \(pid))")
    }

    /// For a BIRD this process started: collects its exit status if it has exited.
    func reapIfExited(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result < 0 && errno == ECHILD && !Self.alive(pid))
    }

    static func alive(_ pid: Int32) -> Bool { Command.isAlive(pid) }

    /// Starts BIRD in its own session (a terminal's signals and a crash of tabbyd leave it
    /// running), output appended to `log`.
    static func spawn(_ command: [String], log: String) throws -> Int32 {
        do {
            return try Command.spawnDetached(command, log: log)
        } catch {
            throw AgentError("\(error); install bird2")
        }
    }
}
