import Foundation
import Glibc
import TabbyCore
import Testing

@Suite("Command: run and spawn other programs")
struct CommandTests {
    @Test func outputsStatusAndEnvironment() throws {
        let echo = try Command.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(echo == Command.Result(status: 3, stdout: "out\n", stderr: "err\n"))
        let env = try Command.run(["/usr/bin/env"], environment: ["TABBY_X": "1"])
        #expect(env.stdout == "TABBY_X=1\n")
        #expect(try Command.run(["echo", "found in PATH"]).stdout == "found in PATH\n")
        let killed = try Command.run(["/bin/sh", "-c", "kill -9 $$"])
        #expect(killed.status == 128 + 9)
    }

    /// A megabyte through cat both ways: input written while output is read, no deadlock on a full
    /// pipe; a child that reads nothing of a large input does not kill us with SIGPIPE.
    @Test func largeInputAndOutputDoNotDeadlock() throws {
        let input = String(repeating: "0123456789abcdef\n", count: 65_536)
        let cat = try Command.run(["/bin/cat"], input: input)
        #expect(cat.status == 0 && cat.stdout == input)
        let ignoring = try Command.run(["/bin/true"], input: input)
        #expect(ignoring.status == 0)
    }

    @Test func aMissingProgramIsNamed() {
        #expect(throws: Command.Failure("cannot run /nonexistent/tool: No such file or directory")) {
            try Command.run(["/nonexistent/tool"])
        }
    }

    /// Detached: its output goes to the log, it gets none of our descriptors beyond 0-2.
    @Test func spawnDetachedWritesTheLogAndInheritsNothing() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-command-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("log").path
        let held = open(directory.appendingPathComponent("held").path, O_CREAT | O_WRONLY, 0o600)
        defer { close(held) }
        let pid = try Command.spawnDetached(["/bin/sh", "-c", "echo started; ls /proc/self/fd"], log: log)
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(!Command.isAlive(pid))
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "started")
        // ls's own fds: 0, 1, 2 and the directory it reads (3); never ours (`held`).
        let fds = lines.dropFirst().compactMap { Int32($0) }
        #expect(!fds.contains(held), "\(fds)")
        #expect(Set(fds).isSubset(of: [0, 1, 2, 3]), "\(fds)")
    }
}
