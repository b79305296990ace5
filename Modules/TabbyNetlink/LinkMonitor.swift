import CMNL
import Glibc
import Synchronization
import TabbyCore

/// Watches a network namespace's interfaces come and go (the RTMGRP_LINK multicast group) and calls
/// `handler` for each event on a thread of its own, until `stop()`.
///
/// Events are delivered in the kernel's order. When the socket's buffer overflowed (ENOBUFS: events
/// were lost), the handler gets `.overrun` and should list the links again.
public final class LinkMonitor: Sendable {
    public enum Event: Sendable, Equatable {
        /// RTM_NEWLINK: a new interface, or a change of one (state, name, master).
        case changed(Link)
        /// RTM_DELLINK: the interface is gone.
        case removed(Link)
        /// RTM_NEWADDR / RTM_DELADDR (IPv4 and IPv6): an address of the interface with this index
        /// came or went (only with `addresses: true`).
        case addressChanged(interfaceIndex: Int32)
        /// Events were lost; list the links to learn the present state.
        case overrun
    }

    private let socket: MNLSocket
    private let stopped = Atomic<Bool>(false)

    /// Subscribes in the namespace at `namespacePath` (nil: the caller's own) before returning, so
    /// no interface created after this call is missed. The handler runs on the monitor's thread and
    /// must not block for long. Call `stop()` when done: the thread holds the monitor until then.
    public init(namespacePath: String?, addresses: Bool = false, handler: @escaping @Sendable (Event) -> Void) throws {
        let groups = UInt32(RTMGRP_LINK) | (addresses ? UInt32(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR) : 0)
        let open: @Sendable () throws -> MNLSocket = {
            let socket = try MNLSocket(groups: groups)
            try socket.setReceiveTimeout(milliseconds: Self.pollMilliseconds)
            return socket
        }
        socket = try namespacePath.map { try NetworkNamespace.run(path: $0, open) } ?? open()
        try Self.detachedThread { [self] in run(handler) }
    }

    /// How often the thread looks at `stop()` while no event comes.
    static let pollMilliseconds = 200

    /// Ends the watch: the handler is called no more once the thread's current receive returns
    /// (at most `pollMilliseconds` later); then the socket closes.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func run(_ handler: @Sendable (Event) -> Void) {
        while !stopped.load(ordering: .relaxed) {
            let datagram: [UInt8]
            do {
                datagram = try socket.receive()
            } catch .socket(errno: EAGAIN, _) {
                continue
            } catch .socket(errno: ENOBUFS, _) {
                handler(.overrun)
                continue
            } catch {
                // Nothing else is expected from a bound netlink socket; wait and go on rather than spin.
                usleep(100_000)
                continue
            }
            for event in Self.events(in: datagram) { handler(event) }
        }
    }

    /// The link events of one datagram (other message types are skipped).
    static func events(in datagram: [UInt8]) -> [Event] {
        var events: [Event] = []
        var offset = 0
        let headerSize = MemoryLayout<nlmsghdr>.size
        while offset + headerSize <= datagram.count {
            let header = datagram.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self) }
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, offset + length <= datagram.count else { break }
            let message = Array(datagram[offset..<offset + length])
            let type = Int32(header.nlmsg_type)
            if type == Int32(RTM_NEWADDR) || type == Int32(RTM_DELADDR) {
                if let info = fixedHeader(of: message, as: ifaddrmsg.self) {
                    events.append(.addressChanged(interfaceIndex: Int32(bitPattern: info.ifa_index)))
                }
            } else if let link = Link(message: message) {
                switch Int32(header.nlmsg_type) {
                case Int32(RTM_NEWLINK): events.append(.changed(link))
                case Int32(RTM_DELLINK): events.append(.removed(link))
                default: break
                }
            }
            offset += (length + 3) & ~3
        }
        return events
    }

    /// Runs `body` on a new detached thread (this module does without Foundation's `Thread`).
    private static func detachedThread(_ body: @escaping @Sendable () -> Void) throws {
        final class Box {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        let created = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw NetworkNamespace.Error.system(errno: created, operation: "pthread_create (link monitor)")
        }
        pthread_detach(thread)
    }
}
