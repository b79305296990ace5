import CMNL
import TabbyCore
import Glibc

/// Moves whole netlink datagrams. The real one is `MNLSocket`; tests use a fake that records the
/// bytes sent and replays canned replies.
public protocol NetlinkTransport: AnyObject, Sendable {
    /// Sends one request (one or more netlink messages).
    func send(_ message: [UInt8]) throws(Netlink.Error)
    /// Receives one datagram; it may hold several netlink messages.
    func receive() throws(Netlink.Error) -> [UInt8]
    /// The port ID the kernel assigned to this socket (replies carry it in nlmsg_pid).
    var portID: UInt32 { get }
}

/// A NETLINK_ROUTE socket through libmnl. The socket belongs to the network namespace of the thread
/// that created it, for its whole life.
///
/// `@unchecked Sendable`: its only state is the immutable `mnl_socket` pointer and port ID; the kernel
/// makes each sendto/recvfrom atomic, and `RouteSocket` holds its lock across a request and its replies.
public final class MNLSocket: NetlinkTransport, @unchecked Sendable {
    /// Receive buffer size: libmnl 1.0.5's MNL_SOCKET_DUMP_SIZE. The kernel sizes dump datagrams from the
    /// reader's buffer (up to 32 KiB); a smaller buffer would truncate them (ENOSPC from libmnl).
    static let receiveBufferSize = 32_768

    private let socket: OpaquePointer
    public let portID: UInt32

    /// Opens and binds a NETLINK_ROUTE socket in the calling thread's network namespace, subscribed
    /// to the multicast `groups` (RTMGRP_* bits; 0 for a socket that only sends requests).
    public init(groups: UInt32 = 0) throws(Netlink.Error) {
        guard let socket = mnl_socket_open(NETLINK_ROUTE) else {
            throw .socket(errno: Glibc.errno, operation: "mnl_socket_open(NETLINK_ROUTE)")
        }
        guard mnl_socket_bind(socket, groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let code = Glibc.errno
            mnl_socket_close(socket)
            throw .socket(errno: code, operation: "mnl_socket_bind")
        }
        self.socket = socket
        self.portID = mnl_socket_get_portid(socket)
    }

    deinit {
        mnl_socket_close(socket)
    }

    /// Makes `receive()` fail with EAGAIN when nothing arrived within `milliseconds`.
    public func setReceiveTimeout(milliseconds: Int) throws(Netlink.Error) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        guard
            setsockopt(
                mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                == 0
        else {
            throw .socket(errno: Glibc.errno, operation: "setsockopt(SO_RCVTIMEO)")
        }
    }

    public func send(_ message: [UInt8]) throws(Netlink.Error) {
        while true {
            let sent = message.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, $0.count) }
            if sent == message.count { return }
            if sent < 0 && Glibc.errno == EINTR { continue }
            throw .socket(errno: sent < 0 ? Glibc.errno : EMSGSIZE, operation: "sendto")
        }
    }

    public func receive() throws(Netlink.Error) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Self.receiveBufferSize)
        while true {
            let received = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
            if received >= 0 { return Array(buffer.prefix(received)) }
            if Glibc.errno == EINTR { continue }
            throw .socket(errno: Glibc.errno, operation: "recvfrom")
        }
    }
}
