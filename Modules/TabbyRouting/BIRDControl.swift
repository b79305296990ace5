import Foundation

/// One line of a BIRD control-socket reply: a 4-digit code and its text. BIRD writes `CODE-text`
/// for a line with more to come, ` text` to continue the previous code, and `CODE text` for the
/// last line; codes 0xxx are results, 1xxx table rows, 2xxx table headers, 8xxx run-time errors
/// and 9xxx parse errors (BIRD's doc/reply_codes).
public struct BIRDReplyLine: Hashable, Sendable {
    public var code: Int
    public var text: String

    public init(code: Int, text: String) {
        self.code = code
        self.text = text
    }
}

/// Splits BIRD's control protocol into replies.
public struct BIRDReplyParser: Sendable {
    var lines: [BIRDReplyLine] = []
    var lastCode = 0

    public init() {}

    /// Feeds one line (without its newline); returns the whole reply when this line ends it.
    public mutating func feed(_ line: String) -> [BIRDReplyLine]? {
        if line.hasPrefix("+") { return nil }  // asynchronous notices between replies
        if line.hasPrefix(" ") {
            lines.append(BIRDReplyLine(code: lastCode, text: String(line.dropFirst())))
            return nil
        }
        let bytes = Array(line.utf8)
        guard bytes.count >= 4, let code = Int(String(decoding: bytes[0..<4], as: UTF8.self)) else {
            lines.append(BIRDReplyLine(code: lastCode, text: line))
            return nil
        }
        lastCode = code
        lines.append(BIRDReplyLine(code: code, text: String(decoding: bytes.dropFirst(5), as: UTF8.self)))
        guard bytes.count == 4 || bytes[4] == UInt8(ascii: " ") else { return nil }
        defer { lines = [] }
        return lines
    }
}

/// A session of BIRD's `show protocols`.
public struct BIRDProtocolStatus: Hashable, Sendable, Codable {
    public var name: String
    public var proto: String
    public var table: String
    public var state: String
    public var since: String
    public var info: String

    public init(name: String, proto: String, table: String, state: String, since: String, info: String) {
        self.name = name
        self.proto = proto
        self.table = table
        self.state = state
        self.since = since
        self.info = info
    }

    /// The rows of a `show protocols` reply (code 1002 and their continuations).
    public static func parse(_ reply: [BIRDReplyLine]) -> [BIRDProtocolStatus] {
        reply.filter { $0.code == 1002 }.compactMap { line in
            let fields = line.text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard fields.count >= 5 else { return nil }
            var since = fields[4]
            var rest = fields.dropFirst(5)
            // `since` is a time, or a date and a time for a session older than a day.
            if since.contains("-"), let time = rest.first, time.contains(":") {
                since += " " + time
                rest = rest.dropFirst()
            }
            return BIRDProtocolStatus(
                name: fields[0], proto: fields[1], table: fields[2], state: fields[3], since: since,
                info: rest.joined(separator: " "))
        }
    }
}

/// A connection to BIRD's control socket (what `birdc -s PATH` speaks). Requests are one line;
/// each gets one reply. Blocking, with a timeout on every read and write, so a BIRD that stops
/// answering is seen as such (Calico's liveness check, issues #7472 and #7712).
public final class BIRDControl {
    let fd: Int32
    var buffer: [UInt8] = []
    public private(set) var greeting: String = ""

    /// Connects and reads BIRD's greeting (`0001 BIRD 2.0.12 ready.`).
    public init(socketPath: String, timeout: Duration = .seconds(2)) throws(RoutingError) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .bird("socket(AF_UNIX): errno \(errno)") }
        self.fd = fd
        let seconds = timeout.components.seconds
        let micros = Int(timeout.components.attoseconds / 1_000_000_000_000)
        var value = timeval(tv_sec: Int(seconds), tv_usec: micros)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw .bird("BIRD control socket path \(socketPath) is too long for a unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw .bird(
                "cannot connect to BIRD's control socket \(socketPath): \(String(cString: strerror(code))); is BIRD running (tabbyd --routing bgp)?"
            )
        }
        let reply: [BIRDReplyLine]
        do { reply = try readReply() } catch {
            close(fd)
            throw error
        }
        guard reply.first?.code == 1 else {
            close(fd)
            throw .bird("unexpected BIRD greeting: \(reply.map(\.text).joined(separator: "; "))")
        }
        greeting = reply.first?.text ?? ""
    }

    deinit { close(fd) }

    /// Sends one command (`show protocols`, `configure`) and returns its reply.
    public func run(_ command: String) throws(RoutingError) -> [BIRDReplyLine] {
        let bytes = Array((command + "\n").utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .bird("writing to BIRD's control socket: errno \(errno)") }
            sent += count
        }
        return try readReply()
    }

    /// `show protocols`.
    public func protocols() throws(RoutingError) -> [BIRDProtocolStatus] {
        BIRDProtocolStatus.parse(try run("show protocols"))
    }

    /// `configure`: BIRD rereads the file it was started with. Throws BIRD's message when it
    /// rejects the file (it keeps running the previous configuration then).
    public func configure() throws(RoutingError) {
        let reply = try run("configure")
        if let failure = reply.first(where: { $0.code >= 8000 }) {
            throw .bird("BIRD rejected its new configuration: \(failure.text)")
        }
        guard reply.contains(where: { [3, 4, 18, 19, 20].contains($0.code) }) else {
            throw .bird("BIRD did not confirm the reconfiguration: \(reply.map(\.text).joined(separator: "; "))")
        }
    }

    func readReply() throws(RoutingError) -> [BIRDReplyLine] {
        var parser = BIRDReplyParser()
        while true {
            let line = try readLine()
            if let reply = parser.feed(line) { return reply }
        }
    }

    func readLine() throws(RoutingError) -> String {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw .bird("BIRD did not answer on its control socket in time")
            }
            guard count > 0 else { throw .bird("BIRD closed its control socket") }
            buffer += chunk[0..<count]
        }
    }
}
