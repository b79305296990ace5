import TabbyCore
import TabbyDataplane

/// Commits plan changes as one libnftnl batch over netlink (no `nft` process): what tabbyd uses.
/// Each `NftChange` becomes the batch operations it means; `PlanMatch`es become the expressions
/// `nft` itself emits for them (nftables' `netlink_linearize.c`).
public struct NftNetlinkCommitter: NftCommitter {
    let socket: NftSocket
    static let table = NftPlan.tableName

    /// A socket in the caller's namespace, or in the one at `namespacePath`.
    public init(namespacePath: String? = nil) throws {
        if let namespacePath {
            socket = try NftSocket.open(inNamespaceAt: namespacePath)
        } else {
            socket = try NftSocket()
        }
    }

    public func commit(_ changes: [NftChange]) throws(DataplaneError) {
        var batch = NftBatch()
        do {
            for change in changes { try Self.add(change, to: &batch) }
            try socket.commit(batch)
        } catch let error as DataplaneError {
            throw error
        } catch {
            throw .kernel("nftables: \(error)")
        }
    }

    public func deleteTable() throws(DataplaneError) {
        var batch = NftBatch()
        batch.delete(table: NftTable(name: Self.table), ifExists: true)
        do { try socket.commit(batch) } catch { throw .kernel("nftables: \(error)") }
    }

    public func deleteOtherTabbyTables() throws(DataplaneError) -> [String] {
        do {
            let others = try socket.tables().filter {
                $0.name.hasPrefix("tabby") && !($0.family == .inet && $0.name == Self.table)
            }
            guard !others.isEmpty else { return [] }
            var batch = NftBatch()
            for table in others {
                batch.delete(table: NftTable(family: table.family, name: table.name), ifExists: true)
            }
            try socket.commit(batch)
            return others.map { "\($0.family) \($0.name)" }
        } catch {
            throw .kernel("nftables sweep: \(error)")
        }
    }

    public func readBack() throws(DataplaneError) -> NftKernelSummary? {
        do {
            guard try socket.tables().contains(where: { $0.family == .inet && $0.name == Self.table }) else {
                return nil
            }
            var chains: [String: Int] = [:]
            var rules: [String: [NftRule]] = [:]
            for chain in try socket.chains(table: Self.table) {
                let found = try socket.rules(table: Self.table, chain: chain.name)
                chains[chain.name] = found.count
                rules[chain.name] = found
            }
            var sets: [String: Int] = [:]
            var elements: [String: Set<NftSetElement>] = [:]
            for set in try socket.sets(table: Self.table) {
                let found = try socket.elements(of: set)
                if !set.isMap { sets[set.name] = found.count }
                elements[set.name] = Set(found)
            }
            return NftKernelSummary(
                chainRuleCounts: chains, setElementCounts: sets, content: .init(rules: rules, elements: elements))
        } catch {
            throw .kernel("nftables read-back: \(error)")
        }
    }

    /// How the table's content differs from `plan`, rule by rule and element by element, as
    /// reconcile reports it (`chain fw-cali1 rule 3 differs`, `set s-…-v4: 1 elements missing, 1 not
    /// wanted`). Empty when the kernel holds exactly what `plan` would write.
    static func differences(_ plan: NftPlan, found: NftKernelSummary.Content) throws(DataplaneError) -> [String] {
        var result: [String] = []
        do {
            for (name, chain) in plan.chains.sorted(by: { $0.key < $1.key }) {
                // Compared as the kernel dumps them: registers in canonical names, no handles.
                func canonical(_ rule: NftRule) -> NftRule {
                    var rule = rule
                    rule.expressions = rule.expressions.map(\.canonical)
                    rule.handle = nil
                    return rule
                }
                let wanted = try chain.rules.map { canonical(try ruleObject($0, chain: name)) }
                let have = (found.rules[name] ?? []).map(canonical)
                if let index = zip(wanted, have).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                    result.append("chain \(name) rule \(index + 1) differs from the compiled rule")
                }
            }
            for (name, set) in plan.sets.sorted(by: { $0.key < $1.key }) {
                let wanted = Set(try set.elements.map { try element($0, kind: set.kind) })
                result += elementDifference(name, wanted: wanted, have: found.elements[name] ?? [])
            }
            for (name, entries) in plan.maps.sorted(by: { $0.key < $1.key }) {
                let wanted = Set(entries.map { NftSetElement.ifname($0.key, .jump($0.value)) })
                result += elementDifference(name, wanted: wanted, have: found.elements[name] ?? [])
            }
        } catch let error as DataplaneError {
            throw error
        } catch {
            throw .kernel("comparing inet \(table): \(error)")
        }
        return result
    }

    private static func elementDifference(_ name: String, wanted: Set<NftSetElement>, have: Set<NftSetElement>)
        -> [String]
    {
        let missing = wanted.subtracting(have).count
        let unwanted = have.subtracting(wanted).count
        guard missing + unwanted > 0 else { return [] }
        return ["set \(name): \(missing) elements missing, \(unwanted) not wanted"]
    }

    // MARK: Changes to batch operations

    static func add(_ change: NftChange, to batch: inout NftBatch) throws {
        switch change {
        case .replaceTable(let plan):
            // Delete and recreate in the same transaction (Calico #13425): never a moment without rules.
            batch.delete(table: NftTable(name: table), ifExists: true)
            batch.add(NftTable(name: table))
            for (name, set) in plan.sets.sorted(by: { $0.key < $1.key }) {
                try add(.addSet(name: name, set), to: &batch)
            }
            for name in plan.maps.keys.sorted() { batch.add(mapObject(name)) }
            for (name, chain) in plan.chains.sorted(by: { $0.key < $1.key }) { batch.add(chainObject(name, chain)) }
            for (name, elements) in plan.maps.sorted(by: { $0.key < $1.key }) where !elements.isEmpty {
                try add(.addMapElements(map: name, elements), to: &batch)
            }
            for (name, chain) in plan.chains.sorted(by: { $0.key < $1.key }) {
                for rule in chain.rules { batch.add(try ruleObject(rule, chain: name)) }
            }
        case .addSet(let name, let set):
            let object = setObject(name, set.kind)
            batch.add(object)
            if !set.elements.isEmpty {
                batch.addElements(try set.elements.sorted().map { try element($0, kind: set.kind) }, to: object)
            }
        case .addElements(let name, let elements):
            guard let kind = kindOf(name) else { return }
            batch.addElements(try elements.map { try element($0, kind: kind) }, to: setObject(name, kind))
        case .deleteElements(let name, let elements):
            guard let kind = kindOf(name) else { return }
            batch.deleteElements(try elements.map { try element($0, kind: kind) }, from: setObject(name, kind))
        case .addMapElements(let map, let elements):
            batch.addElements(
                elements.sorted { $0.key < $1.key }.map { NftSetElement.ifname($0.key, .jump($0.value)) },
                to: mapObject(map))
        case .deleteMapElements(let map, let keys):
            batch.deleteElements(keys.map { NftSetElement(.ifname($0)) }, from: mapObject(map))
        case .addChain(let name, let chain):
            batch.add(chainObject(name, chain))
            for rule in chain.rules { batch.add(try ruleObject(rule, chain: name)) }
        case .rewriteChain(let name, let chain):
            batch.flush(chain: chainObject(name, chain))
            for rule in chain.rules { batch.add(try ruleObject(rule, chain: name)) }
        case .deleteChain(let name):
            batch.delete(chain: NftChain(table: table, name: name))
        case .deleteSet(let name):
            batch.delete(set: setObject(name, kindOf(name) ?? .ipv4Net))
        }
    }

    /// Set kinds follow from Tabby's names (`-v4`/`-v6`, `s-`/`p-`, the failsafe sets).
    static func kindOf(_ name: String) -> NftPlanSet.Kind? {
        if name.hasPrefix("failsafe-") { return .protocolPort }
        if name.hasPrefix("pools-") { return name.hasSuffix("-v6") ? .ipv6Net : .ipv4Net }
        let v6 = name.hasSuffix("-v6")
        if name.hasPrefix("p-") { return v6 ? .ipv6AddressProtocolPort : .ipv4AddressProtocolPort }
        if name.hasPrefix("s-") { return v6 ? .ipv6Net : .ipv4Net }
        return nil
    }

    static func setObject(_ name: String, _ kind: NftPlanSet.Kind) -> NftSet {
        switch kind {
        case .ipv4Net: return NftSet(table: table, name: name, keyType: [.ipv4Addr], isInterval: true)
        case .ipv6Net: return NftSet(table: table, name: name, keyType: [.ipv6Addr], isInterval: true)
        case .ipv4AddressProtocolPort:
            return NftSet(table: table, name: name, keyType: [.ipv4Addr, .inetProto, .inetService])
        case .ipv6AddressProtocolPort:
            return NftSet(table: table, name: name, keyType: [.ipv6Addr, .inetProto, .inetService])
        case .protocolPort: return NftSet(table: table, name: name, keyType: [.inetProto, .inetService])
        }
    }

    static func mapObject(_ name: String) -> NftSet {
        NftSet(table: table, name: name, keyType: [.ifname], dataType: .verdict)
    }

    static func chainObject(_ name: String, _ chain: NftPlanChain) -> NftChain {
        guard let base = chain.base else { return NftChain(table: table, name: name) }
        let hook: NftChain.Hook
        switch base.hook {
        case .input: hook = .input
        case .forward: hook = .forward
        case .output: hook = .output
        case .postrouting: hook = .postrouting
        }
        return NftChain(
            table: table, name: name, hook: hook, priority: base.priority,
            policy: base.policy == .accept ? .accept : .drop, type: base.type == .nat ? .nat : .filter)
    }

    /// A plan element (`10.0.0.0/8`, `10.0.0.5 . 6 . 80`, `6 . 22`) as a set key.
    static func element(_ text: String, kind: NftPlanSet.Kind) throws -> NftSetElement {
        let parts = text.split(separator: " . ").map { $0.trimmingCharacters(in: .whitespaces) }
        func bad() -> DataplaneError { .kernel("set element \"\(text)\" does not fit a \(kind.rawValue) set") }
        switch kind {
        case .ipv4Net, .ipv6Net:
            guard let cidr = CIDR(text), let prefix = NftPrefix(address: cidr.network.bytes, length: cidr.prefixLength)
            else { throw bad() }
            return NftSetElement(.prefix(prefix))
        case .ipv4AddressProtocolPort, .ipv6AddressProtocolPort:
            guard parts.count == 3, let address = IPAddress(parts[0]), let proto = UInt8(parts[1]),
                let port = UInt16(parts[2])
            else { throw bad() }
            return NftSetElement(.concat([.address(address.bytes), .inetProto(proto), .inetService(port)]))
        case .protocolPort:
            guard parts.count == 2, let proto = UInt8(parts[0]), let port = UInt16(parts[1]) else { throw bad() }
            return NftSetElement(.concat([.inetProto(proto), .inetService(port)]))
        }
    }

    // MARK: Rules

    static func ruleObject(_ rule: NftPlanRule, chain: String) throws -> NftRule {
        var expressions: [NftExpression] = []
        for match in rule.matches { expressions += try self.expressions(for: match) }
        expressions += verdict(rule.verdict)
        let comment = rule.comment.map { String($0.utf8.prefix(120)) ?? $0 }
        return NftRule(table: table, chain: chain, expressions: expressions, comment: comment)
    }

    static func hostOrder(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    static func bigEndian(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

    static func ifname(_ name: String, prefix: Bool) -> [UInt8] {
        let bytes = Array(name.utf8)
        // A wildcard compares only the prefix; a full name compares IFNAMSIZ bytes, NUL-padded.
        return prefix ? bytes : bytes + [UInt8](repeating: 0, count: max(0, 16 - bytes.count))
    }

    static func addressPayload(source: Bool, family: NftFamily, into register: NftRegister) -> NftExpression {
        let v4 = family == .ipv4
        let offset: UInt32 = v4 ? (source ? 12 : 16) : (source ? 8 : 24)
        return .payload(.network, offset: offset, length: v4 ? 4 : 16, into: register)
    }

    static func expressions(for match: PlanMatch) throws -> [NftExpression] {
        let r1 = NftRegister.r1
        switch match {
        case .ctState(let established, let related, let invalid, let new):
            var mask: UInt32 = 0
            if invalid { mask |= 1 }
            if established { mask |= 2 }
            if related { mask |= 4 }
            if new { mask |= 8 }
            return [
                .ct(.state, into: r1), .bitwise(source: r1, destination: r1, mask: hostOrder(mask), xor: hostOrder(0)),
                .cmp(.neq, r1, hostOrder(0)),
            ]
        case .nfproto(let family):
            return [.meta(.nfproto, into: r1), .cmp(.eq, r1, [family == .ipv4 ? 2 : 10])]
        case .iifname(let name): return [.meta(.iifname, into: r1), .cmp(.eq, r1, ifname(name, prefix: false))]
        case .oifname(let name): return [.meta(.oifname, into: r1), .cmp(.eq, r1, ifname(name, prefix: false))]
        case .iifnamePrefix(let prefix):
            return [.meta(.iifname, into: r1), .cmp(.eq, r1, ifname(prefix, prefix: true))]
        case .oifnamePrefix(let prefix):
            return [.meta(.oifname, into: r1), .cmp(.eq, r1, ifname(prefix, prefix: true))]
        case .notIifnamePrefix(let prefix):
            return [.meta(.iifname, into: r1), .cmp(.neq, r1, ifname(prefix, prefix: true))]
        case .notOifnamePrefix(let prefix):
            return [.meta(.oifname, into: r1), .cmp(.neq, r1, ifname(prefix, prefix: true))]
        case .l4proto(let number):
            return [.meta(.l4proto, into: r1), .cmp(.eq, r1, [UInt8(truncatingIfNeeded: number)])]
        case .notL4proto(let number):
            return [.meta(.l4proto, into: r1), .cmp(.neq, r1, [UInt8(truncatingIfNeeded: number)])]
        case .address(let source, let cidr, let negated):
            let family: NftFamily = cidr.family == .v4 ? .ipv4 : .ipv6
            var result = [addressPayload(source: source, family: family, into: r1)]
            if cidr.prefixLength < cidr.network.bitWidth {
                let mask = cidr.netmask.bytes
                result.append(
                    .bitwise(
                        source: r1, destination: r1, mask: mask, xor: [UInt8](repeating: 0, count: mask.count)))
            }
            result.append(.cmp(negated ? .neq : .eq, r1, cidr.network.bytes))
            return result
        case .addressInSet(let source, let family, let set, let negated):
            return [
                addressPayload(source: source, family: family, into: r1),
                .lookup(set: set, source: r1, destination: nil, inverted: negated),
            ]
        case .addressProtocolPortInSet(let source, let family, let set, let negated):
            // Concatenations use the 32-bit registers, each field padded to 4 bytes.
            let fields: UInt32 = family == .ipv4 ? 1 : 4
            return [
                addressPayload(source: source, family: family, into: .r32(0)),
                .meta(.l4proto, into: .r32(fields)),
                .payload(.transport, offset: source ? 0 : 2, length: 2, into: .r32(fields + 1)),
                .lookup(set: set, source: .r32(0), destination: nil, inverted: negated),
            ]
        case .port(let source, let lower, let upper, let negated):
            let load = NftExpression.payload(.transport, offset: source ? 0 : 2, length: 2, into: r1)
            if lower == upper { return [load, .cmp(negated ? .neq : .eq, r1, bigEndian(lower))] }
            return [load, .range(negated ? .neq : .eq, r1, from: bigEndian(lower), to: bigEndian(upper))]
        case .icmp(_, let type, let code, let negated):
            var result: [NftExpression] = [
                .payload(.transport, offset: 0, length: 1, into: r1), .cmp(negated ? .neq : .eq, r1, [type]),
            ]
            if let code { result += [.payload(.transport, offset: 1, length: 1, into: r1), .cmp(.eq, r1, [code])] }
            return result
        case .markZero(let mask, let zero):
            return [
                .meta(.mark, into: r1), .bitwise(source: r1, destination: r1, mask: hostOrder(mask), xor: hostOrder(0)),
                .cmp(zero ? .eq : .neq, r1, hostOrder(0)),
            ]
        case .protocolPortInSet(let set, let source):
            return [
                .meta(.l4proto, into: .r32(0)),
                .payload(.transport, offset: source ? 0 : 2, length: 2, into: .r32(1)),
                .lookup(set: set, source: .r32(0), destination: nil, inverted: false),
            ]
        }
    }

    static func verdict(_ verdict: PlanVerdict) -> [NftExpression] {
        let r1 = NftRegister.r1
        switch verdict {
        case .accept: return [.verdict(.accept)]
        case .drop: return [.verdict(.drop)]
        case .return: return [.verdict(.return)]
        case .jump(let chain): return [.verdict(.jump(chain))]
        case .markReturn(let bits):
            return [
                .meta(.mark, into: r1),
                .bitwise(source: r1, destination: r1, mask: hostOrder(~bits), xor: hostOrder(bits)),
                .metaSet(.mark, from: r1), .verdict(.return),
            ]
        case .clearMark(let bits):
            return [
                .meta(.mark, into: r1),
                .bitwise(source: r1, destination: r1, mask: hostOrder(~bits), xor: hostOrder(0)),
                .metaSet(.mark, from: r1),
            ]
        case .log(let prefix): return [.log(prefix: prefix)]
        case .masquerade: return [.masquerade]
        case .dispatch(let map, let inbound):
            return [
                .meta(inbound ? .iifname : .oifname, into: r1),
                .lookup(set: map, source: r1, destination: .verdict, inverted: false),
            ]
        }
    }
}
