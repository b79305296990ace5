import TabbyCore
import TabbyPolicy

/// A dataplane backend: what the agent drives (nftables, iptables, eBPF; one is chosen with
/// `tabbyd --dataplane` among those compiled in through package traits).
///
/// The contract (docs/dataplanes.md):
/// - `apply` takes the policy engine's delta and the IR it leads to, and changes the kernel in
///   one atomic step: a packet meets either the old policy or the new one, never a mix. IP set
///   member changes touch only those elements.
/// - `reconcile` reads the kernel's state back, compares it with `ir`, and repairs any drift
///   (someone flushed a chain, a restart found old state).
/// - `sweep` removes everything Tabby-owned that `ir` does not want, including what another
///   backend left behind (switching dataplanes must not leave two sets of rules).
/// - Everything a backend creates is recognisably Tabby's (table or chain names, comments), and
///   nothing else is ever touched.
public protocol Dataplane: Sendable {
    /// `nftables`, `iptables`, `ebpf`.
    var name: String { get }
    func apply(_ delta: PolicyDelta, resulting ir: PolicyIR) throws(DataplaneError)
    /// Returns what was repaired (empty when the kernel matched).
    func reconcile(_ ir: PolicyIR) throws(DataplaneError) -> [String]
    func sweep(keeping ir: PolicyIR) throws(DataplaneError)
    func status() -> DataplaneStatus
    /// IP pools' `natOutgoing`: traffic from these pools to anywhere outside every pool leaves
    /// with the node's address. Set before the first apply or reconcile (tabbyd does), so a
    /// restarted agent finds the kernel already as wanted.
    func setOutgoingNAT(_ nat: OutgoingNAT) throws(DataplaneError)
    /// The cluster's other nodes' overlay traffic to let through ahead of host endpoint policy
    /// (Calico allows VXLAN from known hosts before it). Set before the first apply (tabbyd does,
    /// and again whenever a Node changes).
    func setOverlayPeers(_ peers: OverlayPeers) throws(DataplaneError)
}

extension Dataplane {
    /// A backend that programs no host endpoint has no host endpoint policy to let overlay traffic
    /// past.
    public func setOverlayPeers(_ peers: OverlayPeers) throws(DataplaneError) {}
}

/// The other nodes' underlay addresses and the VXLAN port they send to: UDP from one of them to
/// that port, and from this host to one of them at that port, passes ahead of host endpoint policy.
public struct OverlayPeers: Sendable, Hashable {
    public var addresses: Set<IPAddress>
    /// FelixConfiguration's vxlanPort (Calico's 4789).
    public var vxlanPort: UInt16

    public init(addresses: Set<IPAddress> = [], vxlanPort: UInt16 = 4789) {
        self.addresses = addresses
        self.vxlanPort = vxlanPort
    }

    public static let none = OverlayPeers()
}

/// Which pools masquerade traffic that leaves the pods' address space.
public struct OutgoingNAT: Sendable, Hashable {
    /// Pools with `natOutgoing: true`.
    public var natPools: [CIDR]
    /// Every enabled pool (destinations inside any of them are not NATed).
    public var allPools: [CIDR]

    public init(natPools: [CIDR] = [], allPools: [CIDR] = []) {
        self.natPools = natPools
        self.allPools = allPools
    }

    public static let none = OutgoingNAT()
}

/// Programs `natOutgoing` for a dataplane that leaves it to another kernel facility (the eBPF
/// backend hands it to netfilter's masquerade: `NftOutgoingNAT`).
public protocol OutgoingNATProgrammer: Sendable {
    func set(_ nat: OutgoingNAT) throws(DataplaneError)
}

/// Settings every backend honours.
public struct DataplaneConfiguration: Sendable, Hashable {
    /// Host interfaces of workloads start with this (Calico's `cali`).
    public var workloadInterfacePrefix: String
    /// Inbound to the host, always open (Calico's failsafeInboundHostPorts): protocol and port.
    public var failsafeInbound: [FailsafePort]
    /// Outbound from the host, always open (failsafeOutboundHostPorts).
    public var failsafeOutbound: [FailsafePort]
    /// What happens to traffic from a workload to its own host after the workload's egress
    /// policy allowed it (Felix's DefaultEndpointToHostAction; Calico's default is Drop).
    public var endpointToHostAction: EndpointToHostAction = .drop

    public enum EndpointToHostAction: String, Sendable, Hashable {
        case drop = "Drop"
        case accept = "Accept"
        /// Go on to the host's own rules.
        case `return` = "Return"
    }

    public struct FailsafePort: Sendable, Hashable {
        public var protocolNumber: Int
        public var port: UInt16
        public init(protocolNumber: Int, port: UInt16) {
            self.protocolNumber = protocolNumber
            self.port = port
        }
    }

    /// Calico's defaults: SSH, BGP, etcd, the Kubernetes API and Typha; DHCP and DNS outbound.
    public static let calicoDefaults = DataplaneConfiguration(
        workloadInterfacePrefix: "cali",
        failsafeInbound: [
            (6, 22), (17, 68), (6, 179), (6, 2379), (6, 2380), (6, 5473), (6, 6443), (6, 6666), (6, 6667),
        ]
        .map { FailsafePort(protocolNumber: $0.0, port: $0.1) },
        failsafeOutbound: [(17, 53), (17, 67), (6, 53), (6, 179), (6, 2379), (6, 2380), (6, 5473), (6, 6443)]
            .map { FailsafePort(protocolNumber: $0.0, port: $0.1) })

    public init(workloadInterfacePrefix: String, failsafeInbound: [FailsafePort], failsafeOutbound: [FailsafePort]) {
        self.workloadInterfacePrefix = workloadInterfacePrefix
        self.failsafeInbound = failsafeInbound
        self.failsafeOutbound = failsafeOutbound
    }
}

public struct DataplaneStatus: Sendable, Hashable {
    public var healthy: Bool
    public var detail: String
    /// Applies done, and the time the last one took.
    public var applies: Int
    public var lastApplySeconds: Double?
    /// Packets the dataplane decided on since its maps were made, by reason in snake case
    /// (`policy_deny`, `conntrack_hit`, `unknown_interface`, ...): "why was this packet dropped?" in
    /// numbers. Empty for backends that leave counting to the kernel's rule counters.
    public var packets: [String: UInt64]
    /// Connections in the dataplane's own connection tracking (eBPF), at its last scan; nil where
    /// the kernel's conntrack does it.
    public var trackedFlows: Int?

    public init(
        healthy: Bool, detail: String, applies: Int = 0, lastApplySeconds: Double? = nil,
        packets: [String: UInt64] = [:], trackedFlows: Int? = nil
    ) {
        self.healthy = healthy
        self.detail = detail
        self.applies = applies
        self.lastApplySeconds = lastApplySeconds
        self.packets = packets
        self.trackedFlows = trackedFlows
    }
}

public enum DataplaneError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kernel refused a change; nothing of that apply took effect.
    case kernel(String)
    /// The IR asks for something this backend cannot express (named, with what to do).
    case unsupported(String)

    public var description: String {
        switch self {
        case .kernel(let text): return text
        case .unsupported(let text): return "unsupported: \(text)"
        }
    }
}
