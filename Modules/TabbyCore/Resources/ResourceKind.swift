/// Every kind Tabby reads, with the names calicoctl and kubectl users type.
public enum ResourceKind: String, CaseIterable, Sendable, Hashable {
    case networkPolicy
    case globalNetworkPolicy
    case tier
    case networkSet
    case globalNetworkSet
    case hostEndpoint
    case workloadEndpoint
    case profile
    case ipPool
    case ipReservation
    case ipamConfiguration
    case bgpConfiguration
    case bgpPeer
    case felixConfiguration
    case node
    case kubernetesNetworkPolicy
    case kubernetesNamespace

    public static let calicoAPIVersion = "projectcalico.org/v3"

    /// The `kind:` field.
    public var name: String {
        switch self {
        case .networkPolicy, .kubernetesNetworkPolicy: return "NetworkPolicy"
        case .globalNetworkPolicy: return "GlobalNetworkPolicy"
        case .tier: return "Tier"
        case .networkSet: return "NetworkSet"
        case .globalNetworkSet: return "GlobalNetworkSet"
        case .hostEndpoint: return "HostEndpoint"
        case .workloadEndpoint: return "WorkloadEndpoint"
        case .profile: return "Profile"
        case .ipPool: return "IPPool"
        case .ipReservation: return "IPReservation"
        case .ipamConfiguration: return "IPAMConfiguration"
        case .bgpConfiguration: return "BGPConfiguration"
        case .bgpPeer: return "BGPPeer"
        case .felixConfiguration: return "FelixConfiguration"
        case .node: return "Node"
        case .kubernetesNamespace: return "Namespace"
        }
    }

    /// The `apiVersion:` field.
    public var apiVersion: String {
        switch self {
        case .kubernetesNetworkPolicy: return "networking.k8s.io/v1"
        case .kubernetesNamespace: return "v1"
        default: return Self.calicoAPIVersion
        }
    }

    public var isNamespaced: Bool {
        switch self {
        case .networkPolicy, .networkSet, .workloadEndpoint, .kubernetesNetworkPolicy: return true
        default: return false
        }
    }

    /// Lower-case plural, as in `calicoctl get networkpolicies`.
    public var plural: String {
        switch self {
        case .kubernetesNetworkPolicy: return "k8snetworkpolicies"
        case .kubernetesNamespace: return "namespaces"
        case .ipamConfiguration: return "ipamconfigurations"
        default:
            let lower = name.lowercased()
            return lower.hasSuffix("y") ? lower.dropLast() + "ies" : lower + "s"
        }
    }

    /// Short names accepted on the command line (calicoctl's, plus the kind and plural).
    public var aliases: [String] {
        let short: [String]
        switch self {
        case .networkPolicy: short = ["policy", "policies", "netpol", "np", "networkpolicies"]
        case .globalNetworkPolicy: short = ["gnp", "globalpolicy", "globalpolicies", "globalnetworkpolicies"]
        case .networkSet: short = ["netset", "netsets"]
        case .globalNetworkSet: short = ["gns", "globalnetset", "globalnetsets"]
        case .hostEndpoint: short = ["hep", "heps"]
        case .workloadEndpoint: short = ["wep", "weps"]
        case .profile: short = ["pro", "pros"]
        case .ipPool: short = ["ippool", "pool", "pools"]
        case .ipReservation: short = ["ipres"]
        case .ipamConfiguration: short = ["ipamconfig", "ipamconfigs"]
        case .bgpConfiguration: short = ["bgpconfig", "bgpconfigs"]
        case .bgpPeer: short = ["bgppeers"]
        case .felixConfiguration: short = ["felixconfig", "felixconfigs"]
        case .node: short = ["nodes", "no"]
        case .tier: short = ["tiers"]
        case .kubernetesNetworkPolicy: short = ["k8snetworkpolicy", "knp"]
        case .kubernetesNamespace: short = ["namespace", "ns"]
        }
        return [name.lowercased(), plural] + short
    }

    /// The Swift type that decodes this kind.
    public var resourceType: any ResourceObject.Type {
        switch self {
        case .networkPolicy: return NetworkPolicy.self
        case .globalNetworkPolicy: return GlobalNetworkPolicy.self
        case .tier: return Tier.self
        case .networkSet: return NetworkSet.self
        case .globalNetworkSet: return GlobalNetworkSet.self
        case .hostEndpoint: return HostEndpoint.self
        case .workloadEndpoint: return WorkloadEndpoint.self
        case .profile: return Profile.self
        case .ipPool: return IPPool.self
        case .ipReservation: return IPReservation.self
        case .ipamConfiguration: return IPAMConfiguration.self
        case .bgpConfiguration: return BGPConfiguration.self
        case .bgpPeer: return BGPPeer.self
        case .felixConfiguration: return FelixConfiguration.self
        case .node: return Node.self
        case .kubernetesNetworkPolicy: return KubernetesNetworkPolicy.self
        case .kubernetesNamespace: return KubernetesNamespace.self
        }
    }

    /// The kind a manifest names, by `apiVersion` and `kind`.
    public static func lookup(apiVersion: String, kind: String) -> ResourceKind? {
        allCases.first { $0.apiVersion == apiVersion && $0.name == kind }
    }

    /// The kind a command line names (`networkpolicy`, `gnp`, `IPPool`, ...), case-insensitively.
    public static func lookup(commandLineName: String) -> ResourceKind? {
        let wanted = commandLineName.lowercased()
        return allCases.first { $0.aliases.contains(wanted) }
    }
}
