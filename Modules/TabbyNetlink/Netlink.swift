import TabbyCore
import Glibc

/// Namespace for rtnetlink constants and errors shared by the transport and the session.
public enum Netlink {
    /// Tabby's own route protocol number (RTPROT): every route Tabby programs carries it, so a
    /// restarted agent can find its routes and never touches anyone else's.
    public static let tabbyRouteProtocol: UInt8 = 85

    /// What went wrong, with the request it happened to (`"RTM_NEWROUTE 10.65.0.0/26 dev #7"`).
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// The kernel answered the request with a negative errno (NLMSG_ERROR).
        case kernel(errno: Int32, request: String)
        /// A socket call failed (`operation` is e.g. `"mnl_socket_open(NETLINK_ROUTE)"`, `"recvfrom"`).
        case socket(errno: Int32, operation: String)
        /// The kernel's reply could not be decoded (wrong sequence, truncated message, missing attribute).
        case malformedReply(request: String, reason: String)
        /// A dump was interrupted (NLM_F_DUMP_INTR) on every attempt.
        case dumpInterrupted(request: String, attempts: Int)
        /// The caller passed a value the kernel would reject or that cannot be encoded.
        case invalidArgument(String)

        /// The errno behind the error, if there is one.
        public var errno: Int32? {
            switch self {
            case .kernel(let code, _), .socket(let code, _): return code
            case .malformedReply, .dumpInterrupted, .invalidArgument: return nil
            }
        }

        public var description: String {
            switch self {
            case .kernel(let code, let request):
                return "\(request): \(Netlink.errorText(code)) (errno \(code))"
            case .socket(let code, let operation):
                return "netlink socket \(operation): \(Netlink.errorText(code)) (errno \(code))"
            case .malformedReply(let request, let reason):
                return "\(request): malformed reply from the kernel: \(reason)"
            case .dumpInterrupted(let request, let attempts):
                return "\(request): dump interrupted by concurrent changes \(attempts) times in a row; try again"
            case .invalidArgument(let reason):
                return "invalid netlink request: \(reason)"
            }
        }
    }

    /// strerror's text for an errno.
    static func errorText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

/// Address family of an address, route or neighbour.
public enum AddressFamily: Sendable, Hashable {
    case ipv4
    case ipv6

    var kernelValue: UInt8 {
        switch self {
        case .ipv4: return UInt8(AF_INET)
        case .ipv6: return UInt8(AF_INET6)
        }
    }

    init?(kernelValue: UInt8) {
        switch Int32(kernelValue) {
        case AF_INET: self = .ipv4
        case AF_INET6: self = .ipv6
        default: return nil
        }
    }

    init(of address: IPAddress) {
        self = address.isIPv4 ? .ipv4 : .ipv6
    }
}
