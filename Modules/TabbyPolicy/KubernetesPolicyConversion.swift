import TabbyCore

/// Converts networking.k8s.io/v1 NetworkPolicy to the Calico NetworkPolicy that Calico's
/// Kubernetes backend presents (libcalico-go `K8sNetworkPolicyToCalico`): tier `default`,
/// order 1000, name `knp.default.<name>`, selectors limited to Kubernetes pods.
public enum KubernetesPolicyConversion {
    /// What Calico puts in front of every pod selector, so a Kubernetes policy never selects a
    /// non-Kubernetes endpoint.
    public static let orchestratorSelector = "projectcalico.org/orchestrator == 'k8s'"

    /// Calico's order for every converted Kubernetes policy.
    public static let order = 1000.0

    /// The Calico name of Kubernetes policy `name`.
    public static func calicoName(_ name: String) -> String { namePrefix + name }

    /// What `calicoName` puts in front of a Kubernetes policy's name.
    public static let namePrefix = "knp.default."

    /// The Calico policy for `policy` (defaults applied first: TCP ports, policyTypes).
    public static func convert(_ policy: KubernetesNetworkPolicy) -> NetworkPolicy {
        var policy = policy
        policy.applyDefaults()
        let source = policy.spec
        var spec = NetworkPolicySpec()
        spec.tier = "default"
        spec.order = order
        spec.selector = selectorText(source.podSelector, forPods: true)
        spec.types = source.policyTypes
        let types = source.policyTypes ?? [.ingress]
        if types.contains(.ingress) {
            spec.ingress = (source.ingress ?? []).flatMap { rules(peers: $0.from, ports: $0.ports, ingress: true) }
        }
        if types.contains(.egress) {
            spec.egress = (source.egress ?? []).flatMap { rules(peers: $0.to, ports: $0.ports, ingress: false) }
        }
        let metadata = ObjectMeta(name: calicoName(policy.metadata.name), namespace: policy.metadata.namespace)
        return NetworkPolicy(metadata: metadata, spec: spec)
    }

    /// Calico's text for a Kubernetes label selector: `k == 'v'` for each matchLabel (sorted by
    /// key), then `k in { 'a', 'b' }`, `k not in { ... }`, `has(k)`, `! has(k)`, joined by `&&`.
    /// Pod selectors start with `orchestratorSelector`; an empty namespace selector is `all()`.
    public static func selectorText(_ selector: LabelSelector, forPods: Bool) -> String {
        var parts: [String] = forPods ? [orchestratorSelector] : []
        for (key, value) in (selector.matchLabels ?? [:]).sorted(by: { $0.key < $1.key }) {
            parts.append("\(key) == '\(value)'")
        }
        for requirement in selector.matchExpressions ?? [] {
            let values = (requirement.values ?? []).map { "'\($0)'" }.joined(separator: ", ")
            switch requirement.operator {
            case .in: parts.append("\(requirement.key) in { \(values) }")
            case .notIn: parts.append("\(requirement.key) not in { \(values) }")
            case .exists: parts.append("has(\(requirement.key))")
            case .doesNotExist: parts.append("! has(\(requirement.key))")
            }
        }
        return parts.isEmpty ? "all()" : parts.joined(separator: " && ")
    }

    /// One Calico rule per (port group, peer): Calico splits ports by protocol, and numeric from
    /// named ports, because one Calico rule has one protocol. An absent or empty peer list means
    /// every peer; an absent or empty port list means every protocol and port.
    private static func rules(
        peers: [KubernetesNetworkPolicySpec.Peer]?,
        ports: [KubernetesNetworkPolicySpec.PortMatch]?,
        ingress: Bool
    ) -> [Rule] {
        let peerEntities: [EntityRule?] = (peers ?? []).isEmpty ? [nil] : peers!.map(entity(for:))
        var result: [Rule] = []
        for group in portGroups(ports) {
            for peer in peerEntities {
                var rule = Rule(action: .allow, protocol: group.protocol)
                var portEntity = EntityRule()
                if !group.ports.isEmpty { portEntity.ports = group.ports }
                if ingress {
                    rule.source = peer
                    rule.destination = group.ports.isEmpty ? nil : portEntity
                } else {
                    var destination = peer ?? EntityRule()
                    destination.ports = group.ports.isEmpty ? nil : group.ports
                    rule.destination = destination == EntityRule() ? nil : destination
                }
                result.append(rule)
            }
        }
        return result
    }

    private struct PortGroup {
        var `protocol`: IPProtocol?
        var ports: [Port]
    }

    private static func portGroups(_ ports: [KubernetesNetworkPolicySpec.PortMatch]?) -> [PortGroup] {
        guard let ports, !ports.isEmpty else { return [PortGroup(protocol: nil, ports: [])] }
        var protocols: [String] = []
        for match in ports where !protocols.contains(match.protocol ?? "TCP") {
            protocols.append(match.protocol ?? "TCP")
        }
        var groups: [PortGroup] = []
        for name in protocols {
            let matches = ports.filter { ($0.protocol ?? "TCP") == name }
            let proto = IPProtocol.name(name)
            // A protocol-only entry matches every port, subsuming the others of its protocol.
            if matches.contains(where: { $0.port == nil }) {
                groups.append(PortGroup(protocol: proto, ports: []))
                continue
            }
            var numeric: [Port] = []
            var named: [Port] = []
            for match in matches {
                switch match.port {
                case .number(let number):
                    if let end = match.endPort, end > Int(number), let upper = UInt16(exactly: end) {
                        numeric.append(.range(number, upper))
                    } else {
                        numeric.append(.number(number))
                    }
                case .range(let low, let high): numeric.append(.range(low, high))
                case .named(let name): named.append(.named(name))
                case nil: break
                }
            }
            if !numeric.isEmpty { groups.append(PortGroup(protocol: proto, ports: numeric)) }
            if !named.isEmpty { groups.append(PortGroup(protocol: proto, ports: named)) }
        }
        return groups
    }

    private static func entity(for peer: KubernetesNetworkPolicySpec.Peer) -> EntityRule {
        var entity = EntityRule()
        if let block = peer.ipBlock {
            entity.nets = [block.cidr]
            if let except = block.except, !except.isEmpty { entity.notNets = except }
            return entity
        }
        if let pods = peer.podSelector { entity.selector = selectorText(pods, forPods: true) }
        if let namespaces = peer.namespaceSelector {
            entity.namespaceSelector = selectorText(namespaces, forPods: false)
        }
        return entity
    }
}
