import CMNL
import Glibc
import Synchronization

/// Moves whole netlink datagrams to and from the kernel's nf_tables. The real one is
/// `MNLNetfilterTransport`; unit tests use a fake that records what was sent and replays replies.
public protocol NetfilterTransport: AnyObject, Sendable {
    /// Sends one datagram (a whole batch, or one dump request).
    func send(_ datagram: [UInt8]) throws(Nft.Error)
    /// Receives one datagram; it may hold several netlink messages.
    func receive() throws(Nft.Error) -> [UInt8]
    /// The port ID the kernel assigned to this socket.
    var portID: UInt32 { get }
    /// Makes sure a datagram of `sendBytes` can be sent and `acknowledgements` ACKs can queue up
    /// without being dropped (the kernel answers a whole batch before `send` returns).
    func prepare(sendBytes: Int, acknowledgements: Int) throws(Nft.Error)
}

extension NetfilterTransport {
    public func prepare(sendBytes: Int, acknowledgements: Int) throws(Nft.Error) {}
}

/// A NETLINK_NETFILTER socket through libmnl. It belongs to the network namespace of the thread that
/// created it, for its whole life.
///
/// `@unchecked Sendable`: the `mnl_socket` pointer and port ID never change; the kernel makes each
/// sendto/recvfrom atomic; buffer sizes are guarded by the `bufferSizes` Mutex. `NftSocket` serialises exchanges.
public final class MNLNetfilterTransport: NetfilterTransport, @unchecked Sendable {
    /// Receive buffer per datagram: the kernel sizes dump datagrams from the reader's buffer (up to
    /// 32 KiB, libmnl's MNL_SOCKET_DUMP_SIZE); a smaller buffer would truncate them.
    static let receiveBufferSize = 32_768
    /// Room per queued ACK (skb overhead included), and the cap on what we ask for.
    static let bytesPerAcknowledgement = 1_024
    static let maximumBuffer = 256 << 20

    private let socket: OpaquePointer
    public let portID: UInt32
    /// The send and receive buffer sizes asked for so far.
    private let bufferSizes = Mutex<(send: Int, receive: Int)>((0, 0))

    /// Opens and binds a NETLINK_NETFILTER socket in the calling thread's network namespace.
    public init() throws(Nft.Error) {
        guard let socket = mnl_socket_open(NETLINK_NETFILTER) else {
            throw .socket(errno: Glibc.errno, operation: "mnl_socket_open(NETLINK_NETFILTER)")
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let code = Glibc.errno
            mnl_socket_close(socket)
            throw .socket(errno: code, operation: "mnl_socket_bind")
        }
        self.socket = socket
        self.portID = mnl_socket_get_portid(socket)
        let fd = mnl_socket_get_fd(socket)
        var on: Int32 = 1
        // CAP_ACK: error replies carry only the failed message's header (we map errors by sequence
        // number), which keeps the replies to a large batch small. EXT_ACK: best effort.
        setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        // A receive timeout, so a lost reply becomes an error instead of a hang.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        mnl_socket_close(socket)
    }

    public func send(_ datagram: [UInt8]) throws(Nft.Error) {
        while true {
            let sent = datagram.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, $0.count) }
            if sent == datagram.count { return }
            if sent < 0 && Glibc.errno == EINTR { continue }
            throw .socket(errno: sent < 0 ? Glibc.errno : EMSGSIZE, operation: "sendto (\(datagram.count) bytes)")
        }
    }

    public func receive() throws(Nft.Error) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Self.receiveBufferSize)
        while true {
            let received = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
            if received >= 0 {
                buffer.removeLast(buffer.count - received)
                return buffer
            }
            let code = Glibc.errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK {
                throw .socket(errno: code, operation: "recvfrom (no reply from the kernel within 30 s)")
            }
            throw .socket(errno: code, operation: "recvfrom")
        }
    }

    public func prepare(sendBytes: Int, acknowledgements: Int) throws(Nft.Error) {
        let wantedSend = min(sendBytes + 4_096, Self.maximumBuffer)
        let wantedReceive = min(acknowledgements * Self.bytesPerAcknowledgement + 65_536, Self.maximumBuffer)
        let fd = mnl_socket_get_fd(socket)
        try bufferSizes.withLock { (sizes: inout (send: Int, receive: Int)) throws(Nft.Error) in
            // The kernel rejects datagrams above sk_sndbuf - 32, and drops replies beyond sk_rcvbuf.
            if wantedSend > sizes.send {
                try Self.setBuffer(
                    fd, force: SO_SNDBUFFORCE, plain: SO_SNDBUF, bytes: wantedSend, name: "SO_SNDBUF")
                sizes.send = wantedSend
            }
            if wantedReceive > sizes.receive {
                try Self.setBuffer(
                    fd, force: SO_RCVBUFFORCE, plain: SO_RCVBUF, bytes: wantedReceive, name: "SO_RCVBUF")
                sizes.receive = wantedReceive
            }
        }
    }

    /// The *FORCE variant ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN; fall back to the plain one.
    private static func setBuffer(_ fd: Int32, force: Int32, plain: Int32, bytes: Int, name: String) throws(Nft.Error) {
        var value = Int32(bytes)
        if setsockopt(fd, SOL_SOCKET, force, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 { return }
        if setsockopt(fd, SOL_SOCKET, plain, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 { return }
        throw .socket(errno: Glibc.errno, operation: "setsockopt(\(name), \(bytes))")
    }
}
