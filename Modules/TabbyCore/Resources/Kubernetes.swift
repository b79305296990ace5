/// A Kubernetes label selector (`matchLabels` and `matchExpressions`, ANDed).
public struct LabelSelector: Codable, Hashable, Sendable {
    public struct Requirement: Codable, Hashable, Sendable {
        public enum Operator: String, StringEnumeration {
            case `in` = "In"
            case notIn = "NotIn"
            case exists = "Exists"
            case doesNotExist = "DoesNotExist"
        }
        public var key: String
        public var `operator`: Operator
        public var values: [String]?
    }

    public var matchLabels: [String: String]?
    public var matchExpressions: [Requirement]?

    public init(matchLabels: [String: String]? = nil, matchExpressions: [Requirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// True for `{}`, which selects everything.
    public var isEmpty: Bool { (matchLabels ?? [:]).isEmpty && (matchExpressions ?? []).isEmpty }
}

extension Validator {
    mutating func validateLabelSelector(_ selector: LabelSelector?, key: String) {
        guard let selector else { return }
        at(key) { validator in
            validator.validateLabels(selector.matchLabels, key: "matchLabels")
            validator.each("matchExpressions", selector.matchExpressions) { validator, requirement in
                if let problem = LabelRules.problem(withKey: requirement.key) {
                    validator.fail("key", "invalid label key: \(problem)")
                }
                let values = requirement.values ?? []
                switch requirement.operator {
                case .in, .notIn:
                    if values.isEmpty {
                        validator.fail("values", "must not be empty for operator \(requirement.operator.rawValue)")
                    }
                case .exists, .doesNotExist:
                    if !values.isEmpty {
                        validator.fail("values", "must be empty for operator \(requirement.operator.rawValue)")
                    }
                }
                for value in values {
                    if let problem = LabelRules.problem(withValue: value) {
                        validator.fail("values", "invalid value \"\(value)\": \(problem)")
                    }
                }
            }
        }
    }
}

/// networking.k8s.io/v1 NetworkPolicy.
public struct KubernetesNetworkPolicySpec: ResourceSpec {
    public static var kind: ResourceKind { .kubernetesNetworkPolicy }

    public struct IPBlock: Codable, Hashable, Sendable {
        public var cidr: String
        public var except: [String]?
    }

    public struct Peer: Codable, Hashable, Sendable {
        public var podSelector: LabelSelector?
        public var namespaceSelector: LabelSelector?
        public var ipBlock: IPBlock?
    }

    public struct PortMatch: Codable, Hashable, Sendable {
        public var `protocol`: String?
        /// A number or a named port.
        public var port: Port?
        public var endPort: Int?
    }

    public struct IngressRule: Codable, Hashable, Sendable {
        public var from: [Peer]?
        public var ports: [PortMatch]?
    }

    public struct EgressRule: Codable, Hashable, Sendable {
        public var to: [Peer]?
        public var ports: [PortMatch]?
    }

    public var podSelector: LabelSelector
    public var policyTypes: [PolicyType]?
    public var ingress: [IngressRule]?
    public var egress: [EgressRule]?

    public init() { podSelector = LabelSelector() }

    enum CodingKeys: String, CodingKey { case podSelector, policyTypes, ingress, egress }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        podSelector = try container.decode(LabelSelector.self, forKey: .podSelector)
        policyTypes = try container.decodeIfPresent([PolicyType].self, forKey: .policyTypes)
        ingress = try container.decodeIfPresent([IngressRule].self, forKey: .ingress)
        egress = try container.decodeIfPresent([EgressRule].self, forKey: .egress)
    }

    /// Kubernetes' defaults: TCP for ports; policyTypes Ingress, plus Egress when there are egress rules.
    public mutating func applyDefaults(metadata: ObjectMeta) {
        if policyTypes == nil || policyTypes == [] {
            policyTypes = (egress ?? []).isEmpty ? [.ingress] : [.ingress, .egress]
        }
        func defaulted(_ ports: [PortMatch]?) -> [PortMatch]? {
            ports?.map { port in
                var port = port
                if port.protocol == nil { port.protocol = "TCP" }
                return port
            }
        }
        ingress = ingress?.map { IngressRule(from: $0.from, ports: defaulted($0.ports)) }
        egress = egress?.map { EgressRule(to: $0.to, ports: defaulted($0.ports)) }
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validator.validateLabelSelector(podSelector, key: "podSelector")
        if let types = policyTypes, Set(types).count != types.count {
            validator.fail("policyTypes", "lists a type twice")
        }
        validator.each("ingress", ingress) { validator, rule in
            validator.validatePeers(rule.from, key: "from")
            validator.validatePortMatches(rule.ports)
        }
        validator.each("egress", egress) { validator, rule in
            validator.validatePeers(rule.to, key: "to")
            validator.validatePortMatches(rule.ports)
        }
    }
}

extension Validator {
    fileprivate mutating func validatePeers(_ peers: [KubernetesNetworkPolicySpec.Peer]?, key: String) {
        each(key, peers) { validator, peer in
            if let block = peer.ipBlock {
                if peer.podSelector != nil || peer.namespaceSelector != nil {
                    validator.fail(
                        "ipBlock", "ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
                }
                validator.at("ipBlock") { validator in
                    guard let network = validator.validateCIDR(block.cidr, key: "cidr") else { return }
                    validator.each("except", block.except) { validator, text in
                        guard let excluded = validator.validateCIDR(text) else { return }
                        if !network.contains(excluded) || excluded == network {
                            validator.fail("\(text) must be strictly inside the ipBlock cidr \(network)")
                        }
                    }
                }
            } else if peer.podSelector == nil && peer.namespaceSelector == nil {
                validator.fail("a peer needs podSelector, namespaceSelector or ipBlock")
            }
            validator.validateLabelSelector(peer.podSelector, key: "podSelector")
            validator.validateLabelSelector(peer.namespaceSelector, key: "namespaceSelector")
        }
    }

    fileprivate mutating func validatePortMatches(_ ports: [KubernetesNetworkPolicySpec.PortMatch]?) {
        each("ports", ports) { validator, match in
            if let proto = match.protocol, !["TCP", "UDP", "SCTP"].contains(proto) {
                validator.fail("protocol", "must be TCP, UDP or SCTP (got \"\(proto)\")")
            }
            switch match.port {
            case .named(let name):
                if let problem = Port.problem(withName: name) { validator.fail("port", problem) }
                if match.endPort != nil { validator.fail("endPort", "endPort needs a numeric port") }
            case .range:
                validator.fail("port", "Kubernetes ports are a number or a name; use endPort for a range")
            case .number(let number):
                if number == 0 { validator.fail("port", "must be 1-65535") }
                if let end = match.endPort, end < Int(number) || end > 65535 {
                    validator.fail("endPort", "must be between port (\(number)) and 65535 (got \(end))")
                }
            case nil:
                if match.endPort != nil { validator.fail("endPort", "endPort needs a port") }
            }
        }
    }
}

public typealias KubernetesNetworkPolicy = Resource<KubernetesNetworkPolicySpec>

/// A Kubernetes namespace. Its labels become the labels of profile `kns.<name>`.
public struct KubernetesNamespaceSpec: ResourceSpec {
    public static var kind: ResourceKind { .kubernetesNamespace }
    public var finalizers: [String]?
    public init() {}
    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {}
}

public typealias KubernetesNamespace = Resource<KubernetesNamespaceSpec>

extension Resource where Spec == KubernetesNamespaceSpec {
    /// The label Kubernetes puts on every namespace.
    public static let nameLabel = "kubernetes.io/metadata.name"

    /// The namespace's labels as endpoints in it see them: its own, plus
    /// `kubernetes.io/metadata.name`.
    public var effectiveLabels: [String: String] {
        var labels = metadata.labels ?? [:]
        labels[Self.nameLabel] = metadata.name
        return labels
    }

    /// Calico's profile for the namespace: `kns.<name>`, allowing everything (an unselected pod
    /// is open), applying the namespace's labels to its endpoints as `pcns.<key>`.
    public var profile: Profile {
        var labelsToApply: [String: String] = ["pcns.projectcalico.org/name": metadata.name]
        for (key, value) in effectiveLabels { labelsToApply["pcns.\(key)"] = value }
        var spec = ProfileSpec()
        spec.ingress = [Rule(action: .allow)]
        spec.egress = [Rule(action: .allow)]
        spec.labelsToApply = labelsToApply
        return Profile(metadata: ObjectMeta(name: "kns.\(metadata.name)"), spec: spec)
    }
}
