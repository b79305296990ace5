import TabbyCore
import Testing

@testable import TabbyPolicy

/// A small, seedable generator (SplitMix64) so a failing sequence can be replayed by its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Policies, sets, tiers and profiles the random sequences pick from.
private let calicoPool = Topology.manifest(
    """
    apiVersion: projectcalico.org/v3
    kind: Tier
    metadata: {name: security}
    spec: {order: 100, defaultAction: Pass}
    ---
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: security.gate}
    spec:
      tier: security
      selector: pod == 'a'
      ingress:
      - {action: Pass, source: {selector: pod == 'b'}}
      - {action: Deny, protocol: UDP, destination: {ports: [serve-81-udp]}}
    ---
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: y-no-c}
    spec:
      namespaceSelector: ns == 'y'
      selector: all()
      ingress:
      - {action: Deny, source: {selector: pod == 'c'}}
      - {action: Allow, source: {notSelector: team == 'blue'}}
    ---
    apiVersion: projectcalico.org/v3
    kind: NetworkPolicy
    metadata: {name: trusted, namespace: x}
    spec:
      selector: all()
      types: [Ingress, Egress]
      ingress:
      - {action: Allow, source: {selector: role == 'trusted'}}
      egress:
      - {action: Deny, destination: {selector: external == 'true'}}
      - {action: Allow, protocol: TCP, destination: {namespaceSelector: ns == 'z', ports: [serve-80-tcp, 81]}}
    ---
    apiVersion: projectcalico.org/v3
    kind: NetworkSet
    metadata: {name: trusted, namespace: x, labels: {role: trusted}}
    spec: {nets: [10.0.2.0/24]}
    ---
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkSet
    metadata: {name: external, labels: {external: 'true', role: trusted}}
    spec: {nets: [192.0.2.0/24, 10.0.1.0/24]}
    ---
    apiVersion: projectcalico.org/v3
    kind: NetworkPolicy
    metadata: {name: accounts, namespace: y}
    spec:
      selector: all()
      serviceAccountSelector: tier == 'data'
      ingress:
      - {action: Allow, source: {serviceAccounts: {names: [frontend]}}}
      - {action: Deny, source: {serviceAccounts: {selector: team == 'web'}, namespaceSelector: all()}}
    ---
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: ksa.y.db}
    spec: {labelsToApply: {pcsa.tier: data, pcsa.team: web}}
    ---
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: ksa.x.frontend}
    spec: {labelsToApply: {pcsa.team: web}}
    ---
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: hosts}
    spec:
      selector: has(host)
      types: [Ingress, Egress]
      ingress:
      - {action: Allow, protocol: TCP, source: {selector: pod == 'a'}, destination: {ports: [ssh]}}
      - {action: Allow, source: {namespaceSelector: global()}}
      egress:
      - {action: Deny, destination: {selector: role == 'gateway'}}
      - {action: Allow}
    ---
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: restricted}
    spec:
      labelsToApply: {team: blue}
      ingress:
      - {action: Allow, source: {selector: pod == 'a'}}
    """)

private let policyPool = kubernetesCases.flatMap { Topology.manifest($0.manifest) } + calicoPool

/// Applies a delta the way a dataplane would.
private func applying(_ delta: PolicyDelta, to ir: PolicyIR) -> PolicyIR {
    var ir = ir
    for set in delta.ipSetsCreated { ir.ipSets[set.id] = set }
    for (id, members) in delta.ipSetMembersAdded { ir.ipSets[id]?.members.formUnion(members) }
    for (id, members) in delta.ipSetMembersRemoved { ir.ipSets[id]?.members.subtract(members) }
    for id in delta.ipSetsRemoved { ir.ipSets[id] = nil }
    for program in delta.policiesAdded + delta.policiesReplaced { ir.policies[program.id] = program }
    for id in delta.policiesRemoved { ir.policies[id] = nil }
    for program in delta.profilesAdded + delta.profilesReplaced { ir.profiles[program.name] = program }
    for name in delta.profilesRemoved { ir.profiles[name] = nil }
    for program in delta.endpointsBound { ir.endpoints[program.endpoint] = program }
    for key in delta.endpointsRemoved { ir.endpoints[key] = nil }
    return ir
}

private func randomUpdate(_ random: inout SplitMix64, engine: PolicyEngine) -> PolicyUpdate {
    let namespaces = ["x", "y", "z", "w"]
    let pods = ["a", "b", "c", "d"]
    switch Int.random(in: 0..<11, using: &random) {
    case 9:
        // Add, relabel or move a host endpoint; its profile may lend it labels.
        var spec = HostEndpointSpec()
        spec.node = "node-1"
        spec.interfaceName = "eth\(Int.random(in: 0...1, using: &random))"
        spec.expectedIPs = ["192.168.0.\(Int.random(in: 1...3, using: &random))"]
        spec.profiles = Bool.random(using: &random) ? ["restricted"] : nil
        spec.ports = [EndpointPort(name: "ssh", protocol: .tcp, port: 22)]
        var labels = ["host": "node-1"]
        if Bool.random(using: &random) { labels["role"] = "gateway" }
        let name = ["h1", "h2"].randomElement(using: &random)!
        return .upsert(.hostEndpoint(HostEndpoint(metadata: ObjectMeta(name: name, labels: labels), spec: spec)))
    case 10:
        return .delete(PolicyResourceKey(.hostEndpoint, name: ["h1", "h2"].randomElement(using: &random)!))
    case 0, 1:
        // Add, replace or relabel a pod; addresses may collide, as during IP reuse.
        let namespace = namespaces.randomElement(using: &random)!
        var labels = ["pod": pods.randomElement(using: &random)!]
        if Bool.random(using: &random) { labels["team"] = "blue" }
        let address = IPAddress(
            "10.0.\(Int.random(in: 0...3, using: &random)).\(Int.random(in: 1...6, using: &random))")!
        let profiles = Bool.random(using: &random) ? ["restricted"] : nil
        let account = [nil, "frontend", "db"].randomElement(using: &random)!
        return .upsert(
            Topology.pod(
                namespace, pods.randomElement(using: &random)!, labels: labels, address: address, profiles: profiles,
                serviceAccount: account))
    case 2:
        guard let key = engine.state.workloadEndpoints.keys.randomElement(using: &random) else {
            return .upsert(Topology.namespace("x"))
        }
        return .delete(PolicyResourceKey(.workloadEndpoint, namespace: key.namespace, name: key.name))
    case 3:
        let name = namespaces.randomElement(using: &random)!
        return .upsert(Topology.namespace(name, labels: ["ns": namespaces.randomElement(using: &random)!]))
    case 4:
        return .delete(PolicyResourceKey(.kubernetesNamespace, name: namespaces.randomElement(using: &random)!))
    case 5, 6:
        return .upsert(policyPool.randomElement(using: &random)!)
    default:
        return .delete(policyPool.randomElement(using: &random)!.key)
    }
}

@Suite struct IncrementalTests {
    /// After every step of a random sequence, the maintained IR equals the IR compiled from
    /// scratch, and the reported delta turns the previous IR into the new one.
    @Test(arguments: 0..<40)
    func incrementalEqualsFromScratch(seed: Int) {
        var random = SplitMix64(state: UInt64(seed) &* 7919)
        var engine = PolicyEngine()
        var published = PolicyIR()
        let initial = engine.apply(Topology.resources.map { .upsert($0) })
        published = applying(initial, to: published)
        #expect(published == engine.ir)
        for step in 0..<60 {
            let count = Int.random(in: 1...3, using: &random)
            var updates: [PolicyUpdate] = []
            for _ in 0..<count { updates.append(randomUpdate(&random, engine: engine)) }
            let delta = engine.apply(updates)
            let scratch = PolicyIR.compile(engine.state)
            // The label index only narrows: compiling by plain scans gives the same IR.
            let scanned = PolicyIR.compile(engine.state, matching: .scan)
            #expect(scanned == scratch, "seed \(seed) step \(step): indexed and scanned compiles differ")
            let agrees = engine.ir == scratch && scanned == scratch
            #expect(agrees, "seed \(seed) step \(step) \(updates): \(PolicyDelta.between(scratch, engine.ir))")
            published = applying(delta, to: published)
            let reproduces = published == engine.ir
            #expect(reproduces, "seed \(seed) step \(step): the delta does not reproduce the IR")
            if !agrees || !reproduces { return }
        }
    }

    @Test func unchangedUpdateGivesEmptyDelta() {
        var engine = Topology.engine(Topology.manifest(kubernetesCases[2].manifest))
        #expect(engine.upsert(Topology.pod("x", "b")).isEmpty)
        #expect(engine.upsert(Topology.namespace("y")).isEmpty)
    }

    @Test func policyChangeRebindsOnlyTheEndpointsItSelects() {
        var engine = Topology.engine([])
        let policy = Topology.manifest(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: only-a, namespace: x}
            spec:
              selector: pod == 'a'
              ingress:
              - {action: Allow, source: {namespaceSelector: ns == 'y'}}
            """)
        let delta = engine.apply(policy.map { .upsert($0) })
        #expect(delta.endpointsBound.map(\.endpoint) == [EndpointKey(namespace: "x", name: "a")])
        #expect(delta.policiesAdded.map(\.id) == [PolicyID(namespace: "x", name: "only-a")])
        #expect(delta.ipSetsCreated.count == 1)
        #expect(delta.ipSetsCreated.first?.members.count == 3)
        // Deleting it unbinds the same endpoint and removes what only it used.
        let removal = engine.delete(policy[0].key)
        #expect(removal.endpointsBound.map(\.endpoint) == [EndpointKey(namespace: "x", name: "a")])
        #expect(removal.policiesRemoved == [PolicyID(namespace: "x", name: "only-a")])
        #expect(removal.ipSetsRemoved.count == 1)
        #expect(engine.ir == PolicyIR.compile(engine.state))
    }

    @Test func newPodJoinsSetsAndGetsAProgram() {
        var engine = Topology.engine(Topology.manifest(kubernetesCases[2].manifest))
        let delta = engine.upsert(Topology.pod("y", "d", address: IPAddress("10.0.1.9")!))
        #expect(delta.endpointsBound.map(\.endpoint) == [EndpointKey(namespace: "y", name: "d")])
        #expect(delta.ipSetMembersAdded.values.flatMap { $0 } == [.net(CIDR("10.0.1.9/32")!)])
        #expect(delta.policiesAdded.isEmpty && delta.policiesReplaced.isEmpty && delta.ipSetsCreated.isEmpty)
    }
}
