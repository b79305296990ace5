import TabbyCore

/// One change to the cluster state.
public enum PolicyUpdate: Hashable, Sendable {
    case upsert(PolicyResource)
    case delete(PolicyResourceKey)
}

/// Maintains the IR as resources change, and reports each change as a `PolicyDelta`.
///
/// A batch of updates first changes the state and notes what they touch (objects whose labels
/// or addresses may have changed, policies, profiles, tiers); at its end the engine
/// - re-derives the touched objects' labels into a label index,
/// - recompiles the touched policies and profiles (a new IP set is filled through the index),
/// - re-matches the touched objects against every set, and every touched policy's selector
///   against the endpoints (through the index), keeping both directions of "policy selects
///   endpoint" so an endpoint's program is rebuilt from its own policies,
/// - rebuilds the programs of the endpoints whose policies, tiers or addresses changed,
/// - and publishes only the sets, policies, profiles and endpoints it touched: the delta is
///   found by comparing those alone, so its cost follows the change, not the cluster.
///
/// Contract: after any sequence of updates, `ir == PolicyIR.compile(state)`.
public struct PolicyEngine: Sendable {
    public private(set) var state = ClusterState()
    /// The published IR: active policies and profiles, the sets they use, every endpoint.
    public private(set) var ir = PolicyIR()
    /// Policies and profiles that failed to compile (they select or apply to nothing), with why.
    public private(set) var problems: [String: String] = [:]

    private struct SetState: Sendable {
        var definition: IPSetDefinition
        /// How many compiled policies and profiles reference the set.
        var references = 0
        var contributions: [SelectableKey: Set<IPSetMember>] = [:]
        /// How many contributors give each member; `members` are those with a count.
        var counts: [IPSetMember: Int] = [:]
        var members: Set<IPSetMember> = []

        /// Replaces a contributor's members; true when the set's members changed.
        mutating func setContribution(_ new: Set<IPSetMember>, from contributor: SelectableKey) -> Bool {
            let old = contributions[contributor] ?? []
            if old == new { return false }
            var changed = false
            for member in old.subtracting(new) {
                let count = (counts[member] ?? 1) - 1
                counts[member] = count == 0 ? nil : count
                if count == 0 {
                    members.remove(member)
                    changed = true
                }
            }
            for member in new.subtracting(old) {
                counts[member, default: 0] += 1
                if counts[member] == 1 {
                    members.insert(member)
                    changed = true
                }
            }
            contributions[contributor] = new.isEmpty ? nil : new
            return changed
        }
    }

    private var compiledPolicies: [PolicyID: CompiledUnit<PolicyProgram>] = [:]
    /// The placement and endpoint selector of every compiled policy.
    private var placements: [PolicyID: PolicyPlacement] = [:]
    private var selectors: [PolicyID: Selector] = [:]
    private var compiledProfiles: [String: CompiledUnit<ProfileProgram>] = [:]
    private var index = LabelIndex<SelectableKey>()
    /// For each compiled policy, the endpoints its selector matches (either direction).
    private var selectedEndpoints: [PolicyID: Set<EndpointKey>] = [:]
    /// The inverse: for each endpoint, the compiled policies whose selector matches it.
    private var selectingPolicies: [EndpointKey: Set<PolicyID>] = [:]
    private var programs: [EndpointKey: EndpointProgram] = [:]
    private var sets: [IPSetID: SetState] = [:]
    /// How many endpoint programs name each policy and profile: those with users are published.
    private var policyUsers: [PolicyID: Int] = [:]
    private var profileUsers: [String: Int] = [:]
    /// How many published policies and profiles reference each set: those with users are published.
    private var setUsers: [IPSetID: Int] = [:]
    /// The sets each published policy and profile references, as published.
    private var publishedPolicySets: [PolicyID: [IPSetID]] = [:]
    private var publishedProfileSets: [String: [IPSetID]] = [:]

    /// What the updates of the current batch touched.
    private struct Pending {
        var objects: Set<SelectableKey> = []
        var policies: [PolicyID: ResolvedPolicy?] = [:]
        var profiles: Set<String> = []
        var tiers: Set<String> = []
    }

    /// What the end of a batch changed, for publishing.
    private struct Touched {
        var sets: Set<IPSetID> = []
        var policies: Set<PolicyID> = []
        var profiles: Set<String> = []
        var endpoints: Set<EndpointKey> = []
    }

    public init() {}

    /// Applies `updates` in order and returns the combined delta.
    @discardableResult
    public mutating func apply(_ updates: [PolicyUpdate]) -> PolicyDelta {
        var pending = Pending()
        for update in updates {
            switch update {
            case .upsert(let resource):
                state.upsert(resource)
                note(resource.key, in: &pending)
            case .delete(let key):
                state.delete(key)
                note(key, in: &pending)
            }
        }
        // Resolved at the end, once: the last version of each policy counts.
        for id in pending.policies.keys { pending.policies[id] = resolvedPolicy(id) }
        return settle(pending)
    }

    @discardableResult
    public mutating func upsert(_ resource: PolicyResource) -> PolicyDelta { apply([.upsert(resource)]) }

    @discardableResult
    public mutating func delete(_ key: PolicyResourceKey) -> PolicyDelta { apply([.delete(key)]) }

    // MARK: - What each kind of change touches

    private func note(_ key: PolicyResourceKey, in pending: inout Pending) {
        switch key.kind {
        case .workloadEndpoint:
            pending.objects.insert(.workloadEndpoint(key.name))
        case .hostEndpoint:
            pending.objects.insert(.hostEndpoint(key.name.name))
        case .networkSet:
            pending.objects.insert(.networkSet(key.name))
        case .globalNetworkSet:
            pending.objects.insert(.globalNetworkSet(key.name.name))
        case .kubernetesNamespace:
            // The namespace's labels reach its endpoints (those naming kns.<namespace>) and
            // network sets as `pcns.*`.
            let profile = "kns.\(key.name.name)"
            pending.profiles.insert(profile)
            for (name, endpoint) in state.workloadEndpoints where state.profileNames(of: endpoint).contains(profile) {
                pending.objects.insert(.workloadEndpoint(name))
            }
            for name in state.networkSets.keys where name.namespace == key.name.name {
                pending.objects.insert(.networkSet(name))
            }
        case .profile:
            pending.profiles.insert(key.name.name)
            for (name, endpoint) in state.workloadEndpoints
            where state.profileNames(of: endpoint).contains(key.name.name) {
                pending.objects.insert(.workloadEndpoint(name))
            }
            for (name, endpoint) in state.hostEndpoints where state.profileNames(of: endpoint).contains(key.name.name) {
                pending.objects.insert(.hostEndpoint(name))
            }
        case .networkPolicy, .globalNetworkPolicy:
            pending.policies[key.name] = .some(nil)
        case .kubernetesNetworkPolicy:
            let id = PolicyID(namespace: key.name.namespace, name: KubernetesPolicyConversion.calicoName(key.name.name))
            pending.policies[id] = .some(nil)
        case .tier:
            pending.tiers.insert(key.name.name)
        default:
            break
        }
    }

    /// The policy named `id` in the current state, Kubernetes ones converted.
    private func resolvedPolicy(_ id: PolicyID) -> ResolvedPolicy? {
        guard let namespace = id.namespace else {
            return state.globalNetworkPolicies[id.name].map(ResolvedPolicy.init)
        }
        if id.name.hasPrefix(KubernetesPolicyConversion.namePrefix) {
            let name = ResourceName(
                namespace: namespace, name: String(id.name.dropFirst(KubernetesPolicyConversion.namePrefix.count)))
            if let policy = state.kubernetesNetworkPolicies[name] {
                return ResolvedPolicy(KubernetesPolicyConversion.convert(policy))
            }
        }
        return state.networkPolicies[id].map(ResolvedPolicy.init)
    }

    // MARK: - Settling a batch

    private mutating func settle(_ pending: Pending) -> PolicyDelta {
        var touched = Touched()
        // 1. Labels of the touched objects, into the index.
        for key in pending.objects { index.update(key, labels: state.labels(of: key)) }
        // 2. Recompile touched policies and profiles; new sets are filled from the index.
        var oldUnits: [[IPSetID: IPSetDefinition]] = []
        for (id, resolved) in pending.policies {
            if let old = compiledPolicies.removeValue(forKey: id) { oldUnits.append(old.sets) }
            placements[id] = nil
            selectors[id] = nil
            problems[id.description] = nil
            touched.policies.insert(id)
            guard let resolved else { continue }
            if let problem = resolved.problem { problems[id.description] = problem }
            switch ProgramCompiler.compile(resolved) {
            case .success(let unit):
                compiledPolicies[id] = unit
                placements[id] = resolved.placement
                selectors[id] = resolved.endpointSelector
                retain(unit.sets, touched: &touched)
            case .failure(let problem):
                problems[id.description] = problem.description
            case nil:
                break
            }
        }
        for name in pending.profiles {
            if let old = compiledProfiles.removeValue(forKey: name) { oldUnits.append(old.sets) }
            problems["profile \(name)"] = nil
            touched.profiles.insert(name)
            guard let profile = state.profile(named: name) else { continue }
            switch ProgramCompiler.compile(profile) {
            case .success(let unit):
                compiledProfiles[name] = unit
                retain(unit.sets, touched: &touched)
            case .failure(let problem):
                problems["profile \(name)"] = problem.description
            }
        }
        // Released after the new units are retained, so a set both keep is not refilled.
        for sets in oldUnits { release(sets) }
        // 3. The touched objects against every set.
        if !pending.objects.isEmpty {
            for id in Array(sets.keys) where rematch(id, pending.objects) { touched.sets.insert(id) }
        }
        // 4. Which policies select which endpoints: changed policies against every endpoint,
        //    touched endpoints against every policy.
        var stalePrograms: Set<EndpointKey> = []
        for id in pending.policies.keys {
            var now: Set<EndpointKey> = []
            if let selector = selectors[id] {
                now = Set(index.matching(selector).compactMap(\.endpoint))
            }
            setSelection(of: id, to: now, changed: &stalePrograms)
        }
        let endpoints = Set(pending.objects.compactMap(\.endpoint))
        if endpoints.count > 8 {
            // Many endpoints (a batch load): each policy's candidates among them, from the index.
            let touchedObjects = Set(endpoints.map(SelectableKey.init))
            for (id, selector) in selectors {
                let now = Set(index.matching(selector, within: touchedObjects).compactMap(\.endpoint))
                let before = selectedEndpoints[id] ?? []
                let was = before.intersection(endpoints)
                if was != now {
                    setSelection(of: id, to: before.subtracting(endpoints).union(now), changed: &stalePrograms)
                }
            }
        } else if !endpoints.isEmpty {
            // A few endpoints (the usual update): every policy's selector on their labels.
            for (id, selector) in selectors {
                for name in endpoints {
                    let selects = index.matches(SelectableKey(name), selector)
                    if selects != (selectedEndpoints[id]?.contains(name) ?? false) {
                        setSelection(of: id, endpoint: name, selected: selects)
                    }
                }
            }
        }
        stalePrograms.formUnion(endpoints)
        // A tier's order or default action is in the programs of the endpoints its policies select.
        if !pending.tiers.isEmpty {
            for (id, placement) in placements where pending.tiers.contains(placement.tier) {
                stalePrograms.formUnion(selectedEndpoints[id] ?? [])
            }
        }
        // 5. Programs.
        for name in stalePrograms { rebuildProgram(name, touched: &touched) }
        return publish(touched)
    }

    /// Re-matches `objects` against set `id`; true when its members changed.
    private mutating func rematch(_ id: IPSetID, _ objects: Set<SelectableKey>) -> Bool {
        let definition = sets[id]!.definition
        let matched = Set(index.matching(definition.selector, within: objects))
        var changed = false
        for key in matched {
            let members = Membership.members(of: definition, from: key, state: state)
            if sets[id]!.setContribution(members, from: key) { changed = true }
        }
        // Former contributors among the objects that no longer match.
        let formers = sets[id]!.contributions.keys.filter { objects.contains($0) && !matched.contains($0) }
        for key in formers where sets[id]!.setContribution([], from: key) { changed = true }
        return changed
    }

    private mutating func setSelection(of id: PolicyID, to now: Set<EndpointKey>, changed: inout Set<EndpointKey>) {
        let before = selectedEndpoints[id] ?? []
        if before == now { return }
        for name in before.subtracting(now) {
            selectingPolicies[name]?.remove(id)
            if selectingPolicies[name]?.isEmpty == true { selectingPolicies[name] = nil }
            changed.insert(name)
        }
        for name in now.subtracting(before) {
            selectingPolicies[name, default: []].insert(id)
            changed.insert(name)
        }
        selectedEndpoints[id] = now.isEmpty ? nil : now
    }

    private mutating func setSelection(of id: PolicyID, endpoint name: EndpointKey, selected: Bool) {
        if selected {
            selectedEndpoints[id, default: []].insert(name)
            selectingPolicies[name, default: []].insert(id)
        } else {
            selectedEndpoints[id]?.remove(name)
            if selectedEndpoints[id]?.isEmpty == true { selectedEndpoints[id] = nil }
            selectingPolicies[name]?.remove(id)
            if selectingPolicies[name]?.isEmpty == true { selectingPolicies[name] = nil }
        }
    }

    private mutating func rebuildProgram(_ name: EndpointKey, touched: inout Touched) {
        let old = programs[name]
        let matching = (selectingPolicies[name] ?? []).compactMap { placements[$0] }
        let new = Membership.program(for: name, selectedBy: matching, state: state)
        if old == new { return }
        programs[name] = new
        touched.endpoints.insert(name)
        let oldPolicies = old.map(Self.policyIDs) ?? []
        let newPolicies = new.map(Self.policyIDs) ?? []
        for id in oldPolicies.subtracting(newPolicies) {
            policyUsers[id]! -= 1
            if policyUsers[id] == 0 {
                policyUsers[id] = nil
                touched.policies.insert(id)
            }
        }
        for id in newPolicies.subtracting(oldPolicies) {
            policyUsers[id, default: 0] += 1
            if policyUsers[id] == 1 { touched.policies.insert(id) }
        }
        let oldProfiles = Set(old?.profiles ?? [])
        let newProfiles = Set(new?.profiles ?? [])
        for profile in oldProfiles.subtracting(newProfiles) {
            profileUsers[profile]! -= 1
            if profileUsers[profile] == 0 {
                profileUsers[profile] = nil
                touched.profiles.insert(profile)
            }
        }
        for profile in newProfiles.subtracting(oldProfiles) {
            profileUsers[profile, default: 0] += 1
            if profileUsers[profile] == 1 { touched.profiles.insert(profile) }
        }
    }

    private static func policyIDs(_ program: EndpointProgram) -> Set<PolicyID> {
        Set(Direction.allCases.flatMap { program.tiers($0) }.flatMap(\.policies))
    }

    // MARK: - IP set reference counting

    private mutating func retain(_ definitions: [IPSetID: IPSetDefinition], touched: inout Touched) {
        for (id, definition) in definitions {
            if sets[id] == nil {
                sets[id] = filled(SetState(definition: definition))
                touched.sets.insert(id)
            }
            sets[id]!.references += 1
        }
    }

    private mutating func release(_ definitions: [IPSetID: IPSetDefinition]) {
        for id in definitions.keys {
            sets[id]!.references -= 1
            if sets[id]!.references == 0 { sets[id] = nil }
        }
    }

    /// A new set's members, from the objects the index finds for its selector.
    private func filled(_ set: SetState) -> SetState {
        var set = set
        for key in index.matching(set.definition.selector) {
            _ = set.setContribution(Membership.members(of: set.definition, from: key, state: state), from: key)
        }
        return set
    }

    // MARK: - Publishing

    /// Brings the touched parts of the published IR up to date and returns what changed. A
    /// policy or profile is published while some endpoint program names it and it compiled;
    /// a set while a published policy or profile references it.
    private mutating func publish(_ touched: Touched) -> PolicyDelta {
        var touched = touched
        var old = PolicyIR()
        var new = PolicyIR()
        for name in touched.endpoints {
            old.endpoints[name] = ir.endpoints[name]
            ir.endpoints[name] = programs[name]
            new.endpoints[name] = programs[name]
        }
        for id in touched.policies {
            old.policies[id] = ir.policies[id]
            let unit = policyUsers[id] != nil ? compiledPolicies[id] : nil
            ir.policies[id] = unit?.program
            new.policies[id] = unit?.program
            let before = publishedPolicySets.removeValue(forKey: id) ?? []
            let after = unit.map { Array($0.sets.keys) } ?? []
            publishedPolicySets[id] = unit == nil ? nil : after
            useSets(before: before, after: after, touched: &touched)
        }
        for name in touched.profiles {
            old.profiles[name] = ir.profiles[name]
            let unit = profileUsers[name] != nil ? compiledProfiles[name] : nil
            ir.profiles[name] = unit?.program
            new.profiles[name] = unit?.program
            let before = publishedProfileSets.removeValue(forKey: name) ?? []
            let after = unit.map { Array($0.sets.keys) } ?? []
            publishedProfileSets[name] = unit == nil ? nil : after
            useSets(before: before, after: after, touched: &touched)
        }
        for id in touched.sets {
            old.ipSets[id] = ir.ipSets[id]
            let published =
                setUsers[id] != nil ? sets[id].map { IPSet(definition: $0.definition, members: $0.members) } : nil
            ir.ipSets[id] = published
            new.ipSets[id] = published
        }
        return PolicyDelta.between(old, new)
    }

    private mutating func useSets(before: [IPSetID], after: [IPSetID], touched: inout Touched) {
        for id in before {
            setUsers[id]! -= 1
            if setUsers[id] == 0 { setUsers[id] = nil }
        }
        for id in after { setUsers[id, default: 0] += 1 }
        touched.sets.formUnion(before)
        touched.sets.formUnion(after)
    }
}
