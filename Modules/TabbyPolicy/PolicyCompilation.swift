import TabbyCore

/// A Calico NetworkPolicy or GlobalNetworkPolicy reduced to what resolution needs, its
/// selectors parsed and scoped as Calico's backend scopes them.
public struct ResolvedPolicy: Hashable, Sendable {
    public var id: PolicyID
    public var tier: String
    public var order: Double?
    /// The policy's namespace; nil for a GlobalNetworkPolicy.
    public var namespace: String?
    public var types: [PolicyType]
    public var ingress: [Rule]
    public var egress: [Rule]
    /// Which endpoints it applies to: its selector, ANDed with `projectcalico.org/namespace ==
    /// <ns>` for a namespaced policy, or with the prefixed `namespaceSelector` for a global one.
    /// Nil when a selector does not parse (the policy then selects nothing; see `problem`).
    public var endpointSelector: Selector?
    public var problem: String?

    public init(_ policy: NetworkPolicy) {
        var policy = policy
        policy.applyDefaults()
        let namespace = policy.metadata.namespace ?? "default"
        id = PolicyID(namespace: namespace, name: policy.metadata.name)
        tier = policy.spec.tier ?? "default"
        order = policy.spec.order
        self.namespace = namespace
        types = policy.spec.types ?? []
        ingress = policy.spec.ingress ?? []
        egress = policy.spec.egress ?? []
        do {
            let selector = try Selector.parse(policy.spec.selector ?? "")
            endpointSelector = Selector(expression: .and([namespaceEquals(namespace), selector.expression]))
        } catch {
            problem = "selector: \(error)"
        }
        restrict(toServiceAccounts: policy.spec.serviceAccountSelector)
    }

    public init(_ policy: GlobalNetworkPolicy) {
        var policy = policy
        policy.applyDefaults()
        id = PolicyID(namespace: nil, name: policy.metadata.name)
        tier = policy.spec.tier ?? "default"
        order = policy.spec.order
        namespace = nil
        types = policy.spec.types ?? []
        ingress = policy.spec.ingress ?? []
        egress = policy.spec.egress ?? []
        do {
            let selector = try Selector.parse(policy.spec.selector ?? "")
            if let text = policy.spec.namespaceSelector, !text.isEmpty {
                let namespaces = try Selector.parse(text)
                endpointSelector = Selector(
                    expression: .and([namespaceSelectorExpression(namespaces), selector.expression]))
            } else {
                endpointSelector = selector
            }
        } catch {
            problem = "selector: \(error)"
        }
        restrict(toServiceAccounts: policy.spec.serviceAccountSelector)
        // Calico applies doNotTrack and preDNAT policies to host endpoints only, before
        // connection tracking or before DNAT: the IR has no such stage yet. Refused, so the
        // policy selects nothing rather than running at the wrong stage.
        if policy.spec.doNotTrack == true || policy.spec.preDNAT == true {
            problem = "doNotTrack and preDNAT policies are not supported yet"
        }
    }

    /// ANDs a policy's `serviceAccountSelector` into its endpoint selector, its labels read as
    /// the `pcsa.` labels a service account's profile gives its endpoints (Calico's
    /// `parseSelectorAttachPrefix(..., "pcsa.")`).
    private mutating func restrict(toServiceAccounts text: String?) {
        guard let text, !text.isEmpty, let selector = endpointSelector else { return }
        do {
            let accounts = try Selector.parse(text)
            endpointSelector = Selector(
                expression: .and([selector.expression, prefixed(accounts.expression, with: serviceAccountLabelPrefix)]))
        } catch {
            endpointSelector = nil
            problem = "serviceAccountSelector: \(error)"
        }
    }

    /// Where the policy goes in the programs of the endpoints it selects.
    var placement: PolicyPlacement { PolicyPlacement(self) }

    /// Whether the policy applies to an endpoint with `labels` for `direction`.
    public func selects(_ labels: [String: String], for direction: Direction) -> Bool {
        guard let endpointSelector, types.contains(direction == .ingress ? .ingress : .egress) else { return false }
        return endpointSelector.matches(labels)
    }
}

/// What an endpoint's program needs of a policy that selects it: small, so building and
/// sorting thousands of programs copies little.
struct PolicyPlacement: Hashable, Sendable {
    var id: PolicyID
    /// `id.description`, made once: policies with equal order sort by it.
    var sortName: String
    var tier: String
    var order: Double?
    var ingress: Bool
    var egress: Bool

    init(_ policy: ResolvedPolicy) {
        id = policy.id
        sortName = policy.id.description
        tier = policy.tier
        order = policy.order
        ingress = policy.types.contains(.ingress)
        egress = policy.types.contains(.egress)
    }
}

private func namespaceEquals(_ namespace: String) -> SelectorExpression {
    .equal(SelectorExpression.namespaceLabelKey, namespace)
}

/// The prefix of the labels a namespace's profile (`kns.<ns>`) gives its endpoints.
let namespaceLabelPrefix = "pcns."
/// The prefix of the labels a service account's profile (`ksa.<ns>.<sa>`) gives its endpoints.
let serviceAccountLabelPrefix = "pcsa."

/// A namespace selector as an endpoint selector: every label becomes `pcns.<label>` (the
/// labels the namespace profile applies), as Calico's `parseSelectorAttachPrefix` does.
/// Choice: `all()` becomes `has(projectcalico.org/namespace)`, every namespaced endpoint or
/// network set (not global network sets or host endpoints), matching Kubernetes' `{}`.
func namespaceSelectorExpression(_ selector: Selector) -> SelectorExpression {
    if selector.isAll { return .has(SelectorExpression.namespaceLabelKey) }
    return prefixed(selector.expression, with: namespaceLabelPrefix)
}

/// A rule's `serviceAccounts` as a selector, as Calico's `parseServiceAccounts`: the
/// `selector` over `pcsa.` labels, ANDed with `projectcalico.org/serviceaccount in {names}`;
/// nil when it has neither.
func serviceAccountExpression(_ match: ServiceAccountMatch) throws(SelectorError) -> SelectorExpression? {
    var parts: [SelectorExpression] = []
    if let text = match.selector, !text.isEmpty {
        parts.append(prefixed(try Selector.parse(text).expression, with: serviceAccountLabelPrefix))
    }
    if let names = match.names, !names.isEmpty {
        parts.append(.in(ClusterState.serviceAccountLabelKey, Array(Set(names)).sorted()))
    }
    return parts.isEmpty ? nil : parts.count == 1 ? parts[0] : .and(parts)
}

/// Every label the expression reads, with `prefix` in front.
private func prefixed(_ expression: SelectorExpression, with prefix: String) -> SelectorExpression {
    switch expression {
    case .all, .global: return expression
    case .has(let key): return .has(prefix + key)
    case .equal(let key, let value): return .equal(prefix + key, value)
    case .notEqual(let key, let value): return .notEqual(prefix + key, value)
    case .contains(let key, let value): return .contains(prefix + key, value)
    case .startsWith(let key, let value): return .startsWith(prefix + key, value)
    case .endsWith(let key, let value): return .endsWith(prefix + key, value)
    case .in(let key, let values): return .in(prefix + key, values)
    case .notIn(let key, let values): return .notIn(prefix + key, values)
    case .not(let inner): return .not(prefixed(inner, with: prefix))
    case .and(let parts): return .and(parts.map { prefixed($0, with: prefix) })
    case .or(let parts): return .or(parts.map { prefixed($0, with: prefix) })
    }
}

/// Compiles Calico rules into `CompiledRule`s, collecting the IP sets they reference.
struct RuleCompiler {
    enum Problem: Error, CustomStringConvertible {
        case badSelector(String, SelectorError)
        case badCIDR(String)
        case unknownProtocol(String)
        case namedPortWithoutProtocol(String)
        case unsupported(String)

        var description: String {
            switch self {
            case .badSelector(let text, let error): return "selector \"\(text)\": \(error)"
            case .badCIDR(let text): return "\"\(text)\" is not a CIDR"
            case .unknownProtocol(let text): return "unknown protocol \"\(text)\""
            case .namedPortWithoutProtocol(let name): return "named port \"\(name)\" needs a protocol"
            case .unsupported(let field): return "\(field) is not supported yet"
            }
        }
    }

    /// The namespace of the policy whose rules these are; nil for global policies and profiles.
    var namespace: String?
    private(set) var sets: [IPSetID: IPSetDefinition] = [:]

    init(namespace: String?) { self.namespace = namespace }

    mutating func compile(_ rules: [Rule]) throws(Problem) -> [CompiledRule] {
        var result: [CompiledRule] = []
        for rule in rules { result.append(try compile(rule)) }
        return result
    }

    mutating func compile(_ rule: Rule) throws(Problem) -> CompiledRule {
        // Refused rather than ignored: dropping a match would widen the rule.
        if rule.http != nil { throw .unsupported("http") }
        for entity in [rule.source, rule.destination] where entity?.services != nil {
            throw .unsupported("services")
        }
        var compiled = CompiledRule(action: rule.action)
        compiled.ipVersion = rule.ipVersion
        compiled.protocolNumber = try number(rule.protocol)
        compiled.notProtocolNumber = try number(rule.notProtocol)
        compiled.icmp = rule.icmp
        compiled.notICMP = rule.notICMP
        compiled.source = try compile(rule.source, protocolNumber: compiled.protocolNumber)
        compiled.destination = try compile(rule.destination, protocolNumber: compiled.protocolNumber)
        return compiled
    }

    private func number(_ proto: IPProtocol?) throws(Problem) -> Int? {
        guard let proto else { return nil }
        guard let number = proto.protocolNumber else { throw .unknownProtocol(proto.description) }
        return number
    }

    private func parse(_ text: String) throws(Problem) -> Selector {
        do { return try Selector.parse(text) } catch { throw .badSelector(text, error) }
    }

    private mutating func compile(_ entity: EntityRule?, protocolNumber: Int?) throws(Problem) -> CompiledEntityMatch {
        var match = CompiledEntityMatch()
        guard let entity else { return match }
        for text in entity.nets ?? [] {
            guard let cidr = CIDR(text) else { throw .badCIDR(text) }
            match.nets.append(cidr)
        }
        for text in entity.notNets ?? [] {
            guard let cidr = CIDR(text) else { throw .badCIDR(text) }
            match.notNets.append(cidr)
        }
        // Calico's RuleAPIV2ToBackend: the namespace scope is the prefixed namespaceSelector if
        // given, else (in a namespaced policy) the policy's namespace; it is ANDed into the
        // selector only when the rule has a selector, notSelector or namespaceSelector.
        let selectorText = (entity.selector ?? "").isEmpty ? nil : entity.selector
        let notSelectorText = (entity.notSelector ?? "").isEmpty ? nil : entity.notSelector
        let namespaceText = (entity.namespaceSelector ?? "").isEmpty ? nil : entity.namespaceSelector
        var scope: SelectorExpression?
        if let namespaceText {
            scope = namespaceSelectorExpression(try parse(namespaceText))
        } else if let namespace {
            scope = namespaceEquals(namespace)
        }
        // The service accounts' selector is ANDed with the selector, and scoped like it.
        var accounts: SelectorExpression?
        if let match = entity.serviceAccounts {
            do { accounts = try serviceAccountExpression(match) } catch {
                throw .badSelector(match.selector ?? "", error)
            }
        }
        var selector: Selector?
        if let selectorText { selector = try parse(selectorText) }
        if let accounts {
            selector = Selector(expression: selector.map { .and([accounts, $0.expression]) } ?? accounts)
        }
        if let scope, selector != nil || notSelectorText != nil || namespaceText != nil {
            selector = Selector(expression: selector.map { .and([scope, $0.expression]) } ?? scope)
        }
        if let selector { match.ipSets.append(add(IPSetDefinition(selector: selector))) }
        if let notSelectorText { match.notIPSets.append(add(IPSetDefinition(selector: try parse(notSelectorText)))) }
        // Named ports resolve per endpoint: an (address, protocol, port) set of the endpoints
        // the entity's selector matches (all endpoints without one).
        let portSelector = selector ?? .all
        for port in entity.ports ?? [] {
            switch port {
            case .number(let number): match.ports.append(PortRange(number, number))
            case .range(let low, let high): match.ports.append(PortRange(low, high))
            case .named(let name):
                guard let protocolNumber else { throw .namedPortWithoutProtocol(name) }
                let namedPort = IPSetDefinition.NamedPort(name: name, protocolNumber: protocolNumber)
                match.namedPortSets.append(add(IPSetDefinition(selector: portSelector, namedPort: namedPort)))
            }
        }
        for port in entity.notPorts ?? [] {
            switch port {
            case .number(let number): match.notPorts.append(PortRange(number, number))
            case .range(let low, let high): match.notPorts.append(PortRange(low, high))
            case .named(let name):
                guard let protocolNumber else { throw .namedPortWithoutProtocol(name) }
                let namedPort = IPSetDefinition.NamedPort(name: name, protocolNumber: protocolNumber)
                match.notNamedPortSets.append(add(IPSetDefinition(selector: portSelector, namedPort: namedPort)))
            }
        }
        return match
    }

    private mutating func add(_ definition: IPSetDefinition) -> IPSetID {
        let id = definition.id
        sets[id] = definition
        return id
    }
}

/// A policy or profile compiled once: its program and the IP sets it references.
struct CompiledUnit<Program: Hashable & Sendable>: Hashable, Sendable {
    var program: Program
    var sets: [IPSetID: IPSetDefinition]
}

enum ProgramCompiler {
    /// Compiles a policy; nil (with the reason) when a selector, CIDR or protocol is invalid,
    /// in which case the policy selects nothing.
    static func compile(_ policy: ResolvedPolicy) -> Result<CompiledUnit<PolicyProgram>, RuleCompiler.Problem>? {
        if policy.problem != nil { return nil }
        var compiler = RuleCompiler(namespace: policy.namespace)
        do {
            let ingress = policy.types.contains(.ingress) ? try compiler.compile(policy.ingress) : []
            let egress = policy.types.contains(.egress) ? try compiler.compile(policy.egress) : []
            let program = PolicyProgram(
                id: policy.id, tier: policy.tier, order: policy.order, ingress: ingress, egress: egress)
            return .success(CompiledUnit(program: program, sets: compiler.sets))
        } catch {
            return .failure(error)
        }
    }

    static func compile(_ profile: Profile) -> Result<CompiledUnit<ProfileProgram>, RuleCompiler.Problem> {
        var compiler = RuleCompiler(namespace: nil)
        do {
            let program = ProfileProgram(
                name: profile.metadata.name,
                ingress: try compiler.compile(profile.spec.ingress ?? []),
                egress: try compiler.compile(profile.spec.egress ?? []))
            return .success(CompiledUnit(program: program, sets: compiler.sets))
        } catch {
            return .failure(error)
        }
    }
}

/// Something rule selectors select: it has labels and contributes addresses to IP sets.
enum SelectableKey: Hashable, Sendable {
    case workloadEndpoint(EndpointKey)
    case hostEndpoint(String)
    case networkSet(ResourceName)
    case globalNetworkSet(String)

    /// An endpoint's key.
    init(_ endpoint: EndpointKey) {
        if let name = endpoint.hostEndpointName {
            self = .hostEndpoint(name)
        } else {
            self = .workloadEndpoint(endpoint)
        }
    }

    /// The endpoint this is, if it is one (policies select endpoints, not network sets).
    var endpoint: EndpointKey? {
        switch self {
        case .workloadEndpoint(let key): return key
        case .hostEndpoint(let name): return .hostEndpoint(name)
        case .networkSet, .globalNetworkSet: return nil
        }
    }
}

extension ClusterState {
    /// Every object selectors can select.
    var selectableKeys: [SelectableKey] {
        workloadEndpoints.keys.map(SelectableKey.workloadEndpoint) + hostEndpoints.keys.map(SelectableKey.hostEndpoint)
            + networkSets.keys.map(SelectableKey.networkSet)
            + globalNetworkSets.keys.map(SelectableKey.globalNetworkSet)
    }

    /// Every endpoint under policy: workload endpoints and host endpoints (`hep/<name>`).
    var endpointKeys: [EndpointKey] {
        Array(workloadEndpoints.keys) + hostEndpoints.keys.map(EndpointKey.hostEndpoint)
    }

    /// The labels selectors see on an object; nil when it does not exist.
    func labels(of key: SelectableKey) -> [String: String]? {
        switch key {
        case .workloadEndpoint(let name): return workloadEndpoints[name].map { labels(of: $0) }
        case .hostEndpoint(let name): return hostEndpoints[name].map { labels(of: $0) }
        case .networkSet(let name): return networkSets[name].map { labels(of: $0) }
        case .globalNetworkSet(let name): return globalNetworkSets[name].map { $0.metadata.labels ?? [:] }
        }
    }

    /// A label index over every selectable object.
    func labelIndex() -> LabelIndex<SelectableKey> {
        var index = LabelIndex<SelectableKey>()
        for key in selectableKeys { index.update(key, labels: labels(of: key)) }
        return index
    }
}

/// Membership rules shared by the from-scratch compiler and the incremental engine.
enum Membership {
    /// What an object the set's selector matches contributes to it: an endpoint its addresses
    /// (or, for a named-port set, its ports of that name), a network set its nets.
    static func members(of definition: IPSetDefinition, from key: SelectableKey, state: ClusterState)
        -> Set<IPSetMember>
    {
        switch key {
        case .workloadEndpoint(let name):
            guard let endpoint = state.workloadEndpoints[name] else { return [] }
            return members(of: definition, addresses: ClusterState.addresses(of: endpoint), ports: endpoint.spec.ports)
        case .hostEndpoint(let name):
            guard let endpoint = state.hostEndpoints[name] else { return [] }
            return members(of: definition, addresses: ClusterState.addresses(of: endpoint), ports: endpoint.spec.ports)
        case .networkSet(let name):
            return members(of: definition, nets: state.networkSets[name]?.spec.nets)
        case .globalNetworkSet(let name):
            return members(of: definition, nets: state.globalNetworkSets[name]?.spec.nets)
        }
    }

    private static func members(of definition: IPSetDefinition, addresses: [IPAddress], ports: [EndpointPort]?)
        -> Set<IPSetMember>
    {
        guard let namedPort = definition.namedPort else {
            return Set(addresses.map { .net(CIDR(network: $0, prefixLength: $0.bitWidth)) })
        }
        var members: Set<IPSetMember> = []
        for port in ports ?? []
        where port.name == namedPort.name && port.protocol.protocolNumber == namedPort.protocolNumber {
            for address in addresses {
                members.insert(.addressPort(address, protocolNumber: namedPort.protocolNumber, port: port.port))
            }
        }
        return members
    }

    /// Network sets have no named ports.
    private static func members(of definition: IPSetDefinition, nets: [String]?) -> Set<IPSetMember> {
        guard definition.namedPort == nil else { return [] }
        return Set((nets ?? []).compactMap { CIDR($0) }.map { .net($0) })
    }

    /// An endpoint's program given the compiled policies whose selector matches it (in any
    /// direction, any order); nil when there is no such endpoint.
    static func program(for key: EndpointKey, selectedBy matching: [PolicyPlacement], state: ClusterState)
        -> EndpointProgram?
    {
        var program: EndpointProgram
        if let name = key.hostEndpointName {
            guard let endpoint = state.hostEndpoints[name] else { return nil }
            program = EndpointProgram(
                endpoint: key, addresses: ClusterState.addresses(of: endpoint),
                interfaceName: endpoint.spec.interfaceName, ingress: [], egress: [],
                profiles: state.profileNames(of: endpoint))
            program.kind = .host
        } else {
            guard let endpoint = state.workloadEndpoints[key] else { return nil }
            program = EndpointProgram(
                endpoint: key, addresses: ClusterState.addresses(of: endpoint),
                interfaceName: endpoint.spec.interfaceName, ingress: [], egress: [],
                profiles: state.profileNames(of: endpoint))
        }
        program.ingress = tiers(matching.filter(\.ingress), state)
        program.egress = tiers(matching.filter(\.egress), state)
        return program
    }

    /// The tiers of `placements`, in order, each with its policies in order.
    private static func tiers(_ placements: [PolicyPlacement], _ state: ClusterState) -> [TierBinding] {
        var byTier: [String: [PolicyPlacement]] = [:]
        for placement in placements { byTier[placement.tier, default: []].append(placement) }
        var bindings: [TierBinding] = byTier.map { name, members in
            let settings = state.tierSettings(name)
            let ordered = members.sorted { left, right in
                let leftOrder = left.order ?? .infinity
                let rightOrder = right.order ?? .infinity
                return leftOrder != rightOrder ? leftOrder < rightOrder : left.sortName < right.sortName
            }
            return TierBinding(
                name: name, order: settings.order, defaultAction: settings.defaultAction, policies: ordered.map(\.id))
        }
        bindings.sort { left, right in
            let leftOrder = left.order ?? .infinity
            let rightOrder = right.order ?? .infinity
            return leftOrder != rightOrder ? leftOrder < rightOrder : left.name < right.name
        }
        return bindings
    }
}

/// How the compiler finds what a selector matches. The index is the real path; the scan is
/// the plain definition, kept so tests can check the two agree.
enum SelectorMatching: Sendable {
    case indexed
    case scan
}

extension PolicyIR {
    /// Compiles the whole state from scratch: the specification the incremental engine must
    /// always agree with.
    public static func compile(_ state: ClusterState) -> PolicyIR { compile(state, matching: .indexed) }

    static func compile(_ state: ClusterState, matching: SelectorMatching) -> PolicyIR {
        let index = state.labelIndex()
        func matches(_ selector: Selector) -> [SelectableKey] {
            matching == .indexed ? index.matching(selector) : index.scanning(selector)
        }
        let policies = state.allPolicies
        var compiledPolicies: [PolicyID: CompiledUnit<PolicyProgram>] = [:]
        // Each policy's selector is matched once, through the index: the endpoints it selects.
        var selecting: [EndpointKey: [PolicyPlacement]] = [:]
        for (id, policy) in policies {
            guard case .success(let unit) = ProgramCompiler.compile(policy), let selector = policy.endpointSelector
            else { continue }
            compiledPolicies[id] = unit
            let placement = policy.placement
            for key in matches(selector) {
                if let endpoint = key.endpoint { selecting[endpoint, default: []].append(placement) }
            }
        }
        var ir = PolicyIR()
        for key in state.endpointKeys {
            ir.endpoints[key] = Membership.program(for: key, selectedBy: selecting[key] ?? [], state: state)
        }
        var definitions: [IPSetID: IPSetDefinition] = [:]
        var compiledProfiles: [String: CompiledUnit<ProfileProgram>?] = [:]
        for program in ir.endpoints.values {
            for id in Direction.allCases.flatMap({ program.tiers($0) }).flatMap(\.policies)
            where ir.policies[id] == nil {
                guard let unit = compiledPolicies[id] else { continue }
                ir.policies[id] = unit.program
                definitions.merge(unit.sets) { first, _ in first }
            }
            for name in program.profiles where ir.profiles[name] == nil {
                if compiledProfiles.index(forKey: name) == nil {
                    compiledProfiles[name] = .some(
                        state.profile(named: name).flatMap { try? ProgramCompiler.compile($0).get() })
                }
                guard let unit = compiledProfiles[name] ?? nil else { continue }
                ir.profiles[name] = unit.program
                definitions.merge(unit.sets) { first, _ in first }
            }
        }
        for (id, definition) in definitions {
            var set = IPSet(definition: definition)
            for key in matches(definition.selector) {
                set.members.formUnion(Membership.members(of: definition, from: key, state: state))
            }
            ir.ipSets[id] = set
        }
        return ir
    }
}
