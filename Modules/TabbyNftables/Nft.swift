import CNFTNL
import Glibc

/// Namespace for the nftables layer's shared vocabulary.
public enum Nft {
    /// Errors from building, sending or reading nftables netlink messages.
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        /// The kernel rejected one message of a batch (the whole batch was then rolled back) or a read
        /// request. `request` names the message and its object, e.g. `NFT_MSG_NEWSET inet tabby s-1a2b`.
        case kernel(errno: Int32, request: String)
        /// A socket operation failed; `operation` names it.
        case socket(errno: Int32, operation: String)
        /// A value cannot be encoded (a name too long, a key that does not fit the set), or a reply
        /// could not be decoded. `what` says which object, `reason` why.
        case malformed(what: String, reason: String)

        public var description: String {
            switch self {
            case .kernel(let code, let request):
                return "\(request): \(Nft.errorText(code)) (errno \(code))"
            case .socket(let code, let operation):
                return "\(operation): \(Nft.errorText(code)) (errno \(code))"
            case .malformed(let what, let reason):
                return "\(what): \(reason)"
            }
        }
    }

    /// The nftables address families (the `nfgen_family` of every message).
    public enum Family: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case inet = 1  // NFPROTO_INET
        case ip = 2  // NFPROTO_IPV4
        case netdev = 5  // NFPROTO_NETDEV
        case bridge = 7  // NFPROTO_BRIDGE
        case ip6 = 10  // NFPROTO_IPV6

        public var description: String {
            switch self {
            case .inet: "inet"
            case .ip: "ip"
            case .netdev: "netdev"
            case .bridge: "bridge"
            case .ip6: "ip6"
            }
        }
    }

    static func errorText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// The kernel's name limit for tables, chains and sets (NFT_NAME_MAXLEN, including the NUL).
    static let nameMaxLength = 256
    /// IFNAMSIZ: interface names in keys and cmp data are padded to this many bytes.
    static let interfaceNameSize = 16
}
