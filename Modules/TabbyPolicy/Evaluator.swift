import TabbyCore

/// One end of a packet: a known workload or host endpoint (`EndpointKey.hostEndpoint(name)`),
/// or an address outside the cluster's endpoints.
public enum PacketPeer: Hashable, Sendable, CustomStringConvertible {
    case endpoint(EndpointKey)
    case address(IPAddress)

    public var description: String {
        switch self {
        case .endpoint(let key): return key.description
        case .address(let address): return address.description
        }
    }
}

/// The first packet of a connection, as policy sees it (established traffic is accepted
/// before policy, so only new connections are evaluated).
public struct Packet: Hashable, Sendable {
    public var source: PacketPeer
    public var destination: PacketPeer
    public var protocolNumber: Int
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    public var icmpType: Int?
    public var icmpCode: Int?

    public init(
        from source: PacketPeer,
        to destination: PacketPeer,
        protocol proto: IPProtocol,
        sourcePort: UInt16? = nil,
        destinationPort: UInt16? = nil,
        icmpType: Int? = nil,
        icmpCode: Int? = nil
    ) {
        self.source = source
        self.destination = destination
        self.protocolNumber = proto.protocolNumber ?? 0
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.icmpType = icmpType
        self.icmpCode = icmpCode
    }
}

public enum Verdict: String, Hashable, Sendable {
    case allow
    case deny
}

/// One step of an evaluation, in the order it happened.
public enum TraceStep: Hashable, Sendable, CustomStringConvertible {
    /// A policy rule was consulted; `matched` says whether it matched.
    case policyRule(
        Direction, EndpointKey, tier: String, policy: PolicyID, index: Int, action: RuleAction, matched: Bool)
    /// A policy's rules were all consulted without a verdict.
    case policyNoMatch(Direction, EndpointKey, tier: String, policy: PolicyID)
    /// No policy in the tier decided; the tier's default action applied (Deny: "default deny
    /// once selected").
    case tierDefault(Direction, EndpointKey, tier: String, action: TierSpec.DefaultAction)
    case profileRule(Direction, EndpointKey, profile: String, index: Int, action: RuleAction, matched: Bool)
    /// A profile the endpoint names does not exist (so it has no rules).
    case profileMissing(Direction, EndpointKey, profile: String)
    case noProfileMatched(Direction, EndpointKey)
    case unknownEndpoint(EndpointKey)
    case loopback(EndpointKey)
    /// Neither end is a workload or host endpoint: nothing here polices it.
    case notPoliced

    public var description: String {
        switch self {
        case .policyRule(let direction, let endpoint, let tier, let policy, let index, let action, let matched):
            return "\(direction.rawValue) \(endpoint): tier \(tier) policy \(policy) rule \(index) (\(action.rawValue))"
                + (matched ? " matched" : " no match")
        case .policyNoMatch(let direction, let endpoint, let tier, let policy):
            return "\(direction.rawValue) \(endpoint): tier \(tier) policy \(policy): no rule matched"
        case .tierDefault(let direction, let endpoint, let tier, let action):
            return action == .deny
                ? "\(direction.rawValue) \(endpoint): default deny of tier \(tier) once selected"
                : "\(direction.rawValue) \(endpoint): tier \(tier) default action Pass"
        case .profileRule(let direction, let endpoint, let profile, let index, let action, let matched):
            return "\(direction.rawValue) \(endpoint): profile \(profile) rule \(index) (\(action.rawValue))"
                + (matched ? " matched" : " no match")
        case .profileMissing(let direction, let endpoint, let profile):
            return "\(direction.rawValue) \(endpoint): profile \(profile) does not exist"
        case .noProfileMatched(let direction, let endpoint):
            return "\(direction.rawValue) \(endpoint): no profile matched"
        case .unknownEndpoint(let endpoint): return "unknown endpoint \(endpoint): dropped"
        case .loopback(let endpoint): return "loopback \(endpoint): allowed"
        case .notPoliced: return "neither end is a workload or host endpoint: not policed"
        }
    }
}

public struct Evaluation: Hashable, Sendable {
    public var verdict: Verdict
    public var trace: [TraceStep]
    /// The step that decided (the last one consulted).
    public var decidedBy: TraceStep? { trace.last }
}

/// The reference evaluator: runs the IR on one packet, the way every dataplane must.
public struct PolicyEvaluator: Sendable {
    public var ir: PolicyIR

    public init(_ ir: PolicyIR) { self.ir = ir }

    /// The source's egress, then the destination's ingress; both must allow. Traffic from an
    /// endpoint to itself is allowed without policy.
    public func evaluate(_ packet: Packet) -> Evaluation {
        var trace: [TraceStep] = []
        if case .endpoint(let source) = packet.source, packet.source == packet.destination {
            return Evaluation(verdict: .allow, trace: [.loopback(source)])
        }
        // The packet's family: that of a plain address at either end (a dual-stack endpoint then
        // uses its address of that family), else the source endpoint's first address's.
        var family: IPFamily? = nil
        for peer in [packet.source, packet.destination] {
            if case .address(let address) = peer, family == nil { family = address.family }
        }
        guard let sourceAddress = address(of: packet.source, family: family, trace: &trace),
            let destinationAddress = address(
                of: packet.destination, family: family ?? sourceAddress.family, trace: &trace)
        else { return Evaluation(verdict: .deny, trace: trace) }
        let flow = Flow(packet: packet, source: sourceAddress, destination: destinationAddress)
        var policed = false
        if case .endpoint(let key) = packet.source, let program = ir.endpoints[key] {
            policed = true
            if run(program, .egress, flow, &trace) == .deny { return Evaluation(verdict: .deny, trace: trace) }
        }
        if case .endpoint(let key) = packet.destination, let program = ir.endpoints[key] {
            policed = true
            if run(program, .ingress, flow, &trace) == .deny { return Evaluation(verdict: .deny, trace: trace) }
        }
        if !policed { trace.append(.notPoliced) }
        return Evaluation(verdict: .allow, trace: trace)
    }

    /// The peer's address; for a dual-stack endpoint, one of `family` when it has one.
    private func address(of peer: PacketPeer, family: IPFamily?, trace: inout [TraceStep]) -> IPAddress? {
        switch peer {
        case .address(let address): return address
        case .endpoint(let key):
            let addresses = ir.endpoints[key]?.addresses ?? []
            guard let address = addresses.first(where: { $0.family == family }) ?? addresses.first else {
                // Fail closed: an interface the IR does not know is dropped.
                trace.append(.unknownEndpoint(key))
                return nil
            }
            return address
        }
    }

    private struct Flow {
        var packet: Packet
        var source: IPAddress
        var destination: IPAddress
    }

    private func run(_ program: EndpointProgram, _ direction: Direction, _ flow: Flow, _ trace: inout [TraceStep])
        -> Verdict
    {
        let endpoint = program.endpoint
        tiers: for tier in program.tiers(direction) {
            for id in tier.policies {
                guard let policy = ir.policies[id] else { continue }
                for (index, rule) in policy.rules(direction).enumerated() {
                    let matched = matches(rule, flow)
                    trace.append(
                        .policyRule(
                            direction, endpoint, tier: tier.name, policy: id, index: index, action: rule.action,
                            matched: matched))
                    guard matched else { continue }
                    switch rule.action {
                    case .allow: return .allow
                    case .deny: return .deny
                    case .pass: continue tiers
                    case .log: continue
                    }
                }
                trace.append(.policyNoMatch(direction, endpoint, tier: tier.name, policy: id))
            }
            trace.append(.tierDefault(direction, endpoint, tier: tier.name, action: tier.defaultAction))
            if tier.defaultAction == .deny { return .deny }
        }
        for name in program.profiles {
            guard let profile = ir.profiles[name] else {
                trace.append(.profileMissing(direction, endpoint, profile: name))
                continue
            }
            profileRules: for (index, rule) in profile.rules(direction).enumerated() {
                let matched = matches(rule, flow)
                trace.append(
                    .profileRule(
                        direction, endpoint, profile: name, index: index, action: rule.action, matched: matched))
                guard matched else { continue }
                switch rule.action {
                case .allow: return .allow
                case .deny: return .deny
                case .pass: break profileRules
                case .log: continue
                }
            }
        }
        trace.append(.noProfileMatched(direction, endpoint))
        return .deny
    }

    /// Whether `rule` matches the flow.
    private func matches(_ rule: CompiledRule, _ flow: Flow) -> Bool {
        let packet = flow.packet
        if let version = rule.ipVersion, version != flow.source.family.rawValue { return false }
        if let proto = rule.protocolNumber, proto != packet.protocolNumber { return false }
        if let proto = rule.notProtocolNumber, proto == packet.protocolNumber { return false }
        if let icmp = rule.icmp, !matches(icmp, packet) { return false }
        if let icmp = rule.notICMP, matches(icmp, packet) { return false }
        return matches(
            rule.source, address: flow.source, port: packet.sourcePort, protocolNumber: packet.protocolNumber)
            && matches(
                rule.destination, address: flow.destination, port: packet.destinationPort,
                protocolNumber: packet.protocolNumber)
    }

    private func matches(_ icmp: ICMPMatch, _ packet: Packet) -> Bool {
        guard packet.protocolNumber == 1 || packet.protocolNumber == 58 else { return false }
        if let type = icmp.type, type != packet.icmpType { return false }
        if let code = icmp.code, code != packet.icmpCode { return false }
        return true
    }

    private func matches(_ entity: CompiledEntityMatch, address: IPAddress, port: UInt16?, protocolNumber: Int) -> Bool
    {
        if !entity.nets.isEmpty, !entity.nets.contains(where: { $0.contains(address) }) { return false }
        if entity.notNets.contains(where: { $0.contains(address) }) { return false }
        for id in entity.ipSets where !(ir.ipSets[id]?.contains(address) ?? false) { return false }
        for id in entity.notIPSets where ir.ipSets[id]?.contains(address) ?? false { return false }
        func inNamedSet(_ id: IPSetID, _ port: UInt16) -> Bool {
            ir.ipSets[id]?.contains(address, protocolNumber: protocolNumber, port: port) ?? false
        }
        if entity.hasPortMatch {
            guard let port else { return false }
            let numeric = entity.ports.contains { $0.contains(port) }
            if !numeric && !entity.namedPortSets.contains(where: { inNamedSet($0, port) }) { return false }
        }
        if entity.hasNotPortMatch, let port {
            if entity.notPorts.contains(where: { $0.contains(port) }) { return false }
            if entity.notNamedPortSets.contains(where: { inNamedSet($0, port) }) { return false }
        }
        return true
    }
}
