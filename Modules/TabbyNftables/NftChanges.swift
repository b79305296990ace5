/// One step of an apply, in the order it must be sent (one transaction): objects before what
/// refers to them, removals after nothing refers to them any more.
public enum NftChange: Sendable, Hashable {
    /// The whole table, replaced in the same transaction (first apply, reconcile after drift).
    case replaceTable(NftPlan)
    case addSet(name: String, NftPlanSet)
    case addElements(set: String, [String])
    case deleteElements(set: String, [String])
    case addMapElements(map: String, [String: String])
    case deleteMapElements(map: String, [String])
    case addChain(name: String, NftPlanChain)
    /// Flush and re-add the rules of a chain that changed (Calico does the same: no rule handles).
    case rewriteChain(name: String, NftPlanChain)
    case deleteChain(name: String)
    case deleteSet(name: String)

    /// `nft -f` syntax (the text backend, tests, and the `nft -f` peer in the benchmarks).
    public var nftText: String {
        let table = "inet \(NftPlan.tableName)"
        switch self {
        case .replaceTable(let plan):
            return "add table \(table)\ndelete table \(table)\n" + plan.nftText
        case .addSet(let name, let set):
            var text = "add set \(table) \(name) { type \(set.kind.nftType);"
            if set.kind.isInterval { text += " flags interval;" }
            text += " }\n"
            if !set.elements.isEmpty { text += NftChange.addElements(set: name, set.elements.sorted()).nftText }
            return text
        case .addElements(let set, let elements):
            return "add element \(table) \(set) { \(elements.joined(separator: ", ")) }\n"
        case .deleteElements(let set, let elements):
            return "delete element \(table) \(set) { \(elements.joined(separator: ", ")) }\n"
        case .addMapElements(let map, let elements):
            let items = elements.sorted { $0.key < $1.key }.map { "\"\($0.key)\" : jump \($0.value)" }
            return "add element \(table) \(map) { \(items.joined(separator: ", ")) }\n"
        case .deleteMapElements(let map, let keys):
            return "delete element \(table) \(map) { \(keys.map { "\"\($0)\"" }.joined(separator: ", ")) }\n"
        case .addChain(let name, let chain):
            return "add chain \(table) \(name)\n"
                + chain.rules.map { "add rule \(table) \(name) \($0.nftText)\n" }.joined()
        case .rewriteChain(let name, let chain):
            return "flush chain \(table) \(name)\n"
                + chain.rules.map { "add rule \(table) \(name) \($0.nftText)\n" }.joined()
        case .deleteChain(let name):
            return "delete chain \(table) \(name)\n"
        case .deleteSet(let name):
            return "delete set \(table) \(name)\n"
        }
    }

    /// The steps from `old` to `new` (a table replacement when there is no `old`).
    public static func between(_ old: NftPlan?, _ new: NftPlan) -> [NftChange] {
        guard let old else { return [.replaceTable(new)] }
        var adds: [NftChange] = []
        var removals: [NftChange] = []
        for (name, set) in new.sets.sorted(by: { $0.key < $1.key }) {
            guard let before = old.sets[name] else {
                adds.append(.addSet(name: name, set))
                continue
            }
            if before.kind != set.kind {
                // A set whose type changed is a different set: never happens with stable names.
                return [.replaceTable(new)]
            }
            let added = set.elements.subtracting(before.elements).sorted()
            let removed = before.elements.subtracting(set.elements).sorted()
            if !added.isEmpty { adds.append(.addElements(set: name, added)) }
            if !removed.isEmpty { removals.append(.deleteElements(set: name, removed)) }
        }
        // Chains: new ones empty first (maps and rules may jump to each other), then rules.
        var rewrites: [NftChange] = []
        for (name, chain) in new.chains.sorted(by: { $0.key < $1.key }) {
            if let before = old.chains[name] {
                if before.base != chain.base { return [.replaceTable(new)] }
                if before.rules != chain.rules { rewrites.append(.rewriteChain(name: name, chain)) }
            } else {
                // A new chain (a base chain keeps its hook) is added empty, then filled.
                adds.append(.addChain(name: name, NftPlanChain(base: chain.base)))
                rewrites.append(.rewriteChain(name: name, chain))
            }
        }
        var mapChanges: [NftChange] = []
        var mapRemovals: [NftChange] = []
        for (name, elements) in new.maps.sorted(by: { $0.key < $1.key }) {
            let before = old.maps[name] ?? [:]
            let changed = elements.filter { before[$0.key] != $0.value }
            let removedKeys = before.keys.filter { elements[$0] == nil || elements[$0] != before[$0] }.sorted()
            if !removedKeys.isEmpty { mapRemovals.append(.deleteMapElements(map: name, removedKeys)) }
            if !changed.isEmpty { mapChanges.append(.addMapElements(map: name, changed)) }
        }
        for name in old.chains.keys.sorted() where new.chains[name] == nil {
            removals.append(.deleteChain(name: name))
        }
        for name in old.sets.keys.sorted() where new.sets[name] == nil {
            removals.append(.deleteSet(name: name))
        }
        // Removed map entries go before new ones (a changed entry is deleted, then re-added).
        return adds + rewrites + mapRemovals + mapChanges + removals
    }
}
