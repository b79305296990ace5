import Foundation
import TabbyCore

/// What one pod attachment needs in the kernel: Calico's datapath (REFERENCE.md section 7).
public struct PodAttachment: Sendable, Hashable {
    /// The host side of the veth, `cali` + 11 hex characters.
    public var hostInterface: String
    /// `CNI_NETNS`: the pod's network namespace.
    public var namespacePath: String
    /// `CNI_IFNAME`: the pod side of the veth.
    public var interfaceName: String
    /// The pod's addresses, as host routes (/32, /128).
    public var addresses: [IPAddress]
    public var mtu: Int
    /// Chosen before the interface exists, so the WorkloadEndpoint can be written first.
    public var podMAC: MACAddress

    public init(
        hostInterface: String, namespacePath: String, interfaceName: String, addresses: [IPAddress], mtu: Int,
        podMAC: MACAddress
    ) {
        self.hostInterface = hostInterface
        self.namespacePath = namespacePath
        self.interfaceName = interfaceName
        self.addresses = addresses
        self.mtu = mtu
        self.podMAC = podMAC
    }
}

/// The kernel side of the plugin, behind a protocol so the plugin's bookkeeping (IPAM, endpoints,
/// failure paths) is tested with a fake and the kernel part with real namespaces.
///
/// Calls block (namespace work runs on dedicated threads); a CNI invocation is one short process,
/// so blocking its caller is fine.
public protocol PodDatapath: Sendable {
    /// Creates the veth pair, addresses, routes and sysctls. A stale host interface of the same
    /// name (a killed earlier ADD) is replaced. On failure nothing it made is left behind.
    func attach(_ attachment: PodAttachment) throws(DatapathError)
    /// Removes the host interface (and with it the pod side). Idempotent: succeeds when it, or the
    /// namespace, is already gone.
    func detach(hostInterface: String) throws(DatapathError)
    /// What differs from `attachment` in the kernel; empty when everything is in place.
    func verify(_ attachment: PodAttachment) throws(DatapathError) -> [String]
    /// The host interfaces this datapath made (the `cali` veths), for garbage collection.
    func hostInterfaces() throws(DatapathError) -> [String]
}

public enum DatapathError: Error, Sendable, Hashable, CustomStringConvertible {
    /// CNI_IFNAME already exists in the pod's namespace (ADD must not reuse it).
    case interfaceExists(name: String, namespace: String)
    /// CNI_NETNS cannot be opened.
    case namespaceUnavailable(path: String, reason: String)
    /// A kernel request failed; the text names the request and the errno.
    case kernel(String)

    public var description: String {
        switch self {
        case .interfaceExists(let name, let namespace):
            return "interface \(name) already exists in network namespace \(namespace)"
        case .namespaceUnavailable(let path, let reason): return "network namespace \(path) cannot be opened: \(reason)"
        case .kernel(let text): return text
        }
    }
}

/// Calico's names for what the plugin creates.
public enum CalicoNaming {
    /// `cali` + the first 11 hex characters of sha1("<namespace>.<pod>"), as Calico names host
    /// veths, so Calico's tooling and docs apply unchanged. Without a pod name (a runtime that is
    /// not Kubernetes) the container ID stands in for it.
    public static func hostInterface(namespace: String, pod: String) -> String {
        "cali" + String(SHA1.hex(of: Array("\(namespace).\(pod)".utf8)).prefix(11))
    }

    /// Calico's WorkloadEndpoint name: `<node>-<orchestrator>-<workload>-<endpoint>`, each part with
    /// its dashes doubled so the name splits back unambiguously.
    public static func workloadEndpointName(node: String, orchestrator: String, workload: String, endpoint: String)
        -> String
    {
        [node, orchestrator, workload, endpoint].map {
            $0.split(separator: "-", omittingEmptySubsequences: false).joined(separator: "--")
        }
        .joined(separator: "-")
    }

    /// The host side's MAC: Calico uses ee:ee:ee:ee:ee:ee on every host veth (the pod only ever
    /// talks to its gateway, 169.254.1.1, answered by proxy ARP).
    public static let hostMAC = MACAddress("ee:ee:ee:ee:ee:ee")!
    public static let ipv4Gateway = IPAddress("169.254.1.1")!
    /// The IPv6 gateway: the link-local address that belongs to `hostMAC` (EUI-64).
    public static let ipv6Gateway = IPAddress("fe80::ecee:eeff:feee:eeee")!
}
