import TabbyCore

/// One change to the cluster state.
public enum PolicyUpdate: Hashable, Sendable {
    case upsert(PolicyResource)
    case delete(PolicyResourceKey)
}

/// Maintains the IR as resources change, and reports each change as a `PolicyDelta`.
///
/// Incremental where it pays: a policy or profile is recompiled only when it changes; an IP
/// set's members are kept as per-contributor contributions (endpoint, network set), so an
/// endpoint or network set update re-matches only that object against each set, and a new set
/// is filled by one scan. Endpoint programs are recomputed for the endpoints an update can
/// affect (all of them for a policy or tier change). The delta is then found by comparing the
/// previous and the new IR per set, policy, profile and endpoint.
///
/// Contract: after any sequence of updates, `ir == PolicyIR.compile(state)`.
public struct PolicyEngine: Sendable {
    public private(set) var state = ClusterState()
    /// The published IR: active policies and profiles, the sets they use, every endpoint.
    public private(set) var ir = PolicyIR()
    /// Policies and profiles that failed to compile (they select or apply to nothing), with why.
    public private(set) var problems: [String: String] = [:]

    private enum Contributor: Hashable, Sendable {
        case endpoint(ResourceName)
        case networkSet(ResourceName)
        case globalNetworkSet(String)
    }

    private struct SetState: Sendable {
        var definition: IPSetDefinition
        var references = 0
        var contributions: [Contributor: Set<IPSetMember>] = [:]
        /// How many contributors give each member.
        var counts: [IPSetMember: Int] = [:]

        mutating func setContribution(_ members: Set<IPSetMember>, from contributor: Contributor) {
            let old = contributions[contributor] ?? []
            if old == members { return }
            for member in old.subtracting(members) {
                let count = (counts[member] ?? 1) - 1
                counts[member] = count == 0 ? nil : count
            }
            for member in members.subtracting(old) { counts[member, default: 0] += 1 }
            contributions[contributor] = members.isEmpty ? nil : members
        }
    }

    private var policies: [PolicyID: ResolvedPolicy] = [:]
    private var compiledPolicies: [PolicyID: CompiledUnit<PolicyProgram>] = [:]
    private var compiledProfiles: [String: CompiledUnit<ProfileProgram>] = [:]
    private var endpointLabels: [EndpointKey: [String: String]] = [:]
    private var programs: [EndpointKey: EndpointProgram] = [:]
    private var sets: [IPSetID: SetState] = [:]
    /// Set within a batch when a policy or tier changed: every program is recomputed at its end.
    private var programsStale = false

    public init() {}

    /// Applies `updates` in order and returns the combined delta.
    @discardableResult
    public mutating func apply(_ updates: [PolicyUpdate]) -> PolicyDelta {
        let before = ir
        programsStale = false
        for update in updates {
            switch update {
            case .upsert(let resource):
                state.upsert(resource)
                refresh(after: resource.key)
            case .delete(let key):
                state.delete(key)
                refresh(after: key)
            }
        }
        // Policy and tier changes recompute every endpoint's program once per batch, not once
        // per change: loading 1,000 policies is one pass over the endpoints, not 1,000.
        if programsStale { refreshAllPrograms() }
        publish()
        return PolicyDelta.between(before, ir)
    }

    @discardableResult
    public mutating func upsert(_ resource: PolicyResource) -> PolicyDelta { apply([.upsert(resource)]) }

    @discardableResult
    public mutating func delete(_ key: PolicyResourceKey) -> PolicyDelta { apply([.delete(key)]) }

    // MARK: - What each kind of change touches

    private mutating func refresh(after key: PolicyResourceKey) {
        switch key.kind {
        case .workloadEndpoint:
            refreshEndpoint(key.name)
        case .networkSet:
            refreshNetworkSet(key.name)
        case .globalNetworkSet:
            refreshGlobalNetworkSet(key.name.name)
        case .kubernetesNamespace:
            let namespace = key.name.name
            refreshProfile("kns.\(namespace)")
            // Every endpoint naming kns.<namespace> (normally exactly the namespace's own).
            for (name, endpoint) in state.workloadEndpoints
            where state.profileNames(of: endpoint).contains("kns.\(namespace)") {
                refreshEndpoint(name)
            }
            for name in state.networkSets.keys where name.namespace == namespace { refreshNetworkSet(name) }
        case .profile:
            refreshProfile(key.name.name)
            for (name, endpoint) in state.workloadEndpoints
            where state.profileNames(of: endpoint).contains(key.name.name) {
                refreshEndpoint(name)
            }
        case .networkPolicy:
            refreshPolicy(key.name, resolved: state.networkPolicies[key.name].map(ResolvedPolicy.init))
            programsStale = true
        case .kubernetesNetworkPolicy:
            let id = PolicyID(namespace: key.name.namespace, name: KubernetesPolicyConversion.calicoName(key.name.name))
            let resolved = state.kubernetesNetworkPolicies[key.name].map {
                ResolvedPolicy(KubernetesPolicyConversion.convert($0))
            }
            refreshPolicy(id, resolved: resolved)
            programsStale = true
        case .globalNetworkPolicy:
            refreshPolicy(key.name, resolved: state.globalNetworkPolicies[key.name.name].map(ResolvedPolicy.init))
            programsStale = true
        case .tier:
            programsStale = true
        default:
            break
        }
    }

    private mutating func refreshPolicy(_ id: PolicyID, resolved: ResolvedPolicy?) {
        if let old = compiledPolicies.removeValue(forKey: id) { release(old.sets) }
        policies[id] = resolved
        problems[id.description] = nil
        guard let resolved else { return }
        if let problem = resolved.problem { problems[id.description] = problem }
        switch ProgramCompiler.compile(resolved) {
        case .success(let unit):
            compiledPolicies[id] = unit
            retain(unit.sets)
        case .failure(let problem):
            problems[id.description] = problem.description
        case nil:
            break
        }
    }

    private mutating func refreshProfile(_ name: String) {
        if let old = compiledProfiles.removeValue(forKey: name) { release(old.sets) }
        problems["profile \(name)"] = nil
        guard let profile = state.profile(named: name) else { return }
        switch ProgramCompiler.compile(profile) {
        case .success(let unit):
            compiledProfiles[name] = unit
            retain(unit.sets)
        case .failure(let problem):
            problems["profile \(name)"] = problem.description
        }
    }

    /// Re-derives one endpoint's labels, its contribution to every set, and its program.
    private mutating func refreshEndpoint(_ name: EndpointKey) {
        guard let endpoint = state.workloadEndpoints[name] else {
            endpointLabels[name] = nil
            programs[name] = nil
            for id in Array(sets.keys) { sets[id]!.setContribution([], from: .endpoint(name)) }
            return
        }
        let labels = state.labels(of: endpoint)
        endpointLabels[name] = labels
        for id in Array(sets.keys) {
            let members = Membership.members(of: sets[id]!.definition, endpoint: endpoint, labels: labels)
            sets[id]!.setContribution(members, from: .endpoint(name))
        }
        programs[name] = Membership.program(
            for: endpoint, labels: labels, policies: policies, compiled: Set(compiledPolicies.keys), state: state)
    }

    private mutating func refreshAllPrograms() {
        let compiled = Set(compiledPolicies.keys)
        for (name, endpoint) in state.workloadEndpoints {
            let labels = endpointLabels[name] ?? state.labels(of: endpoint)
            programs[name] = Membership.program(
                for: endpoint, labels: labels, policies: policies, compiled: compiled, state: state)
        }
    }

    private mutating func refreshNetworkSet(_ name: ResourceName) {
        let networkSet = state.networkSets[name]
        let labels = networkSet.map { state.labels(of: $0) }
        for id in Array(sets.keys) {
            var members: Set<IPSetMember> = []
            if let networkSet, let labels {
                members = Membership.members(of: sets[id]!.definition, nets: networkSet.spec.nets, labels: labels)
            }
            sets[id]!.setContribution(members, from: .networkSet(name))
        }
    }

    private mutating func refreshGlobalNetworkSet(_ name: String) {
        let networkSet = state.globalNetworkSets[name]
        for id in Array(sets.keys) {
            var members: Set<IPSetMember> = []
            if let networkSet {
                members = Membership.members(
                    of: sets[id]!.definition, nets: networkSet.spec.nets, labels: networkSet.metadata.labels ?? [:])
            }
            sets[id]!.setContribution(members, from: .globalNetworkSet(name))
        }
    }

    // MARK: - IP set reference counting

    private mutating func retain(_ definitions: [IPSetID: IPSetDefinition]) {
        for (id, definition) in definitions {
            if sets[id] == nil { sets[id] = filled(SetState(definition: definition)) }
            sets[id]!.references += 1
        }
    }

    private mutating func release(_ definitions: [IPSetID: IPSetDefinition]) {
        for id in definitions.keys {
            sets[id]!.references -= 1
            if sets[id]!.references == 0 { sets[id] = nil }
        }
    }

    /// A new set's members, from one scan of every endpoint and network set.
    private func filled(_ set: SetState) -> SetState {
        var set = set
        for (name, endpoint) in state.workloadEndpoints {
            let labels = endpointLabels[name] ?? state.labels(of: endpoint)
            set.setContribution(
                Membership.members(of: set.definition, endpoint: endpoint, labels: labels), from: .endpoint(name))
        }
        for (name, networkSet) in state.networkSets {
            set.setContribution(
                Membership.members(
                    of: set.definition, nets: networkSet.spec.nets, labels: state.labels(of: networkSet)),
                from: .networkSet(name))
        }
        for (name, networkSet) in state.globalNetworkSets {
            set.setContribution(
                Membership.members(
                    of: set.definition, nets: networkSet.spec.nets, labels: networkSet.metadata.labels ?? [:]),
                from: .globalNetworkSet(name))
        }
        return set
    }

    // MARK: - Publishing

    /// Rebuilds the published IR from the maintained parts: only policies and profiles some
    /// endpoint uses, and only the sets those reference.
    private mutating func publish() {
        var next = PolicyIR()
        next.endpoints = programs
        var used: Set<IPSetID> = []
        for program in programs.values {
            for id in Direction.allCases.flatMap({ program.tiers($0) }).flatMap(\.policies)
            where next.policies[id] == nil {
                guard let unit = compiledPolicies[id] else { continue }
                next.policies[id] = unit.program
                used.formUnion(unit.sets.keys)
            }
            for name in program.profiles where next.profiles[name] == nil {
                guard let unit = compiledProfiles[name] else { continue }
                next.profiles[name] = unit.program
                used.formUnion(unit.sets.keys)
            }
        }
        for id in used {
            guard let set = sets[id] else { continue }
            next.ipSets[id] = IPSet(definition: set.definition, members: Set(set.counts.keys))
        }
        ir = next
    }
}
