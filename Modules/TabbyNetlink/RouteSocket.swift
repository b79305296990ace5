import CMNL
import TabbyCore
import Glibc
import Synchronization

/// An rtnetlink session on one transport. Requests set NLM_F_ACK and read until the kernel's ACK or
/// error; dumps read until NLMSG_DONE and start over (up to `dumpAttempts` times) when the kernel
/// marks the dump NLM_F_DUMP_INTR because the table changed under it.
///
/// A netlink socket is bound to the network namespace it was created in, forever: a RouteSocket made
/// inside a pod's namespace (`open(inNamespaceAt:)`) keeps programming that namespace from any thread.
/// Every call requires CAP_NET_ADMIN in that namespace, except the read-only dumps.
///
/// `@unchecked Sendable`: the lock is `exchangeLock`, a `Mutex` holding the next sequence number; it is
/// held across each request and all of its replies, so concurrent callers never interleave on `transport`.
public final class RouteSocket: @unchecked Sendable {
    /// How many times a dump is tried when the kernel reports NLM_F_DUMP_INTR.
    static let dumpAttempts = 4

    private let transport: any NetlinkTransport
    private let exchangeLock: Mutex<UInt32>

    /// A session on `transport`; sequence numbers start at `firstSequence` and go up by one per request.
    public init(transport: any NetlinkTransport, firstSequence: UInt32 = 1) {
        self.transport = transport
        self.exchangeLock = Mutex(firstSequence)
    }

    /// A session on a new NETLINK_ROUTE socket in the calling thread's network namespace.
    public convenience init() throws(Netlink.Error) {
        self.init(transport: try MNLSocket())
    }

    /// Creates the socket inside the network namespace at `path` (on a dedicated thread that setns'd
    /// there) and returns it; the socket keeps working in that namespace from any thread.
    public static func open(inNamespaceAt path: String) throws -> RouteSocket {
        try NetworkNamespace.run(path: path) { try RouteSocket() }
    }

    // MARK: - Exchanges

    /// Sends a request with NLM_F_REQUEST|NLM_F_ACK (plus `flags`) and returns the data messages the
    /// kernel sent before its ACK (a get returns its answer that way).
    @discardableResult
    func request(
        type: some BinaryInteger, flags: Int32 = 0, describedAs description: @autoclosure () -> String,
        _ build: (inout MessageBuilder) -> Void
    ) throws(Netlink.Error) -> [[UInt8]] {
        try exchangeLock.withLock { (sequence: inout UInt32) throws(Netlink.Error) -> [[UInt8]] in
            let seq = Self.take(&sequence)
            var message = MessageBuilder(
                type: UInt16(truncatingIfNeeded: type), flags: NLM_F_REQUEST | NLM_F_ACK | flags, sequence: seq)
            build(&message)
            try transport.send(message.bytes)
            switch try collectReplies(sequence: seq, describedAs: description()) {
            case .complete(let messages): return messages
            case .interrupted:
                throw .malformedReply(request: description(), reason: "NLM_F_DUMP_INTR on a non-dump request")
            }
        }
    }

    /// Sends a dump request (NLM_F_REQUEST|NLM_F_DUMP) and returns every data message up to NLMSG_DONE.
    func dump(
        type: some BinaryInteger, describedAs description: @autoclosure () -> String,
        _ build: (inout MessageBuilder) -> Void
    ) throws(Netlink.Error) -> [[UInt8]] {
        try exchangeLock.withLock { (sequence: inout UInt32) throws(Netlink.Error) -> [[UInt8]] in
            for _ in 0..<Self.dumpAttempts {
                let seq = Self.take(&sequence)
                var message = MessageBuilder(
                    type: UInt16(truncatingIfNeeded: type), flags: NLM_F_REQUEST | NLM_F_DUMP, sequence: seq)
                build(&message)
                try transport.send(message.bytes)
                if case .complete(let messages) = try collectReplies(sequence: seq, describedAs: description()) {
                    return messages
                }
            }
            throw .dumpInterrupted(request: description(), attempts: Self.dumpAttempts)
        }
    }

    private static func take(_ sequence: inout UInt32) -> UInt32 {
        let current = sequence
        sequence = sequence &+ 1
        if sequence == 0 { sequence = 1 }  // 0 would turn off libmnl's sequence check
        return current
    }

    private enum Replies {
        case complete([[UInt8]])
        /// The kernel flagged the dump as inconsistent; it has been read to its end and discarded.
        case interrupted
    }

    /// Reads datagrams and runs them through mnl_cb_run until the ACK, NLMSG_DONE or an error.
    private func collectReplies(sequence: UInt32, describedAs description: String) throws(Netlink.Error) -> Replies {
        let collector = ReplyCollector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        let portID = transport.portID
        while true {
            let datagram = try transport.receive()
            if datagram.isEmpty {
                throw .malformedReply(request: description, reason: "empty datagram")
            }
            var controlCallbacks = ReplyCollector.controlCallbacks
            let result = datagram.withUnsafeBytes { raw in
                controlCallbacks.withUnsafeMutableBufferPointer { controls in
                    mnl_cb_run2(
                        raw.baseAddress, raw.count, sequence, portID, ReplyCollector.collect, context,
                        controls.baseAddress, UInt32(controls.count))
                }
            }
            let code = Glibc.errno
            // libmnl >= 1.0.3 itself reports NLM_F_DUMP_INTR as EINTR, before our callback sees the message.
            if collector.interrupted || (result == MNL_CB_ERROR && collector.kernelError == nil && code == EINTR) {
                // Read the rest of this dump so the next attempt starts on a clean socket.
                if !Self.endsDump(datagram, sequence: sequence) {
                    while !Self.endsDump(try transport.receive(), sequence: sequence) {}
                }
                return .interrupted
            }
            if let kernelError = collector.kernelError { throw .kernel(errno: kernelError, request: description) }
            if result == MNL_CB_STOP { return .complete(collector.messages) }
            if result == MNL_CB_OK { continue }
            switch code {
            case ESRCH: throw .malformedReply(request: description, reason: "reply for another netlink port")
            case EPROTO: throw .malformedReply(request: description, reason: "reply with another sequence number")
            case EBADMSG: throw .malformedReply(request: description, reason: "truncated NLMSG_ERROR")
            default: throw .malformedReply(request: description, reason: "libmnl: \(Netlink.errorText(code))")
            }
        }
    }

    /// Whether a datagram holds this request's NLMSG_DONE or NLMSG_ERROR.
    private static func endsDump(_ datagram: [UInt8], sequence: UInt32) -> Bool {
        datagram.withUnsafeBytes { raw in
            var remaining = Int32(raw.count)
            var header: UnsafePointer<nlmsghdr>? = raw.baseAddress?.assumingMemoryBound(to: nlmsghdr.self)
            while let current = header, mnl_nlmsg_ok(current, remaining) {
                let type = Int32(current.pointee.nlmsg_type)
                if current.pointee.nlmsg_seq == sequence && (type == NLMSG_DONE || type == NLMSG_ERROR) {
                    return true
                }
                header = UnsafePointer(mnl_nlmsg_next(current, &remaining))
            }
            return false
        }
    }
}

/// mnl_cb_run2's context: keeps a copy of every data message, the kernel's error if it sent one, and
/// whether it flagged the dump NLM_F_DUMP_INTR.
private final class ReplyCollector {
    var messages: [[UInt8]] = []
    var interrupted = false
    /// The errno of a negative NLMSG_ERROR: kept here because libmnl's own failures (wrong port or
    /// sequence) also come back as -1 with errno set, and ESRCH is both.
    var kernelError: Int32?

    static let collect: mnl_cb_t = { header, context in
        guard let header, let context else { return MNL_CB_ERROR }
        let collector = Unmanaged<ReplyCollector>.fromOpaque(context).takeUnretainedValue()
        if Int32(header.pointee.nlmsg_flags) & NLM_F_DUMP_INTR != 0 {
            collector.interrupted = true
            return MNL_CB_STOP
        }
        let bytes = UnsafeRawBufferPointer(start: header, count: Int(header.pointee.nlmsg_len))
        collector.messages.append(Array(bytes))
        return MNL_CB_OK
    }

    /// NLMSG_ERROR: error 0 is the ACK that ends a request; anything else is the kernel's -errno.
    static let error: mnl_cb_t = { header, context in
        guard let header, let context else { return MNL_CB_ERROR }
        let collector = Unmanaged<ReplyCollector>.fromOpaque(context).takeUnretainedValue()
        guard header.pointee.nlmsg_len >= UInt32(MemoryLayout<nlmsghdr>.size + MemoryLayout<Int32>.size) else {
            Glibc.errno = EBADMSG
            return MNL_CB_ERROR
        }
        let code = mnl_nlmsg_get_payload(header)!.loadUnaligned(as: Int32.self)
        if code == 0 { return MNL_CB_STOP }
        collector.kernelError = -code
        return MNL_CB_ERROR
    }

    /// Control-message callbacks by type, up to NLMSG_ERROR (2). NLMSG_DONE (3) is past the array, so
    /// libmnl's default (stop) handles it; NLMSG_NOOP (1) is ignored.
    static let controlCallbacks: [mnl_cb_t?] = [nil, nil, error]
}
