#if EBPF
    import Testing
    import TabbyCore
    @testable import TabbyEBPF
    @testable import TabbyPolicy

    /// The compiled tables, looked up as the tc program looks them up, against `PolicyEvaluator` on
    /// random policies and packets. The seed is in the test's arguments: a failure names it.
    @Suite struct PolicyTableCompilerTests {
        static let endpointAddress = IPAddress("10.65.0.2")!

        @Test(arguments: Array(UInt64(1)...UInt64(60)))
        func randomPoliciesMatchTheEvaluator(seed: UInt64) throws {
            var random = RandomPolicies(seed: seed)
            let ir = random.ir()
            let program = ir.endpoints[RandomPolicies.endpoint]!
            let evaluator = PolicyEvaluator(ir)
            for direction in Direction.allCases {
                let tables = try PolicyTableCompiler.compile(program, direction: direction, in: ir)
                for _ in 0..<150 {
                    let probe = random.probe()
                    let expected = evaluator.evaluate(probe.packet(direction)).verdict
                    let got = tables.verdict(
                        protocol: probe.protocolNumber, port: probe.policyPort, sourcePort: probe.sourcePort,
                        peer: probe.peer)
                    #expect(
                        (got.action == .allow) == (expected == .allow),
                        "seed \(seed) \(direction) \(probe): tables \(got), evaluator \(expected)")
                }
            }
        }

        /// Dual stack: IPv4 and IPv6 peers, each looked up in the tables of its family, against
        /// the evaluator. The pools mix the families (nets, notNets, IP sets and named ports with
        /// members of both, rules with `ipVersion` 4 or 6, ICMP and ICMPv6), so rules whose
        /// conditions are only of the other family meet every packet.
        @Test(arguments: Array(UInt64(1)...UInt64(60)))
        func randomDualStackPoliciesMatchTheEvaluator(seed: UInt64) throws {
            var random = RandomPolicies(seed: seed, dualStack: true)
            let ir = random.ir()
            let program = ir.endpoints[RandomPolicies.endpoint]!
            let evaluator = PolicyEvaluator(ir)
            for direction in Direction.allCases {
                var tables: [IPFamily: PolicyTables] = [:]
                for family in [IPFamily.v4, .v6] {
                    tables[family] = try PolicyTableCompiler.compile(
                        program, direction: direction, in: ir, family: family)
                    // Every address entry is of the table's family.
                    #expect(tables[family]!.addresses.allSatisfy { $0.cidr.family == family })
                }
                for _ in 0..<150 {
                    let probe = random.probe()
                    let expected = evaluator.evaluate(probe.packet(direction)).verdict
                    let got = tables[probe.peer.family]!.verdict(
                        protocol: probe.protocolNumber, port: probe.policyPort, sourcePort: probe.sourcePort,
                        peer: probe.peer)
                    #expect(
                        (got.action == .allow) == (expected == .allow),
                        "seed \(seed) \(direction) \(probe): tables \(got), evaluator \(expected)")
                }
            }
        }

        /// The family mismatches, one by one: nets only of IPv4 never match an IPv6 peer, notNets
        /// only of IPv4 exclude none, an IP set matches by its members of the packet's family,
        /// `ipVersion` 4 rules are dead for IPv6 (and 6 for IPv4), ICMPv6 is protocol 58.
        @Test func familyMismatchesAgreeWithTheEvaluator() throws {
            var set = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("all()")),
                members: [.net(CIDR("10.1.0.0/16")!), .net(CIDR("fd00:1::/64")!)])
            set.id = IPSetID(rawValue: "s:both")
            var denyV4Nets = CompiledRule(action: .deny)
            denyV4Nets.source.nets = [CIDR("10.0.0.0/8")!]
            var denyNotV4 = CompiledRule(action: .deny)
            denyNotV4.protocolNumber = 17
            denyNotV4.source.notNets = [CIDR("10.0.0.0/8")!]
            var allowSet = CompiledRule(action: .allow)
            allowSet.protocolNumber = 6
            allowSet.source.ipSets = [set.id]
            var allowV4Only = CompiledRule(action: .allow)
            allowV4Only.ipVersion = 4
            allowV4Only.protocolNumber = 6
            allowV4Only.destination.ports = [PortRange(8080, 8080)]
            var allowPing6 = CompiledRule(action: .allow)
            allowPing6.ipVersion = 6
            allowPing6.protocolNumber = 58
            allowPing6.icmp = ICMPMatch(type: 128)
            let id = PolicyID(namespace: "x", name: "p")
            var ir = PolicyIR()
            ir.ipSets[set.id] = set
            ir.policies[id] = PolicyProgram(
                id: id, tier: "default", order: 1,
                ingress: [denyV4Nets, denyNotV4, allowSet, allowV4Only, allowPing6], egress: [])
            let v6 = IPAddress("fd65::2")!
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress, v6],
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])], egress: [],
                profiles: [])
            ir.endpoints[program.endpoint] = program
            let evaluator = PolicyEvaluator(ir)
            let tables6 = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir, family: .v6)
            #expect(tables6.addresses.allSatisfy { $0.cidr.family == .v6 })
            let cases: [(String, UInt8, UInt16, Verdict)] = [
                ("fd00:1::5", 6, 80, .allow),  // in the set's IPv6 member; the IPv4 nets deny nothing here
                ("fd00:2::5", 6, 80, .deny),  // not in the set
                ("fd00:2::5", 6, 8080, .deny),  // the ipVersion 4 rule is dead for IPv6
                ("fd00:1::5", 17, 53, .deny),  // notNets only of IPv4: holds, denies
                ("2001:db8::1", 58, 128 << 8, .allow),  // ICMPv6 echo request
                ("2001:db8::1", 58, 129 << 8, .deny),
            ]
            for (peer, proto, port, verdict) in cases {
                let address = IPAddress(peer)!
                let packet = Packet(
                    from: .address(address), to: .endpoint(program.endpoint), protocol: .number(Int(proto)),
                    sourcePort: proto == 58 ? nil : 40000, destinationPort: proto == 58 ? nil : port,
                    icmpType: proto == 58 ? Int(port >> 8) : nil, icmpCode: proto == 58 ? 0 : nil)
                #expect(evaluator.evaluate(packet).verdict == verdict, "evaluator \(peer) \(proto) \(port)")
                #expect(
                    (tables6.verdict(protocol: proto, port: port, sourcePort: 40000, peer: address).action == .allow)
                        == (verdict == .allow), "tables \(peer) \(proto) \(port)")
            }
            // IPv4: the ipVersion 6 rule is dead, the IPv4 ones live.
            let tables4 = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir, family: .v4)
            #expect(tables4.addresses.allSatisfy { $0.cidr.family == .v4 })
            #expect(
                tables4.verdict(protocol: 6, port: 8080, sourcePort: 40000, peer: IPAddress("192.0.2.1")!).action
                    == .allow)
            #expect(
                tables4.verdict(protocol: 1, port: 8 << 8, sourcePort: 0, peer: IPAddress("192.0.2.1")!).action
                    == .deny)
        }

        @Test func tiersPassAndProfilesDecideInOrder() throws {
            var ir = PolicyIR()
            var deny81 = CompiledRule(action: .deny)
            deny81.protocolNumber = 6
            deny81.destination.ports = [PortRange(81, 81)]
            var passFrom10 = CompiledRule(action: .pass)
            passFrom10.source.nets = [CIDR("10.0.0.0/8")!]
            var allowTCP = CompiledRule(action: .allow)
            allowTCP.protocolNumber = 6
            ir.policies[PolicyID(namespace: nil, name: "first")] = PolicyProgram(
                id: PolicyID(namespace: nil, name: "first"), tier: "security", order: 1, ingress: [deny81, passFrom10],
                egress: [])
            ir.policies[PolicyID(namespace: nil, name: "second")] = PolicyProgram(
                id: PolicyID(namespace: nil, name: "second"), tier: "default", order: 1, ingress: [allowTCP], egress: []
            )
            ir.profiles["kns.x"] = ProfileProgram(name: "kns.x", ingress: [CompiledRule(action: .allow)], egress: [])
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress],
                ingress: [
                    TierBinding(
                        name: "security", order: 1, defaultAction: .deny,
                        policies: [PolicyID(namespace: nil, name: "first")]),
                    TierBinding(
                        name: "default", order: 2, defaultAction: .deny,
                        policies: [PolicyID(namespace: nil, name: "second")]),
                ],
                egress: [], profiles: ["kns.x"])
            let tables = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            // 10/8 passes the security tier; TCP is then allowed by the default tier; UDP meets its default deny.
            #expect(
                tables.verdict(protocol: 6, port: 80, sourcePort: 40000, peer: IPv4Address("10.1.1.1")!).action
                    == .allow)
            #expect(
                tables.verdict(protocol: 17, port: 80, sourcePort: 40000, peer: IPv4Address("10.1.1.1")!).action
                    == .deny)
            // Port 81 is denied in the first tier, before any Pass.
            #expect(
                tables.verdict(protocol: 6, port: 81, sourcePort: 40000, peer: IPv4Address("10.1.1.1")!).action == .deny
            )
            // Outside 10/8 the security tier's default denies.
            #expect(
                tables.verdict(protocol: 6, port: 80, sourcePort: 40000, peer: IPv4Address("192.0.2.1")!)
                    == .init(.deny, rule: 0x8000_0000))
            // Egress: no tiers, the profile has no egress rules: no profile matched.
            let egress = try PolicyTableCompiler.compile(program, direction: .egress, in: ir)
            #expect(egress.verdicts.isEmpty)
            #expect(egress.defaultVerdict == .init(.deny, rule: PolicyTableCompiler.noProfileMatched))
        }

        /// 10,000 rules, each one peer /32 and one port: the tables stay proportional to the rules.
        @Test func tenThousandRulesStayProportional() throws {
            var ir = PolicyIR()
            var rules: [CompiledRule] = []
            for index in 0..<10_000 {
                var rule = CompiledRule(action: .allow)
                rule.protocolNumber = 6
                rule.destination.ports = [PortRange(UInt16(1000 + index % 500), UInt16(1000 + index % 500))]
                rule.source.nets = [CIDR(network: .v4(IPv4Address(0x0B00_0000 + UInt32(index))), prefixLength: 32)]
                rules.append(rule)
            }
            let id = PolicyID(namespace: "x", name: "big")
            ir.policies[id] = PolicyProgram(id: id, tier: "default", order: 1, ingress: rules, egress: [])
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress],
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])], egress: [],
                profiles: [])
            let tables = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            #expect(tables.verdicts.count == 10_000)
            #expect(tables.addresses.count == 10_001)
            #expect(
                tables.verdict(protocol: 6, port: 1007, sourcePort: 40000, peer: IPv4Address(0x0B00_0000 + 507)).action
                    == .allow)
            #expect(
                tables.verdict(protocol: 6, port: 1008, sourcePort: 40000, peer: IPv4Address(0x0B00_0000 + 507)).action
                    == .deny)
        }

        @Test func unsupportedMatchesAreNamed() {
            // The endpoint has two IPv4 addresses and the rule holds for one of them only.
            var rule = CompiledRule(action: .allow)
            rule.destination.nets = [CIDR("10.65.0.2/32")!]
            let id = PolicyID(namespace: "x", name: "p")
            var ir = PolicyIR()
            ir.policies[id] = PolicyProgram(id: id, tier: "default", order: 1, ingress: [rule], egress: [])
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress, IPAddress("10.65.0.3")!],
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])], egress: [],
                profiles: [])
            #expect(
                throws: PolicyTableCompiler.Error.unsupported(
                    "x/p ingress 0: rules that tell the endpoint's IPv4 addresses apart")
            ) {
                try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            }
        }

        /// Named source ports: the peer's (ingress) hold only where the peer has that port, the
        /// endpoint's own (egress) are its ports.
        @Test func namedSourcePortsAreThePortsOfTheirOwner() throws {
            var named = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("all()")),
                members: [
                    .addressPort(IPAddress("10.1.2.3")!, protocolNumber: 6, port: 80),
                    .addressPort(IPAddress("10.1.2.4")!, protocolNumber: 6, port: 1500),
                    .addressPort(Self.endpointAddress, protocolNumber: 6, port: 8080),
                ])
            named.id = IPSetID(rawValue: "p:web")
            var fromNamed = CompiledRule(action: .allow)
            fromNamed.protocolNumber = 6
            fromNamed.source.namedPortSets = [named.id]
            var notFromNamed = CompiledRule(action: .allow)
            notFromNamed.protocolNumber = 17
            notFromNamed.source.notNamedPortSets = [named.id]
            let id = PolicyID(namespace: "x", name: "p")
            var ir = PolicyIR()
            ir.ipSets[named.id] = named
            ir.policies[id] = PolicyProgram(
                id: id, tier: "default", order: 1, ingress: [fromNamed], egress: [fromNamed, notFromNamed])
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress],
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])],
                egress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])], profiles: [])
            let ingress = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            let (a, b) = (IPv4Address("10.1.2.3")!, IPv4Address("10.1.2.4")!)
            #expect(ingress.verdict(protocol: 6, port: 443, sourcePort: 80, peer: a).action == .allow)
            #expect(ingress.verdict(protocol: 6, port: 443, sourcePort: 1500, peer: a).action == .deny)
            #expect(ingress.verdict(protocol: 6, port: 443, sourcePort: 1500, peer: b).action == .allow)
            #expect(ingress.verdict(protocol: 6, port: 443, sourcePort: 80, peer: b).action == .deny)
            #expect(ingress.verdict(protocol: 6, port: 443, sourcePort: 8080, peer: a).action == .deny)
            let egress = try PolicyTableCompiler.compile(program, direction: .egress, in: ir)
            #expect(egress.verdict(protocol: 6, port: 443, sourcePort: 8080, peer: a).action == .allow)
            #expect(egress.verdict(protocol: 6, port: 443, sourcePort: 80, peer: a).action == .deny)
            #expect(egress.verdict(protocol: 17, port: 443, sourcePort: 8080, peer: a).action == .allow)
        }

        /// The peer's source ports on ingress, the endpoint's own on egress: only the port classes of
        /// rules that name them are refined, and a program without them has no source-port tables.
        @Test func sourcePortsRefineOnlyTheClassesThatNeedThem() throws {
            var fromHighPorts = CompiledRule(action: .allow)
            fromHighPorts.protocolNumber = 6
            fromHighPorts.destination.ports = [PortRange(80, 80)]
            fromHighPorts.source.ports = [PortRange(1024, 65535)]
            var notFromDNS = CompiledRule(action: .allow)
            notFromDNS.protocolNumber = 17
            notFromDNS.source.notPorts = [PortRange(53, 53)]
            var web = CompiledRule(action: .allow)
            web.protocolNumber = 6
            web.destination.ports = [PortRange(443, 443)]
            let id = PolicyID(namespace: "x", name: "p")
            var ir = PolicyIR()
            ir.policies[id] = PolicyProgram(
                id: id, tier: "default", order: 1, ingress: [fromHighPorts, notFromDNS, web], egress: [web])
            let program = EndpointProgram(
                endpoint: RandomPolicies.endpoint, addresses: [Self.endpointAddress],
                ingress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])],
                egress: [TierBinding(name: "default", order: 1, defaultAction: .deny, policies: [id])], profiles: [])
            let tables = try PolicyTableCompiler.compile(program, direction: .ingress, in: ir)
            let peer = IPv4Address("192.0.2.1")!
            #expect(tables.verdict(protocol: 6, port: 80, sourcePort: 40000, peer: peer).action == .allow)
            #expect(tables.verdict(protocol: 6, port: 80, sourcePort: 1023, peer: peer).action == .deny)
            #expect(tables.verdict(protocol: 6, port: 443, sourcePort: 53, peer: peer).action == .allow)
            #expect(tables.verdict(protocol: 17, port: 5000, sourcePort: 53, peer: peer).action == .deny)
            #expect(tables.verdict(protocol: 17, port: 5000, sourcePort: 54, peer: peer).action == .allow)
            // Port 443's class (and every class without those rules) skips the source port.
            let refined = tables.ports.filter { $0.portClass & TCProgram.bySourcePort != 0 }
            #expect(!refined.isEmpty && refined.count < tables.ports.count)
            #expect(
                tables.ports.contains { $0.protocolNumber == 6 && $0.ports == 443...443 }
                    && tables.ports.filter { $0.protocolNumber == 6 && $0.ports == 443...443 }
                        .allSatisfy { $0.portClass & TCProgram.bySourcePort == 0 }
            )
            // Verdicts name only final classes.
            #expect(tables.verdicts.allSatisfy { $0.portClass & TCProgram.bySourcePort == 0 })
            let egress = try PolicyTableCompiler.compile(program, direction: .egress, in: ir)
            #expect(egress.sourcePorts.isEmpty)
            #expect(egress.ports.allSatisfy { $0.portClass & TCProgram.bySourcePort == 0 })
        }
    }

    /// A random endpoint program: up to three tiers of up to three policies of up to four rules each,
    /// then a profile, drawn from small pools so that rules overlap and interact.
    struct RandomPolicies {
        static let endpoint = EndpointKey(namespace: "x", name: "a")
        var state: UInt64

        init(seed: UInt64, dualStack: Bool = false) {
            state = seed &* 0x9e37_79b9_7f4a_7c15 | 1
            self.dualStack = dualStack
        }

        mutating func next(_ bound: Int) -> Int {
            // SplitMix64
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }

        mutating func pick<T>(_ values: [T]) -> T { values[next(values.count)] }

        static let cidrs = [
            "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.168.0.0/16", "0.0.0.0/0", "10.1.2.128/25",
        ]
        .map { CIDR($0)! }
        static let localCIDRs = ["10.65.0.0/16", "10.66.0.0/16", "10.65.0.2/32"].map { CIDR($0)! }
        static let peers = ["10.1.2.3", "10.1.2.4", "10.1.2.200", "10.1.3.1", "10.2.0.1", "192.168.1.1", "8.8.8.8"]
            .map { IPAddress($0)! }
        /// Dual stack: added to the pools above.
        static let cidrs6 = ["fd00::/8", "fd00:1::/32", "fd00:1::3/128", "::/0", "fd00:1::80/121", "fd00:1:2::/48"]
            .map { CIDR($0)! }
        static let localCIDRs6 = ["fd65::/64", "fd66::/64", "fd65::2/128"].map { CIDR($0)! }
        static let peers6 = ["fd00:1::3", "fd00:1::4", "fd00:1::c8", "fd00:1:2::1", "fd01::1", "2001:db8::1"]
            .map { IPAddress($0)! }
        static let endpointAddress6 = IPAddress("fd65::2")!
        var dualStack = false
        var cidrPool: [CIDR] { dualStack ? Self.cidrs + Self.cidrs6 : Self.cidrs }
        var localPool: [CIDR] { dualStack ? Self.localCIDRs + Self.localCIDRs6 : Self.localCIDRs }
        var icmpProtocols: [Int] { dualStack ? [1, 58] : [1] }
        static let ports: [UInt16] = [53, 79, 80, 81, 443, 1000, 1500, 2000, 2001, 8080]
        static let ranges = [(80, 80), (81, 81), (1000, 2000), (53, 80), (443, 443), (8080, 8080)]
            .map { PortRange(UInt16($0.0), UInt16($0.1)) }
        static let sourceRanges = [(1024, 65535), (53, 53), (80, 81), (1000, 2000), (40000, 40000), (8080, 8080)]
            .map { PortRange(UInt16($0.0), UInt16($0.1)) }
        static let sourcePorts: [UInt16] = [53, 80, 81, 1000, 1500, 2001, 8080, 40000, 50000]

        mutating func ir() -> PolicyIR {
            var ir = PolicyIR()
            for index in 0..<3 {
                var set = IPSet(
                    definition: IPSetDefinition(selector: try! Selector.parse("all()")),
                    members: Set((0..<(1 + next(3))).map { _ in IPSetMember.net(pick(cidrPool)) }))
                set.id = IPSetID(rawValue: "s:\(index)")
                ir.ipSets[set.id] = set
            }
            var named = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("all()")),
                members: [
                    .addressPort(PolicyTableCompilerTests.endpointAddress, protocolNumber: 6, port: 8080),
                    .addressPort(PolicyTableCompilerTests.endpointAddress, protocolNumber: 17, port: 53),
                    .addressPort(IPAddress("10.65.0.9")!, protocolNumber: 6, port: 81),
                ])
            if dualStack {
                named.members.formUnion([
                    .addressPort(Self.endpointAddress6, protocolNumber: 6, port: 8080),
                    .addressPort(Self.endpointAddress6, protocolNumber: 6, port: 1500),
                ])
            }
            named.id = IPSetID(rawValue: "p:0")
            ir.ipSets[named.id] = named
            // Named ports of destinations (egress): peers with ports, one address with two.
            var peerNamed = IPSet(
                definition: IPSetDefinition(selector: try! Selector.parse("all()")),
                members: [
                    .addressPort(IPAddress("10.1.2.3")!, protocolNumber: 6, port: 80),
                    .addressPort(IPAddress("10.1.2.3")!, protocolNumber: 17, port: 53),
                    .addressPort(IPAddress("10.1.2.4")!, protocolNumber: 6, port: 1500),
                    .addressPort(IPAddress("8.8.8.8")!, protocolNumber: 17, port: 53),
                    .addressPort(IPAddress("192.168.1.1")!, protocolNumber: 6, port: 81),
                ])
            if dualStack {
                peerNamed.members.formUnion([
                    .addressPort(IPAddress("fd00:1::3")!, protocolNumber: 6, port: 80),
                    .addressPort(IPAddress("fd00:1::4")!, protocolNumber: 6, port: 1500),
                    .addressPort(IPAddress("2001:db8::1")!, protocolNumber: 17, port: 53),
                ])
            }
            peerNamed.id = IPSetID(rawValue: "p:1")
            ir.ipSets[peerNamed.id] = peerNamed
            var tiers: [Direction: [TierBinding]] = [.ingress: [], .egress: []]
            for tierIndex in 0..<next(4) {
                var ids: [PolicyID] = []
                for policyIndex in 0..<(1 + next(3)) {
                    let id = PolicyID(namespace: "x", name: "t\(tierIndex)p\(policyIndex)")
                    ids.append(id)
                    ir.policies[id] = PolicyProgram(
                        id: id, tier: "t\(tierIndex)", order: Double(policyIndex),
                        ingress: (0..<next(5)).map { _ in rule(.ingress) },
                        egress: (0..<next(5)).map { _ in rule(.egress) })
                }
                for direction in Direction.allCases where next(4) != 0 {
                    tiers[direction]!.append(
                        TierBinding(
                            name: "t\(tierIndex)", order: Double(tierIndex),
                            defaultAction: next(2) == 0 ? .deny : .pass,
                            policies: ids))
                }
            }
            ir.profiles["prof"] = ProfileProgram(
                name: "prof", ingress: (0..<next(3)).map { _ in rule(.ingress) },
                egress: (0..<next(3)).map { _ in rule(.egress) })
            var addresses = [PolicyTableCompilerTests.endpointAddress]
            if dualStack {
                addresses = next(2) == 0 ? addresses + [Self.endpointAddress6] : [Self.endpointAddress6] + addresses
            }
            ir.endpoints[Self.endpoint] = EndpointProgram(
                endpoint: Self.endpoint, addresses: addresses,
                ingress: tiers[.ingress]!, egress: tiers[.egress]!,
                profiles: next(4) == 0 ? ["missing", "prof"] : ["prof"])
            return ir
        }

        mutating func rule(_ direction: Direction) -> CompiledRule {
            var rule = CompiledRule(action: pick([.allow, .allow, .deny, .pass, .log]))
            switch next(6) {
            case 0: rule.protocolNumber = 6
            case 1: rule.protocolNumber = 17
            case 2:
                rule.protocolNumber = pick(icmpProtocols)
                if next(2) == 0 {
                    rule.icmp = ICMPMatch(type: pick([0, 3, 8, 128, 129]), code: next(2) == 0 ? nil : pick([0, 1]))
                }
            case 3: rule.notProtocolNumber = pick([6, 17] + icmpProtocols)
            default: break
            }
            if dualStack && next(5) == 0 { rule.ipVersion = pick([4, 6]) }
            if rule.protocolNumber == 6 || rule.protocolNumber == 17 {
                if next(2) == 0 { rule.destination.ports = (0..<(1 + next(2))).map { _ in pick(Self.ranges) } }
                if next(4) == 0 { rule.destination.notPorts = [pick(Self.ranges)] }
                if direction == .ingress && next(4) == 0 { rule.destination.namedPortSets = [IPSetID(rawValue: "p:0")] }
                if direction == .egress && next(3) == 0 { rule.destination.namedPortSets = [IPSetID(rawValue: "p:1")] }
                if direction == .egress && next(6) == 0 {
                    rule.destination.notNamedPortSets = [IPSetID(rawValue: "p:1")]
                }
            }
            if (rule.protocolNumber == 1 || rule.protocolNumber == 58) && rule.icmp == nil && next(4) == 0 {
                rule.notICMP = ICMPMatch(type: pick([8, 128]))
            }
            var peer = CompiledEntityMatch()
            if next(2) == 0 { peer.nets = (0..<(1 + next(2))).map { _ in pick(cidrPool) } }
            if next(4) == 0 { peer.notNets = [pick(cidrPool)] }
            if next(3) == 0 { peer.ipSets = [IPSetID(rawValue: "s:\(next(3))")] }
            if next(5) == 0 { peer.notIPSets = [IPSetID(rawValue: "s:\(next(3))")] }
            var local = CompiledEntityMatch()
            if next(5) == 0 { local.nets = [pick(localPool)] }
            if next(8) == 0 { local.notNets = [pick(localPool)] }
            if direction == .ingress {
                rule.source = peer
                rule.destination.nets = local.nets
                rule.destination.notNets = local.notNets
            } else {
                rule.source = local
                rule.destination.nets = peer.nets
                rule.destination.notNets = peer.notNets
                rule.destination.ipSets = peer.ipSets
                rule.destination.notIPSets = peer.notIPSets
            }
            // Source ports: the peer's on ingress (its named ports a relation with its address),
            // the endpoint's own on egress (its named ports decided at compile time). Mostly on
            // TCP and UDP rules, as Calico requires, sometimes on rules of any protocol.
            if rule.protocolNumber == 6 || rule.protocolNumber == 17 || next(6) == 0 {
                if next(3) == 0 { rule.source.ports = (0..<(1 + next(2))).map { _ in pick(Self.sourceRanges) } }
                if next(4) == 0 { rule.source.notPorts = [pick(Self.sourceRanges)] }
                let named = IPSetID(rawValue: direction == .ingress ? "p:1" : "p:0")
                if next(4) == 0 { rule.source.namedPortSets = [named] }
                if next(6) == 0 { rule.source.notNamedPortSets = [named] }
            }
            return rule
        }

        struct Probe: CustomStringConvertible {
            var peer: IPAddress
            var protocolNumber: UInt8
            var port: UInt16
            var sourcePort: UInt16
            var icmpType: Int
            var icmpCode: Int

            /// The value the tc program puts in the port field.
            var policyPort: UInt16 {
                switch protocolNumber {
                case 6, 17: return port
                case 1, 58: return UInt16(icmpType) << 8 | UInt16(icmpCode)
                default: return 0
                }
            }

            func packet(_ direction: Direction) -> Packet {
                let peer = PacketPeer.address(self.peer)
                let endpoint = PacketPeer.endpoint(RandomPolicies.endpoint)
                let ports = protocolNumber == 6 || protocolNumber == 17
                let icmp = protocolNumber == 1 || protocolNumber == 58
                return Packet(
                    from: direction == .ingress ? peer : endpoint, to: direction == .ingress ? endpoint : peer,
                    protocol: .number(Int(protocolNumber)), sourcePort: ports ? sourcePort : nil,
                    destinationPort: ports ? port : nil, icmpType: icmp ? icmpType : nil,
                    icmpCode: icmp ? icmpCode : nil)
            }

            var description: String {
                "\(peer) proto \(protocolNumber) port \(port) from port \(sourcePort) icmp \(icmpType)/\(icmpCode)"
            }
        }

        /// A packet as the tc program sees it: ICMP is protocol 1 in IPv4 and 58 in IPv6.
        mutating func probe() -> Probe {
            let peer = dualStack && next(2) == 0 ? pick(Self.peers6) : pick(Self.peers)
            let icmp: UInt8 = peer.family == .v4 ? 1 : 58
            return Probe(
                peer: peer, protocolNumber: pick([6, 6, 17, 17, icmp, 47]), port: pick(Self.ports),
                sourcePort: pick(Self.sourcePorts),
                icmpType: peer.family == .v4 ? pick([0, 3, 8]) : pick([128, 129, 1]), icmpCode: pick([0, 1]))
        }
    }
#endif
