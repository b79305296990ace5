import Foundation
import TabbyRouting
import Testing

/// BIRD's control protocol, with replies recorded from BIRD 2.0.12 (`show protocols`, `show
/// status`, `configure`) replayed by a fake BIRD on a unix socket.
@Suite("BIRD control socket")
struct BIRDControlTests {
    static let greeting = "0001 BIRD 2.0.12 ready.\n"
    static let protocols = """
        2002-Name       Proto      Table      State  Since         Info
        1002-device1    Device     ---        up     13:20:40.993  \n\
         tabby_blocks Static     master4    up     13:20:40.993  \n\
         Mesh_10_10_0_12 BGP        ---        start  13:20:40.993  Active        Socket: Connection refused
         Mesh_10_10_0_13 BGP        ---        up     2026-11-27 09:01:02  Established   \n\
        0000 \n
        """
    static let status = """
        1000-BIRD 2.0.12
        1011-Router ID is 10.10.0.11
         Hostname is vm
         Current server time is 2026-11-28 13:20:42.143
        0013 Daemon is up and running

        """
    static let reconfigured = "0002-Reading configuration from /run/tabby/bird/bird.conf\n0003 Reconfigured\n"
    static let rejected =
        "0002-Reading configuration from /run/tabby/bird/bird.conf\n8002 /run/tabby/bird/bird.conf:4:1 syntax error, unexpected CF_SYM_UNDEFINED\n"

    static func parse(_ text: String) -> [[BIRDReplyLine]] {
        var parser = BIRDReplyParser()
        return text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { parser.feed(String($0)) }
    }

    @Test func repliesEndAtACodeFollowedByASpace() {
        let replies = Self.parse(Self.greeting + Self.status)
        #expect(replies.count == 2)
        #expect(replies[0] == [BIRDReplyLine(code: 1, text: "BIRD 2.0.12 ready.")])
        #expect(replies[1].map(\.code) == [1000, 1011, 1011, 1011, 13])
        #expect(replies[1][2].text == "Hostname is vm")
    }

    @Test func showProtocolsRows() throws {
        let reply = try #require(Self.parse(Self.protocols).first)
        let rows = BIRDProtocolStatus.parse(reply)
        #expect(rows.map(\.name) == ["device1", "tabby_blocks", "Mesh_10_10_0_12", "Mesh_10_10_0_13"])
        #expect(
            rows[2]
                == BIRDProtocolStatus(
                    name: "Mesh_10_10_0_12", proto: "BGP", table: "---", state: "start", since: "13:20:40.993",
                    info: "Active Socket: Connection refused"))
        #expect(rows[3].since == "2026-11-27 09:01:02" && rows[3].info == "Established" && rows[3].state == "up")
    }

    /// A fake BIRD: answers each request line with the next canned reply.
    final class FakeBIRD: @unchecked Sendable {
        // @unchecked: `received` is written by the server thread and read after it is joined.
        let path: String
        let listener: Int32
        var received: [String] = []
        let done = DispatchSemaphore(value: 0)

        init(replies: [String], silent: Bool = false) throws {
            path =
                FileManager.default.temporaryDirectory.appendingPathComponent(
                    "fb-\(UInt32.random(in: 0...UInt32.max)).ctl"
                )
                .path
            listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            guard bound == 0, listen(listener, 1) == 0 else { throw CocoaError(.fileWriteUnknown) }
            let serverSocket = self.listener
            Thread.detachNewThread { [self] in
                let client = accept(serverSocket, nil, nil)
                defer {
                    close(client)
                    done.signal()
                }
                if silent {
                    Thread.sleep(forTimeInterval: 1.5)
                    return
                }
                func write(_ text: String) {
                    _ = Array(text.utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }
                }
                write(BIRDControlTests.greeting)
                var pending = replies[...]
                var buffer: [UInt8] = []
                while !pending.isEmpty {
                    var chunk = [UInt8](repeating: 0, count: 512)
                    let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                    if count <= 0 { return }
                    buffer += chunk[0..<count]
                    while let newline = buffer.firstIndex(of: 10) {
                        received.append(String(decoding: buffer[..<newline], as: UTF8.self))
                        buffer.removeSubrange(...newline)
                        write(pending.removeFirst())
                    }
                }
            }
        }

        func finish() {
            done.wait()
            close(listener)
            unlink(path)
        }
    }

    @Test func showProtocolsAndConfigureOverTheSocket() throws {
        let bird = try FakeBIRD(replies: [Self.protocols, Self.reconfigured, Self.rejected])
        do {
            let control = try BIRDControl(socketPath: bird.path)
            #expect(control.greeting == "BIRD 2.0.12 ready.")
            #expect(try control.protocols().count == 4)
            try control.configure()
            #expect(
                throws: RoutingError.bird(
                    "BIRD rejected its new configuration: /run/tabby/bird/bird.conf:4:1 syntax error, unexpected CF_SYM_UNDEFINED"
                )
            ) {
                try control.configure()
            }
        }
        bird.finish()
        #expect(bird.received == ["show protocols", "configure", "configure"])
    }

    /// A BIRD that accepts but never answers is reported within the timeout, not waited on forever.
    @Test func aSilentBIRDTimesOut() throws {
        let bird = try FakeBIRD(replies: [], silent: true)
        let started = Date()
        #expect(throws: RoutingError.bird("BIRD did not answer on its control socket in time")) {
            _ = try BIRDControl(socketPath: bird.path, timeout: .milliseconds(300))
        }
        #expect(Date().timeIntervalSince(started) < 1.2)
        bird.finish()
    }

    @Test func noSocketSaysSo() {
        #expect(throws: (any Error).self) { _ = try BIRDControl(socketPath: "/nonexistent/bird.ctl") }
        do {
            _ = try BIRDControl(socketPath: "/nonexistent/bird.ctl")
        } catch {
            #expect("\(error)".contains("cannot connect to BIRD's control socket /nonexistent/bird.ctl"))
        }
    }
}
