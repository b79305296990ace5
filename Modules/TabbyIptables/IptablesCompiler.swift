import TabbyCore
import TabbyDataplane
import TabbyPolicy

/// The policy IR in Calico's iptables layout (docs/dataplanes.md, "iptables"):
///
/// - `filter` chains `cali-FORWARD`, `cali-INPUT`, `cali-OUTPUT`, each reached by one rule at the
///   top of the built-in chain of the same name: for packets from or to a workload interface
///   (`cali+`): established and related accepted, invalid dropped, then the source workload's
///   egress through `cali-from-wl-dispatch` and the destination's ingress through
///   `cali-to-wl-dispatch`, then accepted (Calico's "policy explicitly accepted"); failsafe ports
///   accepted on the host's other interfaces (`cali-failsafe-in`/`-out`);
/// - the dispatch chains match the interface name and `goto` the endpoint's chain, so its
///   `RETURN` comes back to `cali-FORWARD`; an interface no endpoint owns reaches the `DROP` at
///   the end of the dispatch chain (fail closed). With many endpoints they split into a prefix
///   tree on the interface name (`cali-from-wl-dispatch-0`, ...);
/// - per endpoint `cali-tw-<if>` (ingress, "to workload") and `cali-fw-<if>` (egress), walking
///   the tiers with the accept (0x10000) and pass (0x20000) mark bits as the nftables backend
///   does: they `RETURN` only when the direction is accepted and drop otherwise;
/// - per policy `cali-pi-<hash>`/`cali-po-<hash>`, per profile `cali-pri-`/`cali-pro-`: Allow
///   sets the accept mark and returns, Pass the pass mark, Deny drops, Log logs and continues;
/// - IP sets as ipsets `cali40s:<hash>` (`hash:net`), named ports as `cali40p:<hash>`
///   (`hash:ip,port`), IPv6 as `cali60…`; `notNets` of more than one CIDR as `cali40n:<hash>`;
/// - `natOutgoing`: `nat` chain `cali-POSTROUTING` (from POSTROUTING) to `cali-nat-outgoing`,
///   masquerading from `cali40masq-ipam-pools` to anything not in `cali40all-ipam-pools`.
///
/// IPv6 (`ip6tables`, `cali60` sets) is rendered only when an endpoint has an IPv6 address or a
/// NAT pool is IPv6; otherwise only IPv4 tables exist.
public enum IptablesCompiler {
    /// Mark bits (Calico's, within 0xffff0000): this direction accepted, this tier passed.
    public static let acceptMark: UInt32 = 0x1_0000
    public static let passMark: UInt32 = 0x2_0000
    /// A dispatch chain with more entries than this splits by the next character of the
    /// interface name (Calico's prefix tree), so a packet walks a few short chains, not a list of
    /// every endpoint.
    public static let dispatchFanOut = 16
    static let maxChainName = 28
    static let maxSetName = 31
    static let logPrefix = "tabby-packet: "

    public static func compile(
        _ ir: PolicyIR, configuration: DataplaneConfiguration = .calicoDefaults, nat: OutgoingNAT = .none
    ) -> IptablesPlan {
        var plan = IptablesPlan()
        let workloads = ir.endpoints.values.filter { $0.kind == .workload && $0.interfaceName != nil }
        var families: [IPFamily] = [.v4]
        if workloads.contains(where: { $0.addresses.contains { $0.family == .v6 } })
            || nat.natPools.contains(where: { $0.family == .v6 })
        {
            families.append(.v6)
        }
        for family in families {
            for set in ir.ipSets.values {
                let (name, ipset) = Self.set(for: set, family: family)
                plan.sets[name] = ipset
            }
            var compiler = FamilyCompiler(family: family, configuration: configuration, ir: ir)
            plan.tables[IptablesTableID(family, "filter")] = compiler.filterTable(workloads: workloads)
            for (name, set) in compiler.derivedSets { plan.sets[name] = set }
            if let (table, sets) = natTable(nat, family: family) {
                plan.tables[IptablesTableID(family, "nat")] = table
                for (name, set) in sets { plan.sets[name] = set }
            }
        }
        return plan
    }

    // MARK: Names

    /// `cali40s:<hash>` from the IR's `s:<hash>` (`cali60` for IPv6): the same on every node and
    /// restart, 24 characters.
    public static func setName(_ id: IPSetID, _ family: IPFamily) -> String {
        (family == .v4 ? "cali40" : "cali60") + id.rawValue
    }

    public static func chainName(policy: PolicyID, _ direction: Direction) -> String {
        (direction == .ingress ? "cali-pi-" : "cali-po-") + IptablesRule.hash(policy.description)
    }

    public static func chainName(profile: String, _ direction: Direction) -> String {
        (direction == .ingress ? "cali-pri-" : "cali-pro-") + IptablesRule.hash(profile)
    }

    public static func chainName(endpoint interface: String, _ direction: Direction) -> String {
        (direction == .ingress ? "cali-tw-" : "cali-fw-") + interface
    }

    // MARK: Sets

    static func set(for set: IPSet, family: IPFamily) -> (String, Ipset) {
        let name = setName(set.id, family)
        var elements: Set<String> = []
        if set.definition.namedPort != nil {
            for case .addressPort(let address, let proto, let port) in set.members where address.family == family {
                elements.insert(addressPortElement(address, proto, port))
            }
            return (name, Ipset(kind: .addressPort, family: family, elements: elements))
        }
        for case .net(let cidr) in set.members where cidr.family == family {
            elements.formUnion(netElements(cidr))
        }
        return (name, Ipset(kind: .net, family: family, elements: elements))
    }

    /// `hash:net` refuses a /0: it is stored as its two halves.
    static func netElements(_ cidr: CIDR) -> [String] {
        guard cidr.prefixLength == 0 else { return [cidr.description] }
        let half = cidr.family == .v4 ? "128.0.0.0" : "8000::"
        return ["\(cidr.network)/1", "\(half)/1"]
    }

    static func addressPortElement(_ address: IPAddress, _ proto: Int, _ port: UInt16) -> String {
        let name: String
        switch proto {
        case 6: name = "tcp"
        case 17: name = "udp"
        case 132: name = "sctp"
        case 136: name = "udplite"
        default: name = String(proto)
        }
        return "\(address),\(name):\(port)"
    }

    // MARK: NAT

    static func natTable(_ nat: OutgoingNAT, family: IPFamily) -> (IptablesTable, [String: Ipset])? {
        let natPools = nat.natPools.filter { $0.family == family }
        guard !natPools.isEmpty else { return nil }
        let prefix = family == .v4 ? "cali40" : "cali60"
        let masq = prefix + "masq-ipam-pools"
        let all = prefix + "all-ipam-pools"
        let sets = [
            masq: Ipset(kind: .net, family: family, elements: Set(natPools.flatMap(netElements))),
            all: Ipset(
                kind: .net, family: family,
                elements: Set((nat.allPools.filter { $0.family == family } + natPools).flatMap(netElements))),
        ]
        var table = IptablesTable()
        table.hooks["POSTROUTING"] = [IptablesRule([], "-j cali-POSTROUTING").text(chain: "POSTROUTING")]
        table.chains["cali-POSTROUTING"] = [IptablesRule([], "-j cali-nat-outgoing").text(chain: "cali-POSTROUTING")]
        table.chains["cali-nat-outgoing"] = [
            IptablesRule(["-m set --match-set \(masq) src", "-m set ! --match-set \(all) dst"], "-j MASQUERADE")
                .text(chain: "cali-nat-outgoing")
        ]
        return (table, sets)
    }
}

/// The filter table of one family.
struct FamilyCompiler {
    let family: IPFamily
    let configuration: DataplaneConfiguration
    let ir: PolicyIR
    /// Sets made for rules (`notNets` of several CIDRs), by name.
    var derivedSets: [String: Ipset] = [:]

    init(family: IPFamily, configuration: DataplaneConfiguration, ir: PolicyIR) {
        self.family = family
        self.configuration = configuration
        self.ir = ir
    }

    static func mark(_ bits: UInt32) -> String { "0x" + String(bits, radix: 16) }

    /// `-m mark --mark <value>/<mask>`.
    static func markIs(_ value: UInt32, mask: UInt32, negated: Bool = false) -> String {
        "-m mark \(negated ? "! " : "")--mark \(mark(value))/\(mark(mask))"
    }

    /// `-j MARK --set-xmark <value>/<mask>`: sets the bits of `mask` to those of `value`.
    static func setMark(_ value: UInt32, mask: UInt32) -> String {
        "-j MARK --set-xmark \(mark(value))/\(mark(mask))"
    }

    mutating func filterTable(workloads: [EndpointProgram]) -> IptablesTable {
        let wildcard = configuration.workloadInterfacePrefix + "+"
        var table = IptablesTable()
        func add(_ chain: String, _ rules: [IptablesRule]) {
            table.chains[chain] = rules.enumerated().map { $1.text(chain: chain, index: $0) }
        }

        // Endpoints: their chains and the dispatch trees that reach them.
        var interfaces: [String] = []
        for program in workloads {
            guard let interface = program.interfaceName else { continue }
            interfaces.append(interface)
            for direction in Direction.allCases {
                add(IptablesCompiler.chainName(endpoint: interface, direction), endpointChain(program, direction))
            }
        }
        for (root, direction) in [("cali-from-wl-dispatch", Direction.egress), ("cali-to-wl-dispatch", .ingress)] {
            for (name, rules) in dispatchChains(root, interfaces.sorted(), direction: direction) {
                add(name, rules)
            }
        }
        for policy in ir.policies.values {
            for direction in Direction.allCases {
                let name = IptablesCompiler.chainName(policy: policy.id, direction)
                add(name, ruleChain(policy.rules(direction)))
            }
        }
        for profile in ir.profiles.values {
            for direction in Direction.allCases {
                let name = IptablesCompiler.chainName(profile: profile.name, direction)
                add(name, ruleChain(profile.rules(direction)))
            }
        }

        let established = "-m conntrack --ctstate RELATED,ESTABLISHED"
        let invalid = "-m conntrack --ctstate INVALID"
        add(
            "cali-FORWARD",
            [
                .input(wildcard, [established], "-j ACCEPT"),
                .output(wildcard, [established], "-j ACCEPT"),
                .input(wildcard, [invalid], "-j DROP"),
                .output(wildcard, [invalid], "-j DROP"),
                .input(wildcard, [], "-j cali-from-wl-dispatch"),
                .output(wildcard, [], "-j cali-to-wl-dispatch"),
                // Back from the dispatch chains only when every direction that applies accepted.
                .input(wildcard, [], "-j ACCEPT"),
                .output(wildcard, [], "-j ACCEPT"),
            ])
        var input: [IptablesRule] = [
            .input(wildcard, [established], "-j ACCEPT"),
            .input(wildcard, [invalid], "-j DROP"),
            .input(wildcard, [], "-j cali-from-wl-dispatch"),
        ]
        switch configuration.endpointToHostAction {
        case .drop: input.append(.input(wildcard, [], "-j DROP"))
        case .accept: input.append(.input(wildcard, [], "-j ACCEPT"))
        case .return: break
        }
        var notWorkloadIn = IptablesRule.input(wildcard, [], "-j cali-failsafe-in")
        notWorkloadIn.inInterface?.negated = true
        input.append(notWorkloadIn)
        add("cali-INPUT", input)
        var notWorkloadOut = IptablesRule.output(wildcard, [], "-j cali-failsafe-out")
        notWorkloadOut.outInterface?.negated = true
        add(
            "cali-OUTPUT",
            [
                .output(wildcard, [established], "-j ACCEPT"),
                .output(wildcard, [invalid], "-j DROP"),
                .output(wildcard, [], "-j cali-to-wl-dispatch"),
                .output(wildcard, [], "-j ACCEPT"),
                notWorkloadOut,
            ])
        add("cali-failsafe-in", failsafe(configuration.failsafeInbound))
        add("cali-failsafe-out", failsafe(configuration.failsafeOutbound))
        for chain in ["FORWARD", "INPUT", "OUTPUT"] {
            table.hooks[chain] = [IptablesRule([], "-j cali-\(chain)").text(chain: chain)]
        }
        return table
    }

    func failsafe(_ ports: [DataplaneConfiguration.FailsafePort]) -> [IptablesRule] {
        ports.compactMap { port in
            let name = IptablesRule.protocolName(port.protocolNumber)
            guard [6, 17, 132].contains(port.protocolNumber) else { return nil }
            var rule = IptablesRule(["-m \(name) --dport \(port.port)"], "-j ACCEPT")
            rule.protocolNumber = .init(value: name)
            return rule
        }
    }

    /// The dispatch tree under `root`: a linear list while it is short, otherwise one child chain
    /// per next character of the interface names (`-i cali4+ -g cali-from-wl-dispatch-4`), within
    /// the 28-character limit on chain names. Only the root ends with a `DROP`: a child that does
    /// not match returns to its parent, whose remaining entries cannot match either.
    func dispatchChains(_ root: String, _ interfaces: [String], direction: Direction) -> [String: [IptablesRule]] {
        let prefix = configuration.workloadInterfacePrefix
        var chains: [String: [IptablesRule]] = [:]
        func entry(_ interface: String, _ target: String) -> IptablesRule {
            direction == .egress ? .input(interface, [], target) : .output(interface, [], target)
        }
        func build(_ name: String, _ names: [String], depth: Int) -> [IptablesRule] {
            let childLength = prefix.count + depth + 1
            let nameRoom = root.count + 1 + depth + 1 <= IptablesCompiler.maxChainName
            guard names.count > IptablesCompiler.dispatchFanOut, nameRoom,
                names.allSatisfy({ $0.hasPrefix(prefix) })
            else {
                return names.map { entry($0, "-g " + IptablesCompiler.chainName(endpoint: $0, direction)) }
            }
            var rules: [IptablesRule] = []
            let groups = Dictionary(grouping: names) { String($0.prefix(childLength)) }
            for key in groups.keys.sorted() {
                let members = groups[key]!.sorted()
                // A name no longer than the group's prefix is matched exactly, here.
                let exact = members.filter { $0.count <= childLength }
                let longer = members.filter { $0.count > childLength }
                rules += exact.map { entry($0, "-g " + IptablesCompiler.chainName(endpoint: $0, direction)) }
                guard !longer.isEmpty else { continue }
                if longer.count == 1 {
                    rules.append(
                        entry(longer[0], "-g " + IptablesCompiler.chainName(endpoint: longer[0], direction)))
                    continue
                }
                let child = root + "-" + String(key.dropFirst(prefix.count))
                chains[child] = build(child, longer, depth: depth + 1)
                rules.append(entry(key + "+", "-g " + child))
            }
            return rules
        }
        var rootRules = build(root, interfaces, depth: 0)
        rootRules.append(IptablesRule([], "-j DROP"))
        chains[root] = rootRules
        return chains
    }

    func endpointChain(_ program: EndpointProgram, _ direction: Direction) -> [IptablesRule] {
        let accept = IptablesCompiler.acceptMark
        let pass = IptablesCompiler.passMark
        var rules = [IptablesRule([], Self.setMark(0, mask: accept | pass))]
        for tier in program.tiers(direction) {
            rules.append(IptablesRule([], Self.setMark(0, mask: pass)))
            for policy in tier.policies where ir.policies[policy] != nil {
                rules.append(
                    IptablesRule(
                        [Self.markIs(0, mask: accept | pass)],
                        "-j " + IptablesCompiler.chainName(policy: policy, direction)
                    ))
            }
            rules.append(IptablesRule([Self.markIs(accept, mask: accept)], "-j RETURN"))
            if tier.defaultAction == .deny {
                rules.append(IptablesRule([Self.markIs(0, mask: pass)], "-j DROP"))
            }
        }
        let profiles = program.profiles.filter { ir.profiles[$0] != nil }
        if !profiles.isEmpty { rules.append(IptablesRule([], Self.setMark(0, mask: pass))) }
        for profile in profiles {
            rules.append(IptablesRule([], "-j " + IptablesCompiler.chainName(profile: profile, direction)))
            rules.append(IptablesRule([Self.markIs(accept, mask: accept)], "-j RETURN"))
        }
        rules.append(IptablesRule([], "-j DROP"))
        return rules
    }

    /// A policy's or profile's rules: each compiled rule becomes the iptables rules whose union
    /// it is; after an Allow or Pass, one rule returns if that rule's mark got set.
    mutating func ruleChain(_ compiled: [CompiledRule]) -> [IptablesRule] {
        var rules: [IptablesRule] = []
        for rule in compiled {
            let target: String
            var returnMark: UInt32?
            switch rule.action {
            case .allow:
                target = Self.setMark(IptablesCompiler.acceptMark, mask: IptablesCompiler.acceptMark)
                returnMark = IptablesCompiler.acceptMark
            case .pass:
                target = Self.setMark(IptablesCompiler.passMark, mask: IptablesCompiler.passMark)
                returnMark = IptablesCompiler.passMark
            case .deny: target = "-j DROP"
            case .log: target = "-j LOG --log-prefix \"\(IptablesCompiler.logPrefix)\""
            }
            let expanded = expand(rule).map { spec -> IptablesRule in
                var result = spec
                result.target = target
                return result
            }
            rules += expanded
            if let returnMark, !expanded.isEmpty {
                rules.append(IptablesRule([Self.markIs(returnMark, mask: returnMark)], "-j RETURN"))
            }
        }
        return rules
    }

    static let portProtocols: Set<Int> = [6, 17, 132, 136]

    /// The iptables rules (target left empty) whose union is `rule` in this family; none when it
    /// cannot match here (an IPv6 net in the IPv4 table, ICMPv6 in IPv4, ...).
    mutating func expand(_ rule: CompiledRule) -> [IptablesRule] {
        if let version = rule.ipVersion, version != family.rawValue { return [] }
        let sides = [(true, rule.source), (false, rule.destination)]
        let needsPorts = sides.contains { !$0.1.ports.isEmpty || !$0.1.notPorts.isEmpty }
        var protocols: [Int?]
        if let proto = rule.protocolNumber {
            if proto == 1 && family == .v6 || proto == 58 && family == .v4 { return [] }
            if rule.notProtocolNumber == proto { return [] }
            protocols = [proto]
        } else if rule.icmp?.type != nil || rule.notICMP?.type != nil {
            protocols = [family == .v4 ? 1 : 58]
        } else if needsPorts {
            // Port matches need a protocol in iptables: every protocol with ports.
            protocols = [6, 17, 132].filter { $0 != rule.notProtocolNumber }
        } else {
            protocols = [nil]
        }

        var result: [IptablesRule] = []
        for proto in protocols {
            var base = IptablesRule([], "")
            if let proto {
                base.protocolNumber = .init(value: IptablesRule.protocolName(proto))
            } else if let not = rule.notProtocolNumber {
                base.protocolNumber = .init(value: IptablesRule.protocolName(not), negated: true)
            }
            var alternatives = [base]
            for (source, match) in sides {
                guard let next = entityAlternatives(match, source: source, protocolNumber: proto) else {
                    alternatives = []
                    break
                }
                alternatives = alternatives.flatMap { prefix in next.map { prefix.merged(with: $0) } }
            }
            var icmpMatches: [String] = []
            let icmpModule = family == .v4 ? "-m icmp" : "-m icmp6"
            let icmpOption = family == .v4 ? "--icmp-type" : "--icmpv6-type"
            if proto == 1 || proto == 58 {
                for (icmp, negated) in [(rule.icmp, false), (rule.notICMP, true)] {
                    guard let icmp, let type = icmp.type else { continue }
                    let value = icmp.code.map { "\(type)/\($0)" } ?? "\(type)"
                    icmpMatches.append("\(icmpModule) \(negated ? "! " : "")\(icmpOption) \(value)")
                }
            }
            result += alternatives.map { alternative in
                var rule = alternative
                rule.matches += icmpMatches
                return rule
            }
        }
        return result
    }

    /// The alternatives (ORed) for one side of a rule, each the options and matches it ANDs; nil
    /// when this side cannot match in this family.
    mutating func entityAlternatives(_ match: CompiledEntityMatch, source: Bool, protocolNumber: Int?)
        -> [IptablesRule]?
    {
        let direction = source ? "src" : "dst"
        var fixed = IptablesRule([], "")
        var addressOption: IptablesRule.Option?
        let notNets = match.notNets.filter { $0.family == family }
        let nets = match.nets.filter { $0.family == family }
        if !match.nets.isEmpty && nets.isEmpty { return nil }
        if notNets.count == 1 && nets.isEmpty {
            addressOption = .init(value: notNets[0].description, negated: true)
        } else if !notNets.isEmpty {
            let name = notNetsSet(notNets)
            fixed.matches.append("-m set ! --match-set \(name) \(direction)")
        }
        for set in match.ipSets {
            fixed.matches.append("-m set --match-set \(IptablesCompiler.setName(set, family)) \(direction)")
        }
        for set in match.notIPSets {
            fixed.matches.append("-m set ! --match-set \(IptablesCompiler.setName(set, family)) \(direction)")
        }
        for set in match.notNamedPortSets {
            fixed.matches.append(
                "-m set ! --match-set \(IptablesCompiler.setName(set, family)) \(direction),\(direction)")
        }
        let portOption = source ? "--sports" : "--dports"
        if !match.notPorts.isEmpty {
            guard let protocolNumber, Self.portProtocols.contains(protocolNumber) else { return nil }
            for chunk in Self.chunks(match.notPorts) {
                fixed.matches.append("-m multiport ! \(portOption) \(chunk)")
            }
        }
        var addressAlternatives: [IptablesRule.Option?] = [addressOption]
        if !nets.isEmpty { addressAlternatives = nets.map { .init(value: $0.description) } }
        var portAlternatives: [[String]] = [[]]
        if match.hasPortMatch {
            portAlternatives = []
            if let protocolNumber, Self.portProtocols.contains(protocolNumber) {
                portAlternatives += Self.chunks(match.ports).map { ["-m multiport \(portOption) \($0)"] }
            }
            portAlternatives += match.namedPortSets.map {
                ["-m set --match-set \(IptablesCompiler.setName($0, family)) \(direction),\(direction)"]
            }
            if portAlternatives.isEmpty { return nil }
        }
        var result: [IptablesRule] = []
        for address in addressAlternatives {
            for ports in portAlternatives {
                var rule = fixed
                if source { rule.source = address } else { rule.destination = address }
                rule.matches += ports
                result.append(rule)
            }
        }
        return result
    }

    /// Port ranges as `multiport` lists of at most 15 ports (a range counts twice).
    static func chunks(_ ranges: [PortRange]) -> [String] {
        var chunks: [String] = []
        var current: [String] = []
        var used = 0
        for range in ranges {
            let cost = range.lower == range.upper ? 1 : 2
            if used + cost > 15 {
                chunks.append(current.joined(separator: ","))
                current = []
                used = 0
            }
            current.append(range.description)
            used += cost
        }
        if !current.isEmpty { chunks.append(current.joined(separator: ",")) }
        return chunks
    }

    /// An ipset holding several `notNets` (iptables has one `! -s` per rule).
    mutating func notNetsSet(_ nets: [CIDR]) -> String {
        let key = nets.map(\.description).sorted().joined(separator: ",")
        let name = (family == .v4 ? "cali40n:" : "cali60n:") + IptablesRule.hash(key)
        derivedSets[name] = Ipset(kind: .net, family: family, elements: Set(nets.flatMap(IptablesCompiler.netElements)))
        return name
    }
}

extension IptablesRule {
    /// This rule's options and matches and `other`'s (a source side and a destination side).
    func merged(with other: IptablesRule) -> IptablesRule {
        var result = self
        result.source = other.source ?? source
        result.destination = other.destination ?? destination
        result.matches += other.matches
        return result
    }
}
