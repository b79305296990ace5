import TabbyCore

/// A resource the policy engine reads.
public enum PolicyResource: Hashable, Sendable {
    case networkPolicy(NetworkPolicy)
    case globalNetworkPolicy(GlobalNetworkPolicy)
    case kubernetesNetworkPolicy(KubernetesNetworkPolicy)
    case tier(Tier)
    case profile(Profile)
    case namespace(KubernetesNamespace)
    case networkSet(NetworkSet)
    case globalNetworkSet(GlobalNetworkSet)
    case workloadEndpoint(WorkloadEndpoint)
    case hostEndpoint(HostEndpoint)

    public var key: PolicyResourceKey {
        switch self {
        case .networkPolicy(let value): return PolicyResourceKey(.networkPolicy, value.metadata)
        case .globalNetworkPolicy(let value): return PolicyResourceKey(.globalNetworkPolicy, value.metadata)
        case .kubernetesNetworkPolicy(let value): return PolicyResourceKey(.kubernetesNetworkPolicy, value.metadata)
        case .tier(let value): return PolicyResourceKey(.tier, value.metadata)
        case .profile(let value): return PolicyResourceKey(.profile, value.metadata)
        case .namespace(let value): return PolicyResourceKey(.kubernetesNamespace, value.metadata)
        case .networkSet(let value): return PolicyResourceKey(.networkSet, value.metadata)
        case .globalNetworkSet(let value): return PolicyResourceKey(.globalNetworkSet, value.metadata)
        case .workloadEndpoint(let value): return PolicyResourceKey(.workloadEndpoint, value.metadata)
        case .hostEndpoint(let value): return PolicyResourceKey(.hostEndpoint, value.metadata)
        }
    }
}

/// Which resource an update or delete names.
public struct PolicyResourceKey: Hashable, Sendable, CustomStringConvertible {
    public var kind: ResourceKind
    public var name: ResourceName

    public init(_ kind: ResourceKind, namespace: String? = nil, name: String) {
        self.kind = kind
        // Namespaced kinds default to namespace `default`, as Resource.applyDefaults does.
        let namespace = kind.isNamespaced ? ((namespace ?? "").isEmpty ? "default" : namespace) : nil
        self.name = ResourceName(namespace: namespace, name: name)
    }

    init(_ kind: ResourceKind, _ metadata: ObjectMeta) {
        self.init(kind, namespace: metadata.namespace, name: metadata.name)
    }

    public var description: String { "\(kind.name) \(name)" }
}

/// Everything that decides policy, with defaults applied. Plain data: the engine and the
/// from-scratch compiler both read it.
public struct ClusterState: Hashable, Sendable {
    public var networkPolicies: [ResourceName: NetworkPolicy] = [:]
    public var globalNetworkPolicies: [String: GlobalNetworkPolicy] = [:]
    public var kubernetesNetworkPolicies: [ResourceName: KubernetesNetworkPolicy] = [:]
    public var tiers: [String: Tier] = [:]
    public var profiles: [String: Profile] = [:]
    public var namespaces: [String: KubernetesNamespace] = [:]
    public var networkSets: [ResourceName: NetworkSet] = [:]
    public var globalNetworkSets: [String: GlobalNetworkSet] = [:]
    public var workloadEndpoints: [ResourceName: WorkloadEndpoint] = [:]
    public var hostEndpoints: [String: HostEndpoint] = [:]

    public init() {}

    public init(_ resources: [PolicyResource]) {
        for resource in resources { upsert(resource) }
    }

    /// Adds or replaces `resource` (applying Calico's defaults).
    public mutating func upsert(_ resource: PolicyResource) {
        let key = resource.key.name
        switch resource {
        case .networkPolicy(var value):
            value.applyDefaults()
            networkPolicies[key] = value
        case .globalNetworkPolicy(var value):
            value.applyDefaults()
            globalNetworkPolicies[key.name] = value
        case .kubernetesNetworkPolicy(var value):
            value.applyDefaults()
            kubernetesNetworkPolicies[key] = value
        case .tier(var value):
            value.applyDefaults()
            tiers[key.name] = value
        case .profile(let value): profiles[key.name] = value
        case .namespace(let value): namespaces[key.name] = value
        case .networkSet(var value):
            value.applyDefaults()
            networkSets[key] = value
        case .globalNetworkSet(let value): globalNetworkSets[key.name] = value
        case .workloadEndpoint(var value):
            value.applyDefaults()
            workloadEndpoints[key] = value
        case .hostEndpoint(var value):
            value.applyDefaults()
            hostEndpoints[key.name] = value
        }
    }

    public mutating func delete(_ key: PolicyResourceKey) {
        switch key.kind {
        case .networkPolicy: networkPolicies[key.name] = nil
        case .globalNetworkPolicy: globalNetworkPolicies[key.name.name] = nil
        case .kubernetesNetworkPolicy: kubernetesNetworkPolicies[key.name] = nil
        case .tier: tiers[key.name.name] = nil
        case .profile: profiles[key.name.name] = nil
        case .kubernetesNamespace: namespaces[key.name.name] = nil
        case .networkSet: networkSets[key.name] = nil
        case .globalNetworkSet: globalNetworkSets[key.name.name] = nil
        case .workloadEndpoint: workloadEndpoints[key.name] = nil
        case .hostEndpoint: hostEndpoints[key.name.name] = nil
        default: break
        }
    }

    // MARK: - Derived facts shared by the engine and the from-scratch compiler

    /// A profile by name: `kns.<ns>` from the namespace, else a Profile resource.
    public func profile(named name: String) -> Profile? {
        if name.hasPrefix("kns."), let namespace = namespaces[String(name.dropFirst(4))] {
            return namespace.profile
        }
        return profiles[name]
    }

    /// The label Calico puts on an endpoint with a service account: its name.
    public static let serviceAccountLabelKey = "projectcalico.org/serviceaccount"

    /// The profiles of an endpoint, in order: `kns.<namespace>`, `ksa.<namespace>.<account>`
    /// when it has a service account (as Calico's Kubernetes endpoints do), then its own,
    /// without repeats. Tabby has no ServiceAccount resource: a Profile named
    /// `ksa.<namespace>.<account>` stands for one, its `labelsToApply` (`pcsa.<key>`) being
    /// the labels service-account selectors read.
    public func profileNames(of endpoint: WorkloadEndpoint) -> [String] {
        let namespace = endpoint.metadata.namespace ?? "default"
        var names = ["kns.\(namespace)"]
        if let account = endpoint.spec.serviceAccountName, !account.isEmpty {
            names.append("ksa.\(namespace).\(account)")
        }
        for name in endpoint.spec.profiles ?? [] where !names.contains(name) { names.append(name) }
        return names
    }

    /// An endpoint's labels as selectors see them. Calico (Felix's label inheritance) gives an
    /// endpoint its profiles' `labelsToApply` (so the namespace's labels as `pcns.<key>`, its
    /// service account's as `pcsa.<key>`), its own labels over those, and
    /// `projectcalico.org/namespace`, `projectcalico.org/orchestrator` and, with a service
    /// account, `projectcalico.org/serviceaccount` (Calico writes these on every pod's endpoint).
    public func labels(of endpoint: WorkloadEndpoint) -> [String: String] {
        var labels: [String: String] = [:]
        // Earlier profiles win, as in Felix, where the first parent to define a label wins.
        for name in profileNames(of: endpoint).reversed() {
            for (key, value) in profile(named: name)?.spec.labelsToApply ?? [:] { labels[key] = value }
        }
        for (key, value) in endpoint.metadata.labels ?? [:] { labels[key] = value }
        labels[SelectorExpression.namespaceLabelKey] = endpoint.metadata.namespace ?? "default"
        if let orchestrator = endpoint.spec.orchestrator, !orchestrator.isEmpty {
            labels["projectcalico.org/orchestrator"] = orchestrator
        }
        if let account = endpoint.spec.serviceAccountName, !account.isEmpty {
            labels[Self.serviceAccountLabelKey] = account
        }
        return labels
    }

    /// The profiles of a host endpoint: its own, in order, without repeats.
    public func profileNames(of endpoint: HostEndpoint) -> [String] {
        var names: [String] = []
        for name in endpoint.spec.profiles ?? [] where !names.contains(name) { names.append(name) }
        return names
    }

    /// A host endpoint's labels: its profiles' `labelsToApply` (earlier profiles win), its own
    /// over those. It has no namespace label, so `global()` matches it and namespaced policies
    /// never select it.
    public func labels(of endpoint: HostEndpoint) -> [String: String] {
        var labels: [String: String] = [:]
        for name in profileNames(of: endpoint).reversed() {
            for (key, value) in profile(named: name)?.spec.labelsToApply ?? [:] { labels[key] = value }
        }
        for (key, value) in endpoint.metadata.labels ?? [:] { labels[key] = value }
        return labels
    }

    /// A host endpoint's addresses: its `expectedIPs` (those that parse).
    public static func addresses(of endpoint: HostEndpoint) -> [IPAddress] {
        (endpoint.spec.expectedIPs ?? []).compactMap { IPAddress($0) }
    }

    /// A namespaced network set's labels: its own, `projectcalico.org/namespace`, and its
    /// namespace's `pcns.*` labels (so rule namespaceSelectors reach network sets as well).
    public func labels(of set: NetworkSet) -> [String: String] {
        let namespace = set.metadata.namespace ?? "default"
        var labels = namespaces[namespace]?.profile.spec.labelsToApply ?? [:]
        for (key, value) in set.metadata.labels ?? [:] { labels[key] = value }
        labels[SelectorExpression.namespaceLabelKey] = namespace
        return labels
    }

    /// An endpoint's addresses (the addresses of its `ipNetworks`).
    public static func addresses(of endpoint: WorkloadEndpoint) -> [IPAddress] {
        (endpoint.spec.ipNetworks ?? []).compactMap { CIDR($0)?.network }
    }

    /// Every policy, Kubernetes ones converted, keyed by ID.
    public var allPolicies: [PolicyID: ResolvedPolicy] {
        var result: [PolicyID: ResolvedPolicy] = [:]
        for policy in networkPolicies.values {
            let resolved = ResolvedPolicy(policy)
            result[resolved.id] = resolved
        }
        for policy in kubernetesNetworkPolicies.values {
            let resolved = ResolvedPolicy(KubernetesPolicyConversion.convert(policy))
            result[resolved.id] = resolved
        }
        for policy in globalNetworkPolicies.values {
            let resolved = ResolvedPolicy(policy)
            result[resolved.id] = resolved
        }
        return result
    }

    /// The tier's order and default action; a tier without a Tier resource has Calico's
    /// defaults (the `default` tier order 1e6, others last), default action Deny.
    public func tierSettings(_ name: String) -> (order: Double?, defaultAction: TierSpec.DefaultAction) {
        var tier = tiers[name] ?? Tier(metadata: ObjectMeta(name: name))
        tier.applyDefaults()
        return (tier.spec.order, tier.spec.defaultAction ?? .deny)
    }
}

extension PolicyResource {
    /// The policy engine's view of a manifest resource; nil for kinds policy does not read.
    public init?(_ resource: AnyResource) {
        if let value = resource.as(NetworkPolicy.self) {
            self = .networkPolicy(value)
        } else if let value = resource.as(GlobalNetworkPolicy.self) {
            self = .globalNetworkPolicy(value)
        } else if let value = resource.as(KubernetesNetworkPolicy.self) {
            self = .kubernetesNetworkPolicy(value)
        } else if let value = resource.as(Tier.self) {
            self = .tier(value)
        } else if let value = resource.as(Profile.self) {
            self = .profile(value)
        } else if let value = resource.as(KubernetesNamespace.self) {
            self = .namespace(value)
        } else if let value = resource.as(NetworkSet.self) {
            self = .networkSet(value)
        } else if let value = resource.as(GlobalNetworkSet.self) {
            self = .globalNetworkSet(value)
        } else if let value = resource.as(WorkloadEndpoint.self) {
            self = .workloadEndpoint(value)
        } else if let value = resource.as(HostEndpoint.self) {
            self = .hostEndpoint(value)
        } else {
            return nil
        }
    }
}
