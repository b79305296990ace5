import TabbyCore

// The dataplane-neutral program: what every backend (nftables, iptables, eBPF, the reference
// evaluator) renders. Policies and profiles are compiled once and shared by the endpoints they
// apply to; selectors become IP set references so a relabelled pod changes set members, not rules.

/// A namespaced (or, with `namespace == nil`, cluster-wide) resource's name.
public struct ResourceName: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var namespace: String?
    public var name: String

    public init(namespace: String?, name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// `ns/name`, or `name` for a cluster-wide resource.
    public var description: String { namespace.map { "\($0)/\(name)" } ?? name }

    public static func < (lhs: ResourceName, rhs: ResourceName) -> Bool { lhs.description < rhs.description }
}

/// An endpoint under policy: a workload endpoint by namespace and WorkloadEndpoint name, or a
/// host endpoint as `hep/<name>` (no namespace, so it never collides with a workload endpoint).
public typealias EndpointKey = ResourceName

extension ResourceName {
    /// The key of host endpoint `name`: `hep/<name>`.
    public static func hostEndpoint(_ name: String) -> EndpointKey { EndpointKey(namespace: nil, name: "hep/" + name) }

    /// The HostEndpoint name if this is a host endpoint's key.
    public var hostEndpointName: String? {
        guard namespace == nil, name.hasPrefix("hep/") else { return nil }
        return String(name.dropFirst(4))
    }
}

/// A compiled policy: `ns/name` for a NetworkPolicy (Kubernetes ones as `ns/knp.default.name`),
/// `name` for a GlobalNetworkPolicy. Policies in a tier with equal order sort by this text.
public typealias PolicyID = ResourceName

/// An IP set's identity, derived from its canonical definition so every node and every restart
/// names the same set the same way: `s:` + 16 hex digits for a selector's set, `p:` for a
/// named-port set.
public struct IPSetID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }

    public static func < (lhs: IPSetID, rhs: IPSetID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What an IP set holds: the endpoints and network sets a selector matches, or (a named-port
/// set) the (address, protocol, port) of every matching endpoint's port of that name.
public struct IPSetDefinition: Hashable, Sendable, CustomStringConvertible {
    public struct NamedPort: Hashable, Sendable {
        public var name: String
        public var protocolNumber: Int

        public init(name: String, protocolNumber: Int) {
            self.name = name
            self.protocolNumber = protocolNumber
        }
    }

    public var selector: Selector
    public var namedPort: NamedPort?

    public init(selector: Selector, namedPort: NamedPort? = nil) {
        self.selector = selector
        self.namedPort = namedPort
    }

    /// The canonical text the ID is derived from.
    public var description: String {
        guard let namedPort else { return selector.canonical }
        return "\(selector.canonical) port \(namedPort.name)/\(namedPort.protocolNumber)"
    }

    public var id: IPSetID {
        IPSetID(rawValue: (namedPort == nil ? "s:" : "p:") + stableHash(description))
    }
}

/// FNV-1a, 64-bit: stable across processes and platforms (unlike `Hasher`).
private func stableHash(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    let digits = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// One member of an IP set.
public enum IPSetMember: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// An endpoint's address (as a /32 or /128) or a network set's net.
    case net(CIDR)
    /// An endpoint's named port.
    case addressPort(IPAddress, protocolNumber: Int, port: UInt16)

    public var description: String {
        switch self {
        case .net(let cidr): return cidr.description
        case .addressPort(let address, let proto, let port): return "\(address),\(proto):\(port)"
        }
    }

    public static func < (lhs: IPSetMember, rhs: IPSetMember) -> Bool {
        switch (lhs, rhs) {
        case (.net(let left), .net(let right)): return left < right
        case (.net, .addressPort): return true
        case (.addressPort, .net): return false
        case (.addressPort(let la, let lp, let lport), .addressPort(let ra, let rp, let rport)):
            return (la, lp, lport) < (ra, rp, rport)
        }
    }
}

public struct IPSet: Hashable, Sendable {
    public var id: IPSetID
    public var definition: IPSetDefinition
    public var members: Set<IPSetMember>

    public init(definition: IPSetDefinition, members: Set<IPSetMember> = []) {
        self.id = definition.id
        self.definition = definition
        self.members = members
    }

    /// Whether `address` is in a net of the set.
    public func contains(_ address: IPAddress) -> Bool {
        members.contains { member in
            if case .net(let cidr) = member { return cidr.contains(address) }
            return false
        }
    }

    public func contains(_ address: IPAddress, protocolNumber: Int, port: UInt16) -> Bool {
        members.contains(.addressPort(address, protocolNumber: protocolNumber, port: port))
    }
}

/// An inclusive port range (a single port has `lower == upper`).
public struct PortRange: Hashable, Sendable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16

    public init(_ lower: UInt16, _ upper: UInt16) {
        self.lower = lower
        self.upper = upper
    }

    public func contains(_ port: UInt16) -> Bool { lower <= port && port <= upper }

    public var description: String { lower == upper ? "\(lower)" : "\(lower):\(upper)" }
}

/// A rule's source or destination, with selectors resolved to IP sets.
public struct CompiledEntityMatch: Hashable, Sendable {
    /// The address must be in one of these (when not empty).
    public var nets: [CIDR] = []
    /// The address must be in none of these.
    public var notNets: [CIDR] = []
    /// The address must be in every one of these sets (the scoped selector).
    public var ipSets: [IPSetID] = []
    /// The address must be in none of these sets (the notSelector).
    public var notIPSets: [IPSetID] = []
    /// The port must be in one of `ports`, or (address, protocol, port) in one of
    /// `namedPortSets`, when either is not empty.
    public var ports: [PortRange] = []
    public var namedPortSets: [IPSetID] = []
    /// The port must be in none of `notPorts` and (address, protocol, port) in none of
    /// `notNamedPortSets`.
    public var notPorts: [PortRange] = []
    public var notNamedPortSets: [IPSetID] = []

    public init() {}

    public var hasPortMatch: Bool { !ports.isEmpty || !namedPortSets.isEmpty }
    public var hasNotPortMatch: Bool { !notPorts.isEmpty || !notNamedPortSets.isEmpty }

    /// Every IP set the match names.
    public var referencedSets: [IPSetID] { ipSets + notIPSets + namedPortSets + notNamedPortSets }
}

public struct CompiledRule: Hashable, Sendable {
    public var action: RuleAction
    public var ipVersion: Int?
    /// Protocol numbers.
    public var protocolNumber: Int?
    public var notProtocolNumber: Int?
    public var icmp: ICMPMatch?
    public var notICMP: ICMPMatch?
    public var source = CompiledEntityMatch()
    public var destination = CompiledEntityMatch()

    public init(action: RuleAction) { self.action = action }
}

/// A policy's rules, shared by every endpoint it selects.
public struct PolicyProgram: Hashable, Sendable {
    public var id: PolicyID
    public var tier: String
    public var order: Double?
    public var ingress: [CompiledRule]
    public var egress: [CompiledRule]

    public func rules(_ direction: Direction) -> [CompiledRule] { direction == .ingress ? ingress : egress }
}

/// A profile's rules (for `kns.<ns>`, allow all).
public struct ProfileProgram: Hashable, Sendable {
    public var name: String
    public var ingress: [CompiledRule]
    public var egress: [CompiledRule]

    public func rules(_ direction: Direction) -> [CompiledRule] { direction == .ingress ? ingress : egress }
}

public enum Direction: String, Hashable, Sendable, CaseIterable {
    case ingress = "Ingress"
    case egress = "Egress"
}

/// One tier as it applies to one endpoint and direction: only tiers with at least one policy
/// selecting the endpoint for the direction appear.
public struct TierBinding: Hashable, Sendable {
    public var name: String
    public var order: Double?
    public var defaultAction: TierSpec.DefaultAction
    /// Policies selecting the endpoint, in evaluation order.
    public var policies: [PolicyID]
}

/// Whether an endpoint is a pod's interface or a host's.
public enum EndpointKind: String, Hashable, Sendable {
    case workload
    case host
}

/// What applies to one workload or host endpoint: tiers in order per direction, then profiles.
public struct EndpointProgram: Hashable, Sendable {
    public var endpoint: EndpointKey
    /// A host endpoint's program polices traffic to and from the host through its interface
    /// (ingress: to the host), not traffic to a pod: a backend attaches it to the host's input
    /// and output paths, never as a workload interface.
    public var kind: EndpointKind = .workload
    /// A workload's addresses, or a host endpoint's `expectedIPs`.
    public var addresses: [IPAddress]
    /// The host side of a workload's interface (`cali…`), or a host endpoint's `interfaceName`
    /// (`*`: every host interface): where a dataplane attaches the program.
    public var interfaceName: String?
    public var ingress: [TierBinding]
    public var egress: [TierBinding]
    /// `kns.<namespace>` then the endpoint's own `profiles`, without repeats.
    public var profiles: [String]

    public func tiers(_ direction: Direction) -> [TierBinding] { direction == .ingress ? ingress : egress }
}

/// The whole compiled state: active policies and profiles (those some endpoint uses), the IP
/// sets they reference, and every endpoint's program.
public struct PolicyIR: Hashable, Sendable {
    public var ipSets: [IPSetID: IPSet] = [:]
    public var policies: [PolicyID: PolicyProgram] = [:]
    public var profiles: [String: ProfileProgram] = [:]
    public var endpoints: [EndpointKey: EndpointProgram] = [:]

    public init() {}

    /// The endpoint owning `address`, if any.
    public func endpoint(owning address: IPAddress) -> EndpointKey? {
        endpoints.values.first { $0.addresses.contains(address) }?.endpoint
    }
}

/// The change from one IR to the next, in the order a dataplane applies it: create sets and add
/// members, then (re)write programs and bindings, then remove members and sets.
public struct PolicyDelta: Hashable, Sendable {
    public var ipSetsCreated: [IPSet] = []
    public var ipSetMembersAdded: [IPSetID: Set<IPSetMember>] = [:]
    public var ipSetMembersRemoved: [IPSetID: Set<IPSetMember>] = [:]
    public var ipSetsRemoved: [IPSetID] = []
    public var policiesAdded: [PolicyProgram] = []
    public var policiesReplaced: [PolicyProgram] = []
    public var policiesRemoved: [PolicyID] = []
    public var profilesAdded: [ProfileProgram] = []
    public var profilesReplaced: [ProfileProgram] = []
    public var profilesRemoved: [String] = []
    /// Endpoints whose program is new or changed.
    public var endpointsBound: [EndpointProgram] = []
    public var endpointsRemoved: [EndpointKey] = []

    public init() {}

    public var isEmpty: Bool { self == PolicyDelta() }

    /// The delta from `old` to `new`, comparing per set, policy, profile and endpoint.
    public static func between(_ old: PolicyIR, _ new: PolicyIR) -> PolicyDelta {
        var delta = PolicyDelta()
        for (id, set) in new.ipSets.sorted(by: { $0.key < $1.key }) {
            guard let before = old.ipSets[id] else {
                delta.ipSetsCreated.append(set)
                continue
            }
            let added = set.members.subtracting(before.members)
            let removed = before.members.subtracting(set.members)
            if !added.isEmpty { delta.ipSetMembersAdded[id] = added }
            if !removed.isEmpty { delta.ipSetMembersRemoved[id] = removed }
        }
        delta.ipSetsRemoved = old.ipSets.keys.filter { new.ipSets[$0] == nil }.sorted()
        for (id, program) in new.policies.sorted(by: { $0.key < $1.key }) {
            if let before = old.policies[id] {
                if before != program { delta.policiesReplaced.append(program) }
            } else {
                delta.policiesAdded.append(program)
            }
        }
        delta.policiesRemoved = old.policies.keys.filter { new.policies[$0] == nil }.sorted()
        for (name, program) in new.profiles.sorted(by: { $0.key < $1.key }) {
            if let before = old.profiles[name] {
                if before != program { delta.profilesReplaced.append(program) }
            } else {
                delta.profilesAdded.append(program)
            }
        }
        delta.profilesRemoved = old.profiles.keys.filter { new.profiles[$0] == nil }.sorted()
        for (key, program) in new.endpoints.sorted(by: { $0.key < $1.key }) where old.endpoints[key] != program {
            delta.endpointsBound.append(program)
        }
        delta.endpointsRemoved = old.endpoints.keys.filter { new.endpoints[$0] == nil }.sorted()
        return delta
    }
}
