import TabbyCore
import TabbyPolicy

/// One endpoint's policy in one direction, reduced to the tc program's three tables
/// (docs/dataplanes.md, "eBPF"): destination protocol and port -> port class, peer address ->
/// address class, (port class, address class) -> verdict. Whatever the number of rules, a packet
/// costs those three lookups. Where rules name source ports, the port classes those rules are in
/// carry `TCProgram.bySourcePort` and one more table refines them: (port class, protocol, source
/// port) -> the port class the verdicts name.
public struct PolicyTables: Equatable, Sendable {
    public struct PortEntry: Hashable, Sendable {
        /// nil: every protocol not listed (the program's catch-all).
        public var protocolNumber: UInt8?
        /// nil: every port of the protocol not listed. ICMP: type << 8 | code.
        public var ports: ClosedRange<UInt16>?
        /// With `TCProgram.bySourcePort` set: refined by the source port through `sourcePorts`.
        public var portClass: UInt32
    }

    /// A port class with `TCProgram.bySourcePort`, refined by the source port (TCP and UDP only;
    /// every other protocol has the class's catch-all) into the port class of the verdicts.
    public struct SourcePortEntry: Hashable, Sendable {
        /// As `ports` holds it, with `TCProgram.bySourcePort`.
        public var portClass: UInt32
        /// nil: every protocol not listed (the class's catch-all).
        public var protocolNumber: UInt8?
        /// nil: every source port of the protocol not listed.
        public var ports: ClosedRange<UInt16>?
        public var refinedClass: UInt32
    }

    public struct AddressEntry: Hashable, Sendable {
        public var cidr: CIDR
        public var addressClass: UInt32
    }

    public struct VerdictEntry: Hashable, Sendable {
        public var portClass: UInt32
        public var addressClass: UInt32
        public var verdict: TCProgram.Verdict
    }

    public var ports: [PortEntry] = []
    /// Empty unless some port class has `TCProgram.bySourcePort`.
    public var sourcePorts: [SourcePortEntry] = []
    public var addresses: [AddressEntry] = []
    /// Only the combinations whose verdict differs from `defaultVerdict`.
    public var verdicts: [VerdictEntry] = []
    /// The verdict of every combination not in `verdicts`.
    public var defaultVerdict = TCProgram.Verdict(.deny, rule: PolicyTableCompiler.noProfileMatched)

    /// True when only the address table differs: the same port classes and the same verdict for
    /// every class combination, so the address entries can change in place, one at a time.
    public func differsOnlyInAddresses(from other: PolicyTables) -> Bool {
        ports == other.ports && sourcePorts == other.sourcePorts
            && verdicts == other.verdicts && defaultVerdict == other.defaultVerdict && addresses != other.addresses
    }

    /// What the tc program decides for a new flow, by the same lookups in Swift (longest prefix,
    /// the source-port refinement where the port class asks for it, then the verdict or the
    /// default). `sourcePort` is read for TCP and UDP only, as the program does.
    public func verdict(protocol proto: UInt8, port: UInt16, sourcePort: UInt16, peer: IPv4Address)
        -> TCProgram.Verdict
    {
        verdict(protocol: proto, port: port, sourcePort: sourcePort, peer: .v4(peer))
    }

    /// The same for a peer of either family (IPv6 tables hold IPv6 CIDRs, IPv4 tables IPv4 ones).
    public func verdict(protocol proto: UInt8, port: UInt16, sourcePort: UInt16, peer address: IPAddress)
        -> TCProgram.Verdict
    {
        func mostSpecific(_ entries: [(UInt8?, ClosedRange<UInt16>?, UInt32)], _ value: UInt16) -> UInt32? {
            entries.first { $0.0 == proto && $0.1?.contains(value) == true }?.2
                ?? entries.first { $0.0 == proto && $0.1 == nil }?.2
                ?? entries.first { $0.0 == nil }?.2
        }
        var portClass = mostSpecific(ports.map { ($0.protocolNumber, $0.ports, $0.portClass) }, port)
        if let marked = portClass, marked & TCProgram.bySourcePort != 0 {
            let value = proto == 6 || proto == 17 ? sourcePort : 0
            portClass = mostSpecific(
                sourcePorts.filter { $0.portClass == marked }.map { ($0.protocolNumber, $0.ports, $0.refinedClass) },
                value)
        }
        let addressClass = addresses.filter { $0.cidr.contains(address) }
            .max { $0.cidr.prefixLength < $1.cidr.prefixLength }?.addressClass
        guard let portClass, let addressClass else { return TCProgram.Verdict(.deny, rule: 0) }
        return verdicts.first { $0.portClass == portClass && $0.addressClass == addressClass }?.verdict
            ?? defaultVerdict
    }
}

/// Compiles an endpoint program of the IR into `PolicyTables`, with `PolicyEvaluator`'s semantics:
/// tiers in order (first matching rule of a policy decides; Pass skips to the next tier; Log goes
/// on), each tier's default when none decided, then the profiles, then deny.
///
/// The packet's fields are split into equivalence classes: every (protocol, port) segment and every
/// peer CIDR region that the same rules match falls into one class. A rule's conditions on the
/// endpoint's own address are decided here, once (the program belongs to one endpoint).
/// Named ports of the peer (an egress destination's, an ingress source's) are a relation between
/// address and port: each named (protocol, port) gets a port class (or source-port class) of its
/// own, each member address an address class that records which of those it has, and the verdict
/// of a pair checks the two agree. Source ports are a further dimension: the port classes that
/// hold rules naming source ports are refined by the source port's class into the final ones.
/// Not yet expressible, and reported as `unsupported`: endpoints with several addresses of one
/// family whose rules tell them apart.
///
/// One family at a time (`family`): the tc program looks IPv4 packets up in IPv4 tables and IPv6
/// packets in IPv6 ones. For a family, rules with the other `ipVersion` are dead; peer CIDRs and
/// IP set members of the other family are left out, as `PolicyEvaluator` never matches them
/// against this family's addresses (so `nets` of only the other family make a rule dead, `notNets`
/// of only the other family exclude nothing); the endpoint's own address conditions are decided
/// with its addresses of the family; ICMP is protocol 1 for IPv4 and 58 (ICMPv6) for IPv6.
public enum PolicyTableCompiler {
    /// Rule ids in verdicts: the index of the deciding rule in evaluation order + 1, or these.
    public static let noProfileMatched: UInt32 = 0xffff_fffe
    /// A tier's default action denied: this | tier index.
    public static let tierDefaultDeny: UInt32 = 0x8000_0000

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case unsupported(String)

        public var description: String {
            switch self {
            case .unsupported(let what): return "the eBPF dataplane cannot express this yet: \(what)"
            }
        }
    }

    /// A rule in evaluation order, with what decides it.
    struct FlatRule {
        var rule: CompiledRule
        /// Index into the program's tiers, or nil for a profile rule.
        var tier: Int?
        /// For profile rules: which profile (Pass ends that profile).
        var profile: Int?
        var name: String
    }

    /// How a rule's match depends on the packet.
    struct Condition {
        var portTrivial: Bool
        var addressTrivial: Bool
    }

    public static func compile(
        _ program: EndpointProgram, direction: Direction, in ir: PolicyIR, family: IPFamily = .v4,
        maxCombinations: Int = 4_000_000
    ) throws(Error) -> PolicyTables {
        var compiler = Compiler(ir: ir, program: program, direction: direction, family: family)
        return try compiler.run(maxCombinations: maxCombinations)
    }
}

/// A prefix of the compiled family as plain integers (the compiler's hot loops): an IPv4 one in
/// the low 32 bits.
private struct Prefix: Hashable {
    var value: UInt128
    var length: Int

    init(_ value: UInt128, _ length: Int, width: Int) {
        self.length = length
        self.value = length == 0 ? 0 : value & (~UInt128(0) >> UInt128(128 - width)) << UInt128(width - length)
    }

    /// nil for a CIDR of the other family.
    init?(_ cidr: CIDR, family: IPFamily) {
        guard let value = Prefix.value(cidr.network, family: family) else { return nil }
        self.init(value, cidr.prefixLength, width: family.bitWidth)
    }

    static func value(_ address: IPAddress, family: IPFamily) -> UInt128? {
        switch (address, family) {
        case (.v4(let v4), .v4): return UInt128(v4.value)
        case (.v6(let v6), .v6): return v6.value
        default: return nil
        }
    }

    func cidr(_ family: IPFamily) -> CIDR {
        let network: IPAddress = family == .v4 ? .v4(IPv4Address(UInt32(value))) : .v6(IPv6Address(value))
        return CIDR(network: network, prefixLength: length)
    }
}

private struct Compiler {
    let ir: PolicyIR
    let program: EndpointProgram
    let direction: Direction
    let family: IPFamily
    var rules: [PolicyTableCompiler.FlatRule] = []
    /// Rules that can match at all (the endpoint's own address conditions hold), by flat index.
    var live: [Bool] = []
    var conditions: [PolicyTableCompiler.Condition] = []
    /// Per rule, the (protocol, port)s the endpoint itself has in the named-port sets of its own
    /// side (the destination's on ingress, the source's on egress): decided here, once.
    var localNamedPorts: [Set<PortKey>] = []
    /// Per rule: every (protocol, port) of the peer side's named-port sets (the destination's on
    /// egress, the source's on ingress), and of its negated ones, whatever the address (the
    /// address decides at the verdict step).
    var peerNamedPorts: [Set<PortKey>] = []
    var peerNotNamedPorts: [Set<PortKey>] = []
    /// Per rule: whether it names source ports (ports, named ports or negated ones).
    var namesSourcePorts: [Bool] = []

    struct PortKey: Hashable {
        var protocolNumber: Int
        var port: UInt16
    }

    init(ir: PolicyIR, program: EndpointProgram, direction: Direction, family: IPFamily) {
        self.ir = ir
        self.program = program
        self.direction = direction
        self.family = family
    }

    /// ICMP's protocol number in this family: the one whose type and code the program reads.
    var icmpProtocol: Int { family == .v4 ? 1 : 58 }

    var peerSide: KeyPath<CompiledRule, CompiledEntityMatch> {
        direction == .ingress ? \.source : \.destination
    }
    var localSide: KeyPath<CompiledRule, CompiledEntityMatch> {
        direction == .ingress ? \.destination : \.source
    }

    mutating func run(maxCombinations: Int) throws(PolicyTableCompiler.Error) -> PolicyTables {
        flatten()
        try decideLocalConditions()
        let portInfo = try portClassification(maxCombinations: maxCombinations)
        let portClasses = portInfo.members
        let (addressEntries, addressInfo) = addressClassification()
        let addressClasses = addressInfo.members
        var tables = PolicyTables(
            ports: portInfo.entries, sourcePorts: portInfo.sourceEntries, addresses: addressEntries)
        // Classes refined by the source port never reach the verdict table.
        let finalPortClasses = portClasses.indices.filter { !portInfo.bySource[$0] }

        // The default: the verdict when only rules indifferent to both dimensions match.
        let always = rules.indices.filter { live[$0] && conditions[$0].portTrivial && conditions[$0].addressTrivial }
        tables.defaultVerdict = decide(matched: always)

        // Combinations that can differ from the default: some rule that cares about a dimension
        // matches there.
        var candidates = Set<Pair>()
        let portTrivialRules = Set(rules.indices.filter { live[$0] && conditions[$0].portTrivial })
        let addressTrivialRules = Set(rules.indices.filter { live[$0] && conditions[$0].addressTrivial })
        var portClassesOfRule: [Int: [UInt32]] = [:]
        var addressClassesOfRule: [Int: [UInt32]] = [:]
        for index in finalPortClasses {
            for rule in portClasses[index] { portClassesOfRule[rule, default: []].append(UInt32(index)) }
        }
        for (index, members) in addressClasses.enumerated() {
            for rule in members { addressClassesOfRule[rule, default: []].append(UInt32(index)) }
        }
        func add(_ pair: Pair) throws(PolicyTableCompiler.Error) {
            candidates.insert(pair)
            if candidates.count > maxCombinations {
                throw .unsupported(
                    "\(program.endpoint) \(direction): more than \(maxCombinations) port/address class combinations")
            }
        }
        for rule in rules.indices where live[rule] {
            let ports = portClassesOfRule[rule] ?? []
            let addresses = addressClassesOfRule[rule] ?? []
            if conditions[rule].portTrivial && !conditions[rule].addressTrivial {
                for a in addresses { for p in finalPortClasses { try add(Pair(port: UInt32(p), address: a)) } }
            } else if conditions[rule].addressTrivial && !conditions[rule].portTrivial {
                for p in ports { for a in 0..<addressClasses.count { try add(Pair(port: p, address: UInt32(a))) } }
            } else if !conditions[rule].portTrivial {
                for p in ports { for a in addresses { try add(Pair(port: p, address: a)) } }
            }
        }
        // Per class, once: a port class's rules indifferent to addresses, an address class's rules
        // indifferent to ports, and an address class's rules as a set (with 10,000 rules, doing
        // these per pair was most of the work).
        var portOnly: [Int: [Int]] = [:]
        var addressOnly: [Int: [Int]] = [:]
        var addressClassSets: [Int: Set<Int>] = [:]
        for pair in candidates.sorted(by: { ($0.port, $0.address) < ($1.port, $1.address) }) {
            let (port, address) = (Int(pair.port), Int(pair.address))
            if portOnly[port] == nil { portOnly[port] = portClasses[port].filter(addressTrivialRules.contains) }
            if addressOnly[address] == nil {
                addressOnly[address] = addressClasses[address].filter(portTrivialRules.contains)
                addressClassSets[address] = Set(addressClasses[address])
            }
            var matched = always + portOnly[port]! + addressOnly[address]!
            let bothSides = addressClassSets[address]!
            for rule in portClasses[port] where bothSides.contains(rule) {
                if namedPortsAgree(rule, portTag: portInfo.peerTags[port], named: addressInfo, address) {
                    matched.append(rule)
                }
            }
            let verdict = decide(matched: matched.sorted())
            if verdict != tables.defaultVerdict {
                tables.verdicts.append(.init(portClass: pair.port, addressClass: pair.address, verdict: verdict))
            }
        }
        return tables
    }

    struct Pair: Hashable {
        var port: UInt32
        var address: UInt32
    }

    /// The peer's named ports, for a rule in both classes of a pair: whether the port class's named
    /// (protocol, port) of the peer's port (the destination port on egress, the source port on
    /// ingress), if it has one, is one the peer has in the rule's sets (or the numeric ports allow
    /// it anyway), and not one of its negated sets. A port class without a named value holds the
    /// rule through its numeric ports alone.
    func namedPortsAgree(_ rule: Int, portTag: PortKey?, named: AddressClasses, _ address: Int) -> Bool {
        guard let tag = portTag else { return true }
        let entity = rules[rule].rule[keyPath: peerSide]
        if named.notNamed[address][rule]?.contains(tag) == true { return false }
        if !entity.namedPortSets.isEmpty, !entity.ports.contains(where: { $0.contains(tag.port) }) {
            return named.named[address][rule]?.contains(tag) == true
        }
        return true
    }

    /// Tiers, their policies and rules, then the profiles: evaluation order.
    mutating func flatten() {
        for (tierIndex, tier) in program.tiers(direction).enumerated() {
            for id in tier.policies {
                guard let policy = ir.policies[id] else { continue }
                for (index, rule) in policy.rules(direction).enumerated() {
                    rules.append(.init(rule: rule, tier: tierIndex, profile: nil, name: "\(id) \(direction) \(index)"))
                }
            }
        }
        for (profileIndex, name) in program.profiles.enumerated() {
            guard let profile = ir.profiles[name] else { continue }
            for (index, rule) in profile.rules(direction).enumerated() {
                rules.append(.init(rule: rule, tier: nil, profile: profileIndex, name: "\(name) \(direction) \(index)"))
            }
        }
    }

    /// Decides what depends only on the endpoint itself (its address, its named ports) and rejects
    /// what the tables cannot express.
    mutating func decideLocalConditions() throws(PolicyTableCompiler.Error) {
        let locals = program.addresses.filter { $0.family == family }
        for flat in rules {
            let rule = flat.rule
            let local = rule[keyPath: localSide]
            let peer = rule[keyPath: peerSide]
            var outcomes = Set<Bool>()
            for address in locals { outcomes.insert(addressMatches(local, address)) }
            if outcomes.count > 1 {
                throw .unsupported(
                    "\(flat.name): rules that tell the endpoint's \(family == .v4 ? "IPv4" : "IPv6") addresses apart")
            }
            let versionOK = rule.ipVersion == nil || rule.ipVersion == family.rawValue
            // An endpoint without addresses of the family gets no traffic of it worth matching on
            // its own address.
            let localOK = outcomes.first ?? (local.nets.isEmpty && local.ipSets.isEmpty)
            // Peer nets only of the other family: no address of this one is in them.
            let peerNetsOK = peer.nets.isEmpty || peer.nets.contains { $0.family == family }
            live.append(versionOK && localOK && peerNetsOK)
            var named = Set<PortKey>()
            if let address = locals.first {
                for id in local.namedPortSets + local.notNamedPortSets {
                    for member in ir.ipSets[id]?.members ?? [] {
                        if case .addressPort(address, let proto, let port) = member {
                            named.insert(PortKey(protocolNumber: proto, port: port))
                        }
                    }
                }
            }
            localNamedPorts.append(named)
            func portsOf(_ sets: [IPSetID]) -> Set<PortKey> {
                var keys = Set<PortKey>()
                for id in sets {
                    for member in ir.ipSets[id]?.members ?? [] {
                        if case .addressPort(let address, let proto, let port) = member, address.family == family {
                            keys.insert(PortKey(protocolNumber: proto, port: port))
                        }
                    }
                }
                return keys
            }
            peerNamedPorts.append(portsOf(peer.namedPortSets))
            peerNotNamedPorts.append(portsOf(peer.notNamedPortSets))
            let namesSource = rule.source.hasPortMatch || rule.source.hasNotPortMatch
            namesSourcePorts.append(namesSource)
            let portTrivial =
                rule.protocolNumber == nil && rule.notProtocolNumber == nil && rule.icmp == nil
                && rule.notICMP == nil && !rule.destination.hasPortMatch && !rule.destination.hasNotPortMatch
                && !namesSource
            // The peer's named ports depend on its address too.
            let addressTrivial =
                peer.nets.isEmpty && peer.notNets.isEmpty && peer.ipSets.isEmpty && peer.notIPSets.isEmpty
                && peer.namedPortSets.isEmpty && peer.notNamedPortSets.isEmpty
            conditions.append(.init(portTrivial: portTrivial, addressTrivial: addressTrivial))
        }
    }

    private func addressMatches(_ entity: CompiledEntityMatch, _ address: IPAddress) -> Bool {
        if !entity.nets.isEmpty, !entity.nets.contains(where: { $0.contains(address) }) { return false }
        if entity.notNets.contains(where: { $0.contains(address) }) { return false }
        for id in entity.ipSets where !(ir.ipSets[id]?.contains(address) ?? false) { return false }
        for id in entity.notIPSets where ir.ipSets[id]?.contains(address) ?? false { return false }
        return true
    }

    // MARK: Ports

    /// Whether rule `index`'s protocol and destination-port conditions hold for protocol `proto` and
    /// the value the tc program puts in the port field (TCP/UDP port, ICMP type << 8 | code, else 0).
    func portMatches(_ index: Int, proto: Int, value: UInt16) -> Bool {
        let rule = rules[index].rule
        if let wanted = rule.protocolNumber, wanted != proto { return false }
        if let unwanted = rule.notProtocolNumber, unwanted == proto { return false }
        let isICMP = proto == icmpProtocol
        func icmpMatches(_ icmp: ICMPMatch) -> Bool {
            guard isICMP else { return false }
            if let type = icmp.type, type != Int(value >> 8) { return false }
            if let code = icmp.code, code != Int(value & 0xff) { return false }
            return true
        }
        if let icmp = rule.icmp, !icmpMatches(icmp) { return false }
        if let icmp = rule.notICMP, icmpMatches(icmp) { return false }
        return sideMatches(index, source: false, proto: proto, port: proto == 6 || proto == 17 ? value : nil)
    }

    /// Whether rule `index`'s source-port conditions hold for protocol `proto` and source port
    /// `value` (read for TCP and UDP only, as the tc program does).
    func sourcePortMatches(_ index: Int, proto: Int, value: UInt16) -> Bool {
        sideMatches(index, source: true, proto: proto, port: proto == 6 || proto == 17 ? value : nil)
    }

    /// The port conditions of one side of rule `index` (nil `port`: the packet has none). The
    /// endpoint's own named ports are decided here; the peer's may match depending on its
    /// address, which the verdict step decides (`namedPortsAgree`).
    private func sideMatches(_ index: Int, source: Bool, proto: Int, port: UInt16?) -> Bool {
        let entity = source ? rules[index].rule.source : rules[index].rule.destination
        // The peer is the source of ingress and the destination of egress.
        let isPeer = source == (direction == .ingress)
        let named = localNamedPorts[index]
        if entity.hasPortMatch {
            guard let port else { return false }
            let numeric = entity.ports.contains { $0.contains(port) }
            let key = PortKey(protocolNumber: proto, port: port)
            let byName =
                isPeer
                ? peerNamedPorts[index].contains(key)
                : !entity.namedPortSets.isEmpty && named.contains(key)
                    && namedIn(entity.namedPortSets, proto: proto, port: port)
            if !numeric && !byName { return false }
        }
        if entity.hasNotPortMatch, let port {
            if entity.notPorts.contains(where: { $0.contains(port) }) { return false }
            // The peer's negated named ports are decided at the verdict step, with the address.
            if !isPeer && named.contains(PortKey(protocolNumber: proto, port: port))
                && namedIn(entity.notNamedPortSets, proto: proto, port: port)
            {
                return false
            }
        }
        return true
    }

    /// Whether one of `sets` holds (the endpoint's address, proto, port).
    private func namedIn(_ sets: [IPSetID], proto: Int, port: UInt16) -> Bool {
        guard let address = program.addresses.first(where: { $0.family == family }) else { return false }
        return sets.contains { ir.ipSets[$0]?.contains(address, protocolNumber: proto, port: port) ?? false }
    }

    /// The port dimension: the classes (each: the rules caring about ports that match there), their
    /// LPM entries and, where rules name source ports, the source-port entries that refine a class.
    struct PortClasses {
        var entries: [PolicyTables.PortEntry] = []
        var sourceEntries: [PolicyTables.SourcePortEntry] = []
        /// Per class: its rules, ascending.
        var members: [[Int]] = []
        /// Per class: refined by the source port (so never named in a verdict).
        var bySource: [Bool] = []
        /// Per class: the named (protocol, port) of the peer's port it stands for, if any (the
        /// destination port's on egress, the source port's on ingress).
        var peerTags: [PortKey?] = []
        private var classOf: [ClassKey: UInt32] = [:]

        private struct ClassKey: Hashable {
            var members: [Int]
            var named: PortKey?
            var bySource: Bool
        }

        mutating func classify(_ members: [Int], named: PortKey?, bySource: Bool) -> UInt32 {
            let key = ClassKey(members: members, named: named, bySource: bySource)
            if let known = classOf[key] { return known }
            let id = UInt32(self.members.count)
            self.members.append(members)
            self.bySource.append(bySource)
            peerTags.append(named)
            classOf[key] = id
            return id
        }
    }

    /// The port classes and their LPM entries. The peer's named destination ports (egress), and
    /// negated ones, get a class of their own per (protocol, port), tagged so the verdict step can
    /// ask whether the destination has that port. A class holding rules that name source ports is
    /// refined by the source port (`refineBySourcePort`) and marked `TCProgram.bySourcePort` in
    /// its entries.
    func portClassification(maxCombinations: Int) throws(PolicyTableCompiler.Error) -> PortClasses {
        let caring = rules.indices.filter { live[$0] && !conditions[$0].portTrivial }
        var protocols: Set<Int> = [icmpProtocol, 6, 17]
        var boundaries: Set<Int> = [0, 65536]
        var icmpBoundaries: Set<Int> = [0, 65536]
        /// The named destination ports of a rule: the endpoint's own (ingress) or the peer's (egress).
        func namedDestinationPorts(_ index: Int) -> Set<PortKey> {
            direction == .ingress ? localNamedPorts[index] : peerNamedPorts[index].union(peerNotNamedPorts[index])
        }
        for index in caring {
            let rule = rules[index].rule
            if let proto = rule.protocolNumber { protocols.insert(proto) }
            if let proto = rule.notProtocolNumber { protocols.insert(proto) }
            for range in rule.destination.ports + rule.destination.notPorts {
                boundaries.insert(Int(range.lower))
                boundaries.insert(Int(range.upper) + 1)
            }
            for key in namedDestinationPorts(index) {
                boundaries.insert(Int(key.port))
                boundaries.insert(Int(key.port) + 1)
            }
            for icmp in [rule.icmp, rule.notICMP].compactMap({ $0 }) {
                guard let type = icmp.type else { continue }
                if let code = icmp.code {
                    icmpBoundaries.insert(type << 8 | code)
                    icmpBoundaries.insert((type << 8 | code) + 1)
                } else {
                    icmpBoundaries.insert(type << 8)
                    icmpBoundaries.insert((type + 1) << 8)
                }
            }
        }
        protocols = protocols.filter { (0...255).contains($0) }
        let namedValues =
            direction == .egress ? caring.reduce(into: Set<PortKey>()) { $0.formUnion(namedDestinationPorts($1)) } : []
        var result = PortClasses()
        /// Per class, where it occurs: TCP or UDP (6, 17: the program reads their source ports) or
        /// another protocol (-1: no source port).
        var occurs: [UInt32: Set<Int>] = [:]
        func classify(_ members: [Int], named: PortKey? = nil, proto: Int) -> UInt32 {
            let id = result.classify(members, named: named, bySource: members.contains { namesSourcePorts[$0] })
            occurs[id, default: []].insert(proto == 6 || proto == 17 ? proto : -1)
            return id
        }
        var entries: [PolicyTables.PortEntry] = []
        // Protocols no rule names: one class, the program's catch-all.
        let other = (0...255).first { !protocols.contains($0) }!
        entries.append(
            .init(
                protocolNumber: nil, ports: nil,
                portClass: classify(caring.filter { portMatches($0, proto: other, value: 0) }, proto: other)))
        for proto in protocols.sorted() {
            let cuts = (proto == icmpProtocol ? icmpBoundaries : proto == 6 || proto == 17 ? boundaries : [0, 65536])
                .sorted()
            // Rules for this protocol; those with port ranges can match only inside them, so a sweep
            // over the segments keeps just the ranges covering each one.
            let relevant = caring.filter {
                rules[$0].rule.protocolNumber == nil || rules[$0].rule.protocolNumber == proto
            }
            let ranged = relevant.filter {
                !rules[$0].rule.destination.ports.isEmpty && rules[$0].rule.destination.namedPortSets.isEmpty
            }
            let broad = relevant.filter {
                rules[$0].rule.destination.ports.isEmpty || !rules[$0].rule.destination.namedPortSets.isEmpty
            }
            var starts: [Int: [Int]] = [:]
            for index in ranged {
                for range in rules[index].rule.destination.ports { starts[Int(range.lower), default: []].append(index) }
            }
            var active: [Int: Int] = [:]  // rule -> how many of its ranges cover the segment
            var segments: [(ClosedRange<UInt16>, UInt32)] = []
            for (low, next) in zip(cuts, cuts.dropFirst()) {
                if proto == 6 || proto == 17 {
                    for index in starts[low] ?? [] { active[index, default: 0] += 1 }
                    for index in Array(active.keys) {
                        let covering = rules[index].rule.destination.ports.filter { $0.contains(UInt16(low)) }.count
                        if covering == 0 { active[index] = nil } else { active[index] = covering }
                    }
                }
                let members = (broad + active.keys).sorted().filter {
                    portMatches($0, proto: proto, value: UInt16(low))
                }
                let single = PortKey(protocolNumber: proto, port: UInt16(low))
                let named = next - low == 1 && namedValues.contains(single) ? single : nil
                segments.append((UInt16(low)...UInt16(next - 1), classify(members, named: named, proto: proto)))
            }
            // The class covering the most ports becomes the protocol's own entry; the rest are ranges.
            var sizes: [UInt32: Int] = [:]
            for (range, id) in segments { sizes[id, default: 0] += range.count }
            let common = sizes.max { ($0.value, $1.key) < ($1.value, $0.key) }!.key
            entries.append(.init(protocolNumber: UInt8(proto), ports: nil, portClass: common))
            for (range, id) in segments where id != common {
                entries.append(.init(protocolNumber: UInt8(proto), ports: range, portClass: id))
            }
        }
        if result.bySource.contains(true) {
            try refineBySourcePort(&result, occurs: occurs, caring: caring, maxCombinations: maxCombinations)
        }
        result.entries = entries.map { entry in
            var entry = entry
            if result.bySource[Int(entry.portClass)] { entry.portClass |= TCProgram.bySourcePort }
            return entry
        }
        return result
    }

    /// Source ports: their classes (segments of TCP's and UDP's source ports, as for destination
    /// ports; every other protocol has none), then for each class marked `bySource` and each
    /// segment of a protocol it occurs in, the class of the rules that hold for both: those that
    /// name no source port, and those the segment's source-port class holds. Adjacent segments
    /// that refine to the same class become one, so a marked class gets entries only where the
    /// source port changes which of its rules hold. The peer's named source ports (ingress) get a
    /// segment of their own per (protocol, port), whose tag the refined class carries to the
    /// verdict step.
    private func refineBySourcePort(
        _ result: inout PortClasses, occurs: [UInt32: Set<Int>], caring: [Int], maxCombinations: Int
    ) throws(PolicyTableCompiler.Error) {
        let naming = caring.filter { namesSourcePorts[$0] }
        var boundaries: Set<Int> = [0, 65536]
        var namedValues = Set<PortKey>()
        for index in naming {
            let source = rules[index].rule.source
            for range in source.ports + source.notPorts {
                boundaries.insert(Int(range.lower))
                boundaries.insert(Int(range.upper) + 1)
            }
            // The endpoint's own named source ports (egress) are plain values here; the peer's
            // (ingress) depend on its address.
            let named =
                direction == .egress ? localNamedPorts[index] : peerNamedPorts[index].union(peerNotNamedPorts[index])
            for key in named {
                boundaries.insert(Int(key.port))
                boundaries.insert(Int(key.port) + 1)
            }
            if direction == .ingress { namedValues.formUnion(named) }
        }
        struct SourceClass: Hashable {
            var members: [Int]
            var named: PortKey?
        }
        var classes: [SourceClass] = []
        var classOf: [SourceClass: Int] = [:]
        func classify(_ members: [Int], named: PortKey?) -> Int {
            let key = SourceClass(members: members, named: named)
            if let known = classOf[key] { return known }
            classes.append(key)
            classOf[key] = classes.count - 1
            return classes.count - 1
        }
        // Every protocol but TCP and UDP: no source port.
        let portless = classify(naming.filter { sourcePortMatches($0, proto: 0, value: 0) }, named: nil)
        let ranged = naming.filter {
            !rules[$0].rule.source.ports.isEmpty && rules[$0].rule.source.namedPortSets.isEmpty
        }
        let broad = naming.filter {
            rules[$0].rule.source.ports.isEmpty || !rules[$0].rule.source.namedPortSets.isEmpty
        }
        var starts: [Int: [Int]] = [:]
        for index in ranged {
            for range in rules[index].rule.source.ports { starts[Int(range.lower), default: []].append(index) }
        }
        let cuts = boundaries.sorted()
        var segmentsOf: [Int: [(ClosedRange<UInt16>, Int)]] = [:]
        for proto in [6, 17] {
            var active = Set<Int>()
            for (low, next) in zip(cuts, cuts.dropFirst()) {
                active.formUnion(starts[low] ?? [])
                active = active.filter { index in rules[index].rule.source.ports.contains { $0.contains(UInt16(low)) } }
                let members = (broad + active).sorted().filter {
                    sourcePortMatches($0, proto: proto, value: UInt16(low))
                }
                let single = PortKey(protocolNumber: proto, port: UInt16(low))
                let named = next - low == 1 && namedValues.contains(single) ? single : nil
                segmentsOf[proto, default: []].append((UInt16(low)...UInt16(next - 1), classify(members, named: named)))
            }
        }
        for id in result.bySource.indices where result.bySource[id] {
            let marked = UInt32(id) | TCProgram.bySourcePort
            let members = result.members[id]
            let fixed = members.filter { !namesSourcePorts[$0] }
            let held = Set(members)
            var refinedOf: [Int: UInt32] = [:]
            func refined(_ sourceClass: Int) -> UInt32 {
                if let known = refinedOf[sourceClass] { return known }
                let kept = (fixed + classes[sourceClass].members.filter(held.contains)).sorted()
                let tag = direction == .egress ? result.peerTags[id] : classes[sourceClass].named
                let refined = result.classify(kept, named: tag, bySource: false)
                refinedOf[sourceClass] = refined
                return refined
            }
            result.sourceEntries.append(
                .init(portClass: marked, protocolNumber: nil, ports: nil, refinedClass: refined(portless)))
            for proto in [6, 17] where occurs[UInt32(id)]?.contains(proto) == true {
                var merged: [(ClosedRange<UInt16>, UInt32)] = []
                for (range, sourceClass) in segmentsOf[proto] ?? [] {
                    let to = refined(sourceClass)
                    if let last = merged.last, last.1 == to {
                        merged[merged.count - 1].0 = last.0.lowerBound...range.upperBound
                    } else {
                        merged.append((range, to))
                    }
                }
                var sizes: [UInt32: Int] = [:]
                for (range, to) in merged { sizes[to, default: 0] += range.count }
                let common = sizes.max { ($0.value, $1.key) < ($1.value, $0.key) }!.key
                result.sourceEntries.append(
                    .init(portClass: marked, protocolNumber: UInt8(proto), ports: nil, refinedClass: common))
                for (range, to) in merged where to != common {
                    result.sourceEntries.append(
                        .init(portClass: marked, protocolNumber: UInt8(proto), ports: range, refinedClass: to))
                }
            }
            if result.sourceEntries.count > maxCombinations {
                throw .unsupported(
                    "\(program.endpoint) \(direction): more than \(maxCombinations) port class and source-port entries")
            }
        }
    }

    // MARK: Addresses

    /// The address classes (each: the rules caring about the peer's address that match there) and
    /// the LPM entries: one per CIDR any rule names, its class being the rules whose conditions hold
    /// for every address whose longest named prefix it is. A named CIDR holds all those addresses
    /// exactly when it contains that prefix, so each prefix is evaluated through its named ancestors.
    ///
    /// Rules with the same peer conditions (often hundreds of policies naming one set) are
    /// evaluated once, as one signature, so the work grows with prefixes times signatures in reach,
    /// not prefixes times rules.
    ///
    /// The peer's named ports (an egress destination's, an ingress source's): each member address is
    /// a /32 of its own, and its class also records, per rule, which (protocol, port)s the peer's
    /// named-port sets (and negated ones) give it there (`AddressClasses.named`, `.notNamed`); the
    /// verdict step pairs them with the port class's tag.
    func addressClassification() -> ([PolicyTables.AddressEntry], AddressClasses) {
        struct PeerMatch: Hashable {
            var nets: [Prefix]
            var notNets: [Prefix]
            var ipSets: [IPSetID]
            var notIPSets: [IPSetID]
            var namedSets: [IPSetID] = []
            var notNamedSets: [IPSetID] = []
            /// Named ports and no numeric ones: only member addresses can match.
            var namedOnly = false
            /// Whether the match can hold with none of its prefixes containing the address.
            var holdsWithoutHits: Bool { nets.isEmpty && ipSets.isEmpty && !namedOnly }
        }
        var signatures: [PeerMatch] = []
        var signatureOf: [PeerMatch: Int] = [:]
        var rulesOf: [[Int]] = []
        for index in rules.indices where live[index] && !conditions[index].addressTrivial {
            let entity = rules[index].rule[keyPath: peerSide]
            var match = PeerMatch(
                nets: entity.nets.compactMap { Prefix($0, family: family) },
                notNets: entity.notNets.compactMap { Prefix($0, family: family) },
                ipSets: entity.ipSets, notIPSets: entity.notIPSets)
            match.namedSets = entity.namedPortSets
            match.notNamedSets = entity.notNamedPortSets
            match.namedOnly = !entity.namedPortSets.isEmpty && entity.ports.isEmpty
            if let known = signatureOf[match] {
                rulesOf[known].append(index)
            } else {
                signatureOf[match] = signatures.count
                signatures.append(match)
                rulesOf.append([index])
            }
        }
        // Which named prefixes each referenced set holds, and who refers to what.
        let width = family.bitWidth
        var setsHolding: [Prefix: [IPSetID]] = [:]
        var signaturesNaming: [Prefix: [Int]] = [:]
        var signaturesUsing: [IPSetID: [Int]] = [:]
        var prefixes: Set<Prefix> = [Prefix(0, 0, width: width)]
        var holdingWithoutHits: [Int] = []
        /// The peer's named-port members: address -> set -> its (protocol, port)s.
        var namedAt: [Prefix: [IPSetID: Set<PortKey>]] = [:]
        var namedSignaturesUsing: [IPSetID: [Int]] = [:]
        for (signature, match) in signatures.enumerated() {
            for id in Set(match.namedSets + match.notNamedSets) {
                if namedSignaturesUsing[id] == nil {
                    for member in ir.ipSets[id]?.members ?? [] {
                        guard case .addressPort(let address, let proto, let port) = member,
                            let value = Prefix.value(address, family: family)
                        else { continue }
                        let prefix = Prefix(value, width, width: width)
                        namedAt[prefix, default: [:]][id, default: []].insert(
                            PortKey(protocolNumber: proto, port: port))
                        prefixes.insert(prefix)
                    }
                }
                namedSignaturesUsing[id, default: []].append(signature)
            }
            if match.holdsWithoutHits { holdingWithoutHits.append(signature) }
            for prefix in Set(match.nets + match.notNets) {
                signaturesNaming[prefix, default: []].append(signature)
                prefixes.insert(prefix)
            }
            for id in Set(match.ipSets + match.notIPSets) {
                if signaturesUsing[id] == nil {
                    for member in ir.ipSets[id]?.members ?? [] {
                        guard case .net(let net) = member, let prefix = Prefix(net, family: family) else { continue }
                        setsHolding[prefix, default: []].append(id)
                        prefixes.insert(prefix)
                    }
                }
                signaturesUsing[id, default: []].append(signature)
            }
        }
        struct ClassKey: Hashable {
            var holding: [Int]
            /// Per holding signature with named-port sets: the ports they give this address.
            var named: [Int: Set<PortKey>]
            var notNamed: [Int: Set<PortKey>]
        }
        var classes = AddressClasses()
        var classOf: [ClassKey: UInt32] = [:]
        var entries: [PolicyTables.AddressEntry] = []
        for prefix in prefixes.sorted(by: { ($0.length, $0.value) < ($1.length, $1.value) }) {
            let namedHere = namedAt[prefix] ?? [:]
            // The named prefixes containing this one: every address it stands for is in exactly these.
            var ancestors = Set<Prefix>()
            var sets = Set<IPSetID>()
            var candidates = Set(holdingWithoutHits)
            for length in 0...prefix.length {
                let ancestor = Prefix(prefix.value, length, width: width)
                guard prefixes.contains(ancestor) else { continue }
                ancestors.insert(ancestor)
                candidates.formUnion(signaturesNaming[ancestor] ?? [])
                for id in setsHolding[ancestor] ?? [] where sets.insert(id).inserted {
                    candidates.formUnion(signaturesUsing[id] ?? [])
                }
            }
            for id in namedHere.keys { candidates.formUnion(namedSignaturesUsing[id] ?? []) }
            func ports(_ sets: [IPSetID]) -> Set<PortKey> {
                sets.reduce(into: Set<PortKey>()) { $0.formUnion(namedHere[$1] ?? []) }
            }
            let holding = candidates.sorted().filter { signature in
                let match = signatures[signature]
                if !match.nets.isEmpty, !match.nets.contains(where: ancestors.contains) { return false }
                if match.notNets.contains(where: ancestors.contains) { return false }
                if !match.ipSets.allSatisfy(sets.contains) { return false }
                if match.notIPSets.contains(where: sets.contains) { return false }
                if match.namedOnly && ports(match.namedSets).isEmpty { return false }
                return true
            }
            var key = ClassKey(holding: holding, named: [:], notNamed: [:])
            for signature in holding {
                let match = signatures[signature]
                if !match.namedSets.isEmpty { key.named[signature] = ports(match.namedSets) }
                if !match.notNamedSets.isEmpty { key.notNamed[signature] = ports(match.notNamedSets) }
            }
            let id: UInt32
            if let known = classOf[key] {
                id = known
            } else {
                id = UInt32(classes.members.count)
                classes.members.append(holding.flatMap { rulesOf[$0] }.sorted())
                var named: [Int: Set<PortKey>] = [:]
                var notNamed: [Int: Set<PortKey>] = [:]
                for (signature, ports) in key.named { for rule in rulesOf[signature] { named[rule] = ports } }
                for (signature, ports) in key.notNamed { for rule in rulesOf[signature] { notNamed[rule] = ports } }
                classes.named.append(named)
                classes.notNamed.append(notNamed)
                classOf[key] = id
            }
            entries.append(.init(cidr: prefix.cidr(family), addressClass: id))
        }
        return (entries, classes)
    }

    /// Address classes: each one's rules, and for rules with the peer's named ports the (protocol,
    /// port)s the peer has in their sets (`named`) and in their negated ones (`notNamed`).
    struct AddressClasses {
        var members: [[Int]] = []
        var named: [[Int: Set<PortKey>]] = []
        var notNamed: [[Int: Set<PortKey>]] = []
    }

    // MARK: Verdicts

    /// The verdict when exactly the rules `matched` (flat indices, ascending) match.
    func decide(matched: [Int]) -> TCProgram.Verdict {
        var next = 0
        for (tierIndex, tier) in program.tiers(direction).enumerated() {
            var passed = false
            while next < matched.count, rules[matched[next]].tier == tierIndex {
                let index = matched[next]
                next += 1
                if passed { continue }
                switch rules[index].rule.action {
                case .allow: return .init(.allow, rule: UInt32(index + 1))
                case .deny: return .init(.deny, rule: UInt32(index + 1))
                case .pass: passed = true
                case .log: continue
                }
            }
            if !passed && tier.defaultAction == .deny {
                return .init(.deny, rule: PolicyTableCompiler.tierDefaultDeny | UInt32(tierIndex))
            }
        }
        var passedProfile: Int? = nil
        while next < matched.count {
            let index = matched[next]
            next += 1
            guard let profile = rules[index].profile else { continue }
            if passedProfile == profile { continue }
            switch rules[index].rule.action {
            case .allow: return .init(.allow, rule: UInt32(index + 1))
            case .deny: return .init(.deny, rule: UInt32(index + 1))
            case .pass: passedProfile = profile
            case .log: continue
            }
        }
        return .init(.deny, rule: PolicyTableCompiler.noProfileMatched)
    }
}
