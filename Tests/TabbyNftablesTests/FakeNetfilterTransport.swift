import Synchronization
import TabbyNftables

/// A transport that records what was sent and answers like nf_tables: one NLMSG_ERROR per message that
/// asked for an ACK (error 0), except for the sequence numbers in `failures`, which get their errno.
/// Replies can also be queued by hand. (In the monorepo this belongs in TabbyTestSupport.)
final class FakeNetfilterTransport: NetfilterTransport, Sendable {
    struct State {
        var sent: [[UInt8]] = []
        var queued: [[UInt8]] = []
        var failures: [UInt32: Int32] = [:]
        var failWholeBatch: Int32?
    }

    let state = Mutex(State())
    let portID: UInt32 = 4242

    init(failures: [UInt32: Int32] = [:], failWholeBatch: Int32? = nil) {
        state.withLock {
            $0.failures = failures
            $0.failWholeBatch = failWholeBatch
        }
    }

    var sent: [[UInt8]] { state.withLock { $0.sent } }

    func send(_ datagram: [UInt8]) throws(Nft.Error) {
        state.withLock { state in
            state.sent.append(datagram)
            let messages = Self.headers(in: datagram)
            if let code = state.failWholeBatch, let begin = messages.first {
                state.queued.append(Self.error(code: -code, for: begin))
                return
            }
            // The kernel answers the whole batch at once, errors and ACKs in message order.
            var reply: [UInt8] = []
            for header in messages where header.flags & 0x4 != 0 {
                reply += Self.error(code: -(state.failures[header.sequence] ?? 0), for: header)
            }
            if !reply.isEmpty { state.queued.append(reply) }
        }
    }

    func receive() throws(Nft.Error) -> [UInt8] {
        let next = state.withLock { $0.queued.isEmpty ? nil : $0.queued.removeFirst() }
        guard let next else { throw .socket(errno: 11, operation: "fake: nothing queued") }
        return next
    }

    struct Header {
        var bytes: [UInt8]
        var type: UInt16
        var flags: UInt16
        var sequence: UInt32
    }

    static func headers(in datagram: [UInt8]) -> [Header] {
        var result: [Header] = []
        var offset = 0
        while offset + 16 <= datagram.count {
            let length = Int(le32(datagram, offset))
            result.append(
                Header(
                    bytes: Array(datagram[offset..<offset + 16]), type: UInt16(le16(datagram, offset + 4)),
                    flags: UInt16(le16(datagram, offset + 6)), sequence: le32(datagram, offset + 8)))
            offset += (length + 3) & ~3
        }
        return result
    }

    /// NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK: header, error, the request's header.
    static func error(code: Int32, for request: Header) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes += le(UInt32(36))  // nlmsg_len: 16 header + 4 error + 16 echoed header
        bytes += le(UInt16(2))  // NLMSG_ERROR
        bytes += le(UInt16(0x100))  // NLM_F_CAPPED
        bytes += le(request.sequence)
        bytes += le(UInt32(4242))
        bytes += le(UInt32(bitPattern: code))
        bytes += request.bytes
        return bytes
    }
}

func le32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
}

func le16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
