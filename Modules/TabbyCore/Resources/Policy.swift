/// projectcalico.org/v3 NetworkPolicy (namespaced).
public struct NetworkPolicySpec: ResourceSpec {
    public static var kind: ResourceKind { .networkPolicy }

    public var tier: String?
    public var order: Double?
    public var selector: String?
    public var types: [PolicyType]?
    public var ingress: [Rule]?
    public var egress: [Rule]?
    public var serviceAccountSelector: String?
    public var performanceHints: [String]?

    public init() {}

    public mutating func applyDefaults(metadata: ObjectMeta) {
        if tier == nil || tier == "" { tier = "default" }
        types = defaultedTypes(types, ingress: ingress, egress: egress)
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validatePolicyCommon(
            &validator, tier: tier, order: order, selector: selector, types: types, ingress: ingress, egress: egress)
        validator.validateSelector(serviceAccountSelector, key: "serviceAccountSelector")
    }
}

/// projectcalico.org/v3 GlobalNetworkPolicy (cluster-wide; may also police host endpoints).
public struct GlobalNetworkPolicySpec: ResourceSpec {
    public static var kind: ResourceKind { .globalNetworkPolicy }

    public var tier: String?
    public var order: Double?
    public var selector: String?
    public var namespaceSelector: String?
    public var serviceAccountSelector: String?
    public var types: [PolicyType]?
    public var ingress: [Rule]?
    public var egress: [Rule]?
    public var doNotTrack: Bool?
    public var preDNAT: Bool?
    public var applyOnForward: Bool?
    public var performanceHints: [String]?

    public init() {}

    public mutating func applyDefaults(metadata: ObjectMeta) {
        if tier == nil || tier == "" { tier = "default" }
        types = defaultedTypes(types, ingress: ingress, egress: egress)
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validatePolicyCommon(
            &validator, tier: tier, order: order, selector: selector, types: types, ingress: ingress, egress: egress)
        validator.validateSelector(namespaceSelector, key: "namespaceSelector")
        validator.validateSelector(serviceAccountSelector, key: "serviceAccountSelector")
        let untracked = doNotTrack ?? false
        let beforeNAT = preDNAT ?? false
        if untracked && beforeNAT {
            validator.fail("preDNAT", "preDNAT and doNotTrack cannot both be true")
        }
        if untracked && !(applyOnForward ?? false) {
            validator.fail("applyOnForward", "doNotTrack needs applyOnForward: true")
        }
        if beforeNAT && !(applyOnForward ?? false) {
            validator.fail("applyOnForward", "preDNAT needs applyOnForward: true")
        }
        if beforeNAT && !(egress ?? []).isEmpty {
            validator.fail("egress", "a preDNAT policy cannot have egress rules")
        }
        if beforeNAT, let types, types.contains(.egress) {
            validator.fail("types", "a preDNAT policy can only be of type Ingress")
        }
    }
}

public typealias NetworkPolicy = Resource<NetworkPolicySpec>
public typealias GlobalNetworkPolicy = Resource<GlobalNetworkPolicySpec>

/// Calico's default: Ingress unless there are only egress rules; both when both are given.
func defaultedTypes(_ types: [PolicyType]?, ingress: [Rule]?, egress: [Rule]?) -> [PolicyType] {
    if let types, !types.isEmpty { return types }
    let hasIngress = !(ingress ?? []).isEmpty
    let hasEgress = !(egress ?? []).isEmpty
    switch (hasIngress, hasEgress) {
    case (false, true): return [.egress]
    case (true, true): return [.ingress, .egress]
    default: return [.ingress]
    }
}

private func validatePolicyCommon(
    _ validator: inout Validator,
    tier: String?,
    order: Double?,
    selector: String?,
    types: [PolicyType]?,
    ingress: [Rule]?,
    egress: [Rule]?
) {
    if let tier, !tier.isEmpty, let problem = Validator.problem(withName: tier, allowDots: false) {
        validator.fail("tier", problem)
    }
    if let order, !order.isFinite { validator.fail("order", "must be a finite number") }
    validator.validateSelector(selector, key: "selector")
    if let types {
        if Set(types).count != types.count { validator.fail("types", "lists a type twice") }
        if !(ingress ?? []).isEmpty && !types.isEmpty && !types.contains(.ingress) {
            validator.fail("ingress", "ingress rules are given but types does not include Ingress")
        }
        if !(egress ?? []).isEmpty && !types.isEmpty && !types.contains(.egress) {
            validator.fail("egress", "egress rules are given but types does not include Egress")
        }
    }
    validator.validateRules(ingress, key: "ingress")
    validator.validateRules(egress, key: "egress")
}

/// A tier: an ordered group of policies with a default for endpoints its policies select.
public struct TierSpec: ResourceSpec {
    public static var kind: ResourceKind { .tier }

    public enum DefaultAction: String, StringEnumeration {
        case deny = "Deny"
        case pass = "Pass"
    }

    /// The `default` tier's order, after every tier a user is likely to create.
    public static let defaultTierOrder = 1_000_000.0

    public var order: Double?
    public var defaultAction: DefaultAction?

    public init() {}

    public mutating func applyDefaults(metadata: ObjectMeta) {
        if defaultAction == nil { defaultAction = .deny }
        if metadata.name == "default" && order == nil { order = Self.defaultTierOrder }
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if metadata.name.contains(".") {
            validator.fail(
                "the tier name \"\(metadata.name)\" cannot contain '.' (policy names use it as \"<tier>.<name>\")")
        }
        if let order, !order.isFinite { validator.fail("order", "must be a finite number") }
        if metadata.name == "default" {
            if let order, order != Self.defaultTierOrder {
                validator.fail("order", "the default tier's order is fixed at 1000000")
            }
            if defaultAction == .pass {
                validator.fail("defaultAction", "the default tier's defaultAction must be Deny")
            }
        }
    }
}

public typealias Tier = Resource<TierSpec>

/// A profile: rules and labels applied to endpoints that name it (`kns.<namespace>`, ...).
public struct ProfileSpec: ResourceSpec {
    public static var kind: ResourceKind { .profile }

    public var ingress: [Rule]?
    public var egress: [Rule]?
    public var labelsToApply: [String: String]?

    public init() {}

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validator.validateRules(ingress, key: "ingress")
        validator.validateRules(egress, key: "egress")
        validator.validateLabels(labelsToApply, key: "labelsToApply")
    }
}

public typealias Profile = Resource<ProfileSpec>
