import TabbyCore
import Synchronization
import TabbyNetlink

/// Records every request and answers from a queue of canned datagrams, in order.
final class FakeTransport: NetlinkTransport, Sendable {
    let portID: UInt32
    private let state = Mutex<(sent: [[UInt8]], replies: [[UInt8]])>((sent: [], replies: []))

    init(portID: UInt32 = 0x1234, replies: [[UInt8]] = []) {
        self.portID = portID
        state.withLock { $0.replies = replies }
    }

    var sent: [[UInt8]] { state.withLock { $0.sent } }

    func enqueue(_ datagram: [UInt8]) { state.withLock { $0.replies.append(datagram) } }

    func send(_ message: [UInt8]) throws(Netlink.Error) {
        state.withLock { $0.sent.append(message) }
    }

    func receive() throws(Netlink.Error) -> [UInt8] {
        let next = state.withLock { state -> [UInt8]? in
            state.replies.isEmpty ? nil : state.replies.removeFirst()
        }
        guard let next else { throw .socket(errno: 11, operation: "fake: no reply queued") }  // EAGAIN
        return next
    }
}

/// Builders for canned kernel replies (little-endian, as on x86_64 and arm64).
enum Reply {
    static func le16(_ value: UInt16) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    static func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    static func header(length: Int, type: UInt16, flags: UInt16, sequence: UInt32, portID: UInt32) -> [UInt8] {
        le32(UInt32(length)) + le16(type) + le16(flags) + le32(sequence) + le32(portID)
    }

    /// NLMSG_ERROR with `error` (0: an ACK), quoting the request's header as the kernel does.
    static func error(_ error: Int32, sequence: UInt32, portID: UInt32 = 0x1234) -> [UInt8] {
        let quoted = header(length: 16, type: 0, flags: 0, sequence: sequence, portID: 0)
        return header(length: 36, type: 2, flags: 0, sequence: sequence, portID: portID)
            + le32(UInt32(bitPattern: error)) + quoted
    }

    static func done(sequence: UInt32, flags: UInt16 = 2, portID: UInt32 = 0x1234) -> [UInt8] {
        header(length: 20, type: 3, flags: flags, sequence: sequence, portID: portID) + le32(0)
    }

    static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let length = 4 + payload.count
        let padding = (4 - length % 4) % 4
        return le16(UInt16(length)) + le16(type) + payload + [UInt8](repeating: 0, count: padding)
    }

    /// RTM_NEWLINK as a dump answer (NLM_F_MULTI).
    static func link(
        index: Int32, flags: UInt32, attributes: [UInt8], sequence: UInt32, messageFlags: UInt16 = 2,
        portID: UInt32 = 0x1234
    ) -> [UInt8] {
        let info: [UInt8] = [0, 0] + le16(1) + le32(UInt32(bitPattern: index)) + le32(flags) + le32(0)
        let body = info + attributes
        return header(length: 16 + body.count, type: 16, flags: messageFlags, sequence: sequence, portID: portID) + body
    }
}
