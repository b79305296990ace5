import Foundation
import TabbyCore
import TabbyDataplane
import TabbyPolicy

/// The policy IR as nftables objects (docs/dataplanes.md, "nftables"):
///
/// - base chains `forward`, `input`, `output` (filter, priority 0, policy accept): established and
///   related accepted first, invalid dropped, then the workload's egress through the `from-wl`
///   verdict map (`iifname : jump fw-<if>`) and the destination's ingress through `to-wl`
///   (`oifname : jump tw-<if>`); a packet from or to a `cali` interface that no map entry names
///   is dropped (fail closed); failsafe ports stay open on the host's other interfaces;
/// - per endpoint and direction a chain that walks the tiers (jumping to policy chains while
///   neither the accept nor the pass mark is set), applies each tier's default action, then the
///   profiles, then drops;
/// - per policy and direction a chain (`pi-`/`po-` + hash) of the compiled rules, shared by every
///   endpoint the policy selects: Allow sets the accept mark and returns, Pass the pass mark, Deny
///   drops, Log logs and continues;
/// - IP sets as named sets per family (`s-…-v4`, interval sets of merged CIDRs; named ports as
///   `address . protocol . port` sets), so membership changes are element updates only.
public enum NftCompiler {
    public static func compile(
        _ ir: PolicyIR, configuration: DataplaneConfiguration = .calicoDefaults, nat: OutgoingNAT = .none
    ) -> NftPlan {
        var plan = NftPlan()
        addOutgoingNAT(nat, to: &plan)
        let prefix = configuration.workloadInterfacePrefix
        let accept = NftPlan.acceptMark
        let both = NftPlan.acceptMark | NftPlan.passMark

        for set in ir.ipSets.values {
            for (name, planSet) in sets(for: set) { plan.sets[name] = planSet }
        }
        plan.sets["failsafe-in"] = NftPlanSet(
            kind: .protocolPort,
            elements: Set(configuration.failsafeInbound.map { "\($0.protocolNumber) . \($0.port)" }))
        plan.sets["failsafe-out"] = NftPlanSet(
            kind: .protocolPort,
            elements: Set(configuration.failsafeOutbound.map { "\($0.protocolNumber) . \($0.port)" }))

        var fromWorkload: [String: String] = [:]
        var toWorkload: [String: String] = [:]
        // Host endpoints are not dispatched like pods (their interfaces carry the node's own and
        // forwarded traffic): programming them is not in this backend yet, so they are left out
        // rather than treated as workloads.
        for program in ir.endpoints.values where program.kind == .workload {
            guard let interface = program.interfaceName else { continue }
            let egress = "fw-\(interface)"
            let ingress = "tw-\(interface)"
            plan.chains[egress] = endpointChain(program, .egress, ir: ir)
            plan.chains[ingress] = endpointChain(program, .ingress, ir: ir)
            fromWorkload[interface] = egress
            toWorkload[interface] = ingress
        }
        plan.maps["from-wl"] = fromWorkload
        plan.maps["to-wl"] = toWorkload

        for policy in ir.policies.values {
            plan.chains[chainName(policy: policy.id, .ingress)] = ruleChain(
                policy.ingress, origin: "policy \(policy.id)")
            plan.chains[chainName(policy: policy.id, .egress)] = ruleChain(policy.egress, origin: "policy \(policy.id)")
        }
        for profile in ir.profiles.values {
            plan.chains[chainName(profile: profile.name, .ingress)] = ruleChain(
                profile.ingress, origin: "profile \(profile.name)")
            plan.chains[chainName(profile: profile.name, .egress)] = ruleChain(
                profile.egress, origin: "profile \(profile.name)")
        }

        let tracked: [NftPlanRule] = [
            NftPlanRule([.ctState(established: true, related: true, invalid: false, new: false)], .accept),
            NftPlanRule([.ctState(established: false, related: false, invalid: true, new: false)], .drop),
        ]
        let egress: [NftPlanRule] = [
            NftPlanRule([], .clearMark(both)),
            NftPlanRule([], .dispatch(map: "from-wl", inbound: true)),
            NftPlanRule(
                [.iifnamePrefix(prefix), .markZero(mask: accept, zero: true)], .drop,
                comment: "unknown workload interface or egress denied"),
        ]
        let ingress: [NftPlanRule] = [
            NftPlanRule([], .clearMark(both)),
            NftPlanRule([], .dispatch(map: "to-wl", inbound: false)),
            NftPlanRule(
                [.oifnamePrefix(prefix), .markZero(mask: accept, zero: true)], .drop,
                comment: "unknown workload interface or ingress denied"),
        ]
        plan.chains["forward"] = NftPlanChain(
            base: .init(hook: .forward, priority: 0, policy: .accept), rules: tracked + egress + ingress)
        var toHost: [NftPlanRule] = []
        switch configuration.endpointToHostAction {
        case .drop: toHost = [NftPlanRule([.iifnamePrefix(prefix)], .drop, comment: "workload to host: Drop")]
        case .accept: toHost = [NftPlanRule([.iifnamePrefix(prefix)], .accept, comment: "workload to host: Accept")]
        case .return: break
        }
        plan.chains["input"] = NftPlanChain(
            base: .init(hook: .input, priority: 0, policy: .accept),
            rules: tracked + [
                NftPlanRule(
                    [.notIifnamePrefix(prefix), .protocolPortInSet(set: "failsafe-in", source: false)], .accept,
                    comment: "failsafe")
            ] + egress + toHost)
        plan.chains["output"] = NftPlanChain(
            base: .init(hook: .output, priority: 0, policy: .accept),
            rules: tracked + [
                NftPlanRule(
                    [.notOifnamePrefix(prefix), .protocolPortInSet(set: "failsafe-out", source: false)], .accept,
                    comment: "failsafe")
            ] + ingress)
        return plan
    }

    /// `natOutgoing`: a nat chain at postrouting that masquerades traffic from a NAT pool to any
    /// address outside every pool.
    static func addOutgoingNAT(_ nat: OutgoingNAT, to plan: inout NftPlan) {
        guard !nat.natPools.isEmpty else { return }
        var rules: [NftPlanRule] = []
        for (family, version, suffix) in [(NftFamily.ipv4, IPFamily.v4, "v4"), (.ipv6, .v6, "v6")] {
            let natPools = nat.natPools.filter { $0.family == version }
            guard !natPools.isEmpty else { continue }
            let all = nat.allPools.filter { $0.family == version }
            plan.sets["pools-nat-\(suffix)"] = NftPlanSet(
                kind: version == .v4 ? .ipv4Net : .ipv6Net, elements: Set(merged(natPools).map(\.description)))
            plan.sets["pools-all-\(suffix)"] = NftPlanSet(
                kind: version == .v4 ? .ipv4Net : .ipv6Net, elements: Set(merged(all + natPools).map(\.description)))
            rules.append(
                NftPlanRule(
                    [
                        .nfproto(family),
                        .addressInSet(source: true, family: family, set: "pools-nat-\(suffix)", negated: false),
                        .addressInSet(source: false, family: family, set: "pools-all-\(suffix)", negated: true),
                    ], .masquerade, comment: "natOutgoing"))
        }
        plan.chains["nat-outgoing"] = NftPlanChain(
            base: .init(hook: .postrouting, priority: 100, policy: .accept, type: .nat), rules: rules)
    }

    // MARK: Names

    /// Set names: `s-<hash>-v4` from the IR's `s:<hash>` (the same on every node and restart).
    public static func setName(_ id: IPSetID, _ family: NftFamily) -> String {
        id.rawValue.replacingOccurrences(of: ":", with: "-") + (family == .ipv4 ? "-v4" : "-v6")
    }

    public static func chainName(policy: PolicyID, _ direction: Direction) -> String {
        (direction == .ingress ? "pi-" : "po-") + hash(policy.description)
    }

    public static func chainName(profile: String, _ direction: Direction) -> String {
        (direction == .ingress ? "pri-" : "pro-") + hash(profile)
    }

    static func hash(_ text: String) -> String {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01b3
        }
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    // MARK: Sets

    static func sets(for set: IPSet) -> [(String, NftPlanSet)] {
        var nets4: [CIDR] = []
        var nets6: [CIDR] = []
        var ports4: Set<String> = []
        var ports6: Set<String> = []
        for member in set.members {
            switch member {
            case .net(let cidr):
                if cidr.family == .v4 { nets4.append(cidr) } else { nets6.append(cidr) }
            case .addressPort(let address, let proto, let port):
                let element = "\(address) . \(proto) . \(port)"
                if address.family == .v4 { ports4.insert(element) } else { ports6.insert(element) }
            }
        }
        if set.definition.namedPort != nil {
            return [
                (setName(set.id, .ipv4), NftPlanSet(kind: .ipv4AddressProtocolPort, elements: ports4)),
                (setName(set.id, .ipv6), NftPlanSet(kind: .ipv6AddressProtocolPort, elements: ports6)),
            ]
        }
        return [
            (setName(set.id, .ipv4), NftPlanSet(kind: .ipv4Net, elements: Set(merged(nets4).map(\.description)))),
            (setName(set.id, .ipv6), NftPlanSet(kind: .ipv6Net, elements: Set(merged(nets6).map(\.description)))),
        ]
    }

    /// Drops every CIDR contained in another, so no two elements of an interval set overlap
    /// (the kernel refuses overlaps with EEXIST; Calico once livelocked on this).
    public static func merged(_ cidrs: [CIDR]) -> [CIDR] {
        // Sorted by first address, widest first on ties: a CIDR is covered by another iff it lies
        // inside the last one kept (CIDRs nest or are disjoint), so one sweep suffices.
        let sorted = cidrs.sorted { left, right in
            left.network != right.network ? left.network < right.network : left.prefixLength < right.prefixLength
        }
        var result: [CIDR] = []
        for cidr in sorted {
            if let last = result.last, last.contains(cidr) { continue }
            result.append(cidr)
        }
        return result
    }

    // MARK: Chains

    static func endpointChain(_ program: EndpointProgram, _ direction: Direction, ir: PolicyIR) -> NftPlanChain {
        let accept = NftPlan.acceptMark
        let pass = NftPlan.passMark
        var rules = [NftPlanRule([], .clearMark(accept | pass))]
        for tier in program.tiers(direction) {
            rules.append(NftPlanRule([], .clearMark(pass)))
            for policy in tier.policies where ir.policies[policy] != nil {
                rules.append(
                    NftPlanRule(
                        [.markZero(mask: accept | pass, zero: true)], .jump(chainName(policy: policy, direction)),
                        comment: "policy \(policy)"))
            }
            rules.append(NftPlanRule([.markZero(mask: accept, zero: false)], .return))
            if tier.defaultAction == .deny {
                rules.append(
                    NftPlanRule(
                        [.markZero(mask: pass, zero: true)], .drop, comment: "default deny of tier \(tier.name)"))
            }
        }
        for profile in program.profiles where ir.profiles[profile] != nil {
            rules.append(NftPlanRule([], .jump(chainName(profile: profile, direction)), comment: "profile \(profile)"))
            rules.append(NftPlanRule([.markZero(mask: accept, zero: false)], .return))
        }
        rules.append(NftPlanRule([], .drop, comment: "no profile matched"))
        return NftPlanChain(rules: rules)
    }

    static func ruleChain(_ rules: [CompiledRule], origin: String) -> NftPlanChain {
        var chain = NftPlanChain()
        for (index, rule) in rules.enumerated() {
            let verdict: PlanVerdict
            switch rule.action {
            case .allow: verdict = .markReturn(NftPlan.acceptMark)
            case .deny: verdict = .drop
            case .pass: verdict = .markReturn(NftPlan.passMark)
            case .log: verdict = .log("tabby \(origin) rule \(index) ")
            }
            for matches in expand(rule) {
                chain.rules.append(NftPlanRule(matches, verdict, comment: "\(origin) rule \(index)"))
            }
        }
        return chain
    }

    /// One compiled rule as the nft rules whose union it is: a rule ORs its nets, ports and
    /// named-port sets, and an `inet` rule matches addresses of one family, so each combination is
    /// one nft rule. Returns none when the rule cannot match at all (e.g. IPv6 nets on an IPv4-only
    /// rule).
    static func expand(_ rule: CompiledRule) -> [[PlanMatch]] {
        var common: [PlanMatch] = []
        if let proto = rule.protocolNumber { common.append(.l4proto(proto)) }
        if let proto = rule.notProtocolNumber { common.append(.notL4proto(proto)) }

        let addressed =
            rule.ipVersion != nil || rule.icmp != nil || rule.notICMP != nil
            || [rule.source, rule.destination].contains { match in
                !match.nets.isEmpty || !match.notNets.isEmpty || !match.ipSets.isEmpty || !match.notIPSets.isEmpty
                    || !match.namedPortSets.isEmpty || !match.notNamedPortSets.isEmpty
            }
        var families: [NftFamily?] = [nil]
        if addressed {
            switch rule.ipVersion {
            case 4: families = [.ipv4]
            case 6: families = [.ipv6]
            default:
                if rule.protocolNumber == 1 {
                    families = [.ipv4]
                } else if rule.protocolNumber == 58 {
                    families = [.ipv6]
                } else {
                    families = [.ipv4, .ipv6]
                }
            }
        }
        var result: [[PlanMatch]] = []
        for family in families {
            var base = common
            if let family {
                base.insert(.nfproto(family), at: 0)
                if let icmp = rule.icmp, icmp.type != nil {
                    base.append(
                        .icmp(
                            version6: family == .ipv6, type: UInt8(icmp.type ?? 0), code: icmp.code.map(UInt8.init),
                            negated: false))
                }
                if let icmp = rule.notICMP, icmp.type != nil {
                    base.append(
                        .icmp(
                            version6: family == .ipv6, type: UInt8(icmp.type ?? 0), code: icmp.code.map(UInt8.init),
                            negated: true))
                }
            }
            var alternatives: [[PlanMatch]] = [base]
            for (source, match) in [(true, rule.source), (false, rule.destination)] {
                guard let next = entityAlternatives(match, source: source, family: family) else {
                    alternatives = []
                    break
                }
                alternatives = alternatives.flatMap { prefix in next.map { prefix + $0 } }
            }
            result += alternatives
        }
        return result
    }

    /// The alternatives (ORed) for one side's match, each a list of ANDed matches; nil when the
    /// side cannot match in this family.
    static func entityAlternatives(_ match: CompiledEntityMatch, source: Bool, family: NftFamily?) -> [[PlanMatch]]? {
        var fixed: [PlanMatch] = []
        if let family {
            let version: IPFamily = family == .ipv4 ? .v4 : .v6
            for cidr in match.notNets where cidr.family == version {
                fixed.append(.address(source: source, cidr, negated: true))
            }
            for set in match.ipSets {
                fixed.append(.addressInSet(source: source, family: family, set: setName(set, family), negated: false))
            }
            for set in match.notIPSets {
                fixed.append(.addressInSet(source: source, family: family, set: setName(set, family), negated: true))
            }
            for set in match.notNamedPortSets {
                fixed.append(
                    .addressProtocolPortInSet(source: source, family: family, set: setName(set, family), negated: true))
            }
        }
        for range in match.notPorts {
            fixed.append(.port(source: source, lower: range.lower, upper: range.upper, negated: true))
        }
        var netAlternatives: [[PlanMatch]] = [[]]
        if !match.nets.isEmpty {
            guard let family else { return nil }
            let version: IPFamily = family == .ipv4 ? .v4 : .v6
            let nets = match.nets.filter { $0.family == version }
            if nets.isEmpty { return nil }
            netAlternatives = nets.map { [.address(source: source, $0, negated: false)] }
        }
        var portAlternatives: [[PlanMatch]] = [[]]
        if match.hasPortMatch {
            portAlternatives =
                match.ports.map { [.port(source: source, lower: $0.lower, upper: $0.upper, negated: false)] }
            if let family {
                portAlternatives += match.namedPortSets.map {
                    [
                        .addressProtocolPortInSet(
                            source: source, family: family, set: setName($0, family), negated: false)
                    ]
                }
            }
            if portAlternatives.isEmpty { return nil }
        }
        return netAlternatives.flatMap { nets in portAlternatives.map { fixed + nets + $0 } }
    }
}
