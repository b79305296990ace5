import TabbyCore

/// An inverted index from labels to the objects carrying them, so a selector is matched
/// against the few objects that can satisfy it instead of every object.
///
/// `candidates(for:)` narrows a selector through its indexable parts (`==`, `in`, `has`, and
/// `contains`/`starts with`/`ends with` by the label's distinct values), combined through `&&`
/// (the smallest operand's candidates) and `||` (the union, when every operand narrows). What
/// it returns is always a superset of the matches; `matching` then evaluates the selector
/// exactly on those. A selector the index cannot narrow (`all()`, `!`, `!=`, `not in`,
/// `global()`) falls back to a scan. Labels are those the selector sees (inherited ones
/// included): the caller supplies them.
struct LabelIndex<Item: Hashable & Sendable>: Sendable {
    private var labelsByItem: [Item: [String: String]] = [:]
    /// label key -> label value -> items with that label value.
    private var itemsByValue: [String: [String: Set<Item>]] = [:]
    /// label key -> items having the label (any value).
    private var itemsByKey: [String: Set<Item>] = [:]

    init() {}

    var count: Int { labelsByItem.count }

    /// Every indexed item.
    var items: Dictionary<Item, [String: String]>.Keys { labelsByItem.keys }

    func labels(of item: Item) -> [String: String]? { labelsByItem[item] }

    /// Adds, relabels (`labels` not nil) or removes (`labels` nil) an item.
    mutating func update(_ item: Item, labels: [String: String]?) {
        let old = labelsByItem[item] ?? [:]
        let new = labels ?? [:]
        for (key, value) in old where new[key] != value {
            itemsByValue[key]?[value]?.remove(item)
            if itemsByValue[key]?[value]?.isEmpty == true { itemsByValue[key]![value] = nil }
            if new[key] == nil {
                itemsByKey[key]?.remove(item)
                if itemsByKey[key]?.isEmpty == true {
                    itemsByKey[key] = nil
                    itemsByValue[key] = nil
                }
            }
        }
        for (key, value) in new where old[key] != value {
            itemsByValue[key, default: [:]][value, default: []].insert(item)
            if old[key] == nil { itemsByKey[key, default: []].insert(item) }
        }
        labelsByItem[item] = labels
    }

    /// A superset of the items `expression` matches, or nil when the index cannot narrow it.
    func candidates(for expression: SelectorExpression) -> Set<Item>? {
        switch expression {
        case .equal(let key, let value):
            return itemsByValue[key]?[value] ?? []
        case .in(let key, let values):
            guard let byValue = itemsByValue[key] else { return [] }
            var result: Set<Item> = []
            for value in values { if let items = byValue[value] { result.formUnion(items) } }
            return result
        case .has(let key):
            return itemsByKey[key] ?? []
        case .contains(let key, let value):
            return union(key) { SelectorExpression.contains(key, value).matches([key: $0]) }
        case .startsWith(let key, let value):
            return union(key) { SelectorExpression.startsWith(key, value).matches([key: $0]) }
        case .endsWith(let key, let value):
            return union(key) { SelectorExpression.endsWith(key, value).matches([key: $0]) }
        case .and(let operands):
            // Any operand's candidates bound the conjunction: take the smallest.
            var best: Set<Item>?
            for operand in operands {
                guard let items = candidates(for: operand) else { continue }
                if best == nil || items.count < best!.count { best = items }
                if best!.isEmpty { break }
            }
            return best
        case .or(let operands):
            var result: Set<Item> = []
            for operand in operands {
                guard let items = candidates(for: operand) else { return nil }
                result.formUnion(items)
            }
            return result
        case .all, .global, .notEqual, .notIn, .not:
            return nil
        }
    }

    private func union(_ key: String, where include: (String) -> Bool) -> Set<Item> {
        var result: Set<Item> = []
        for (value, items) in itemsByValue[key] ?? [:] where include(value) { result.formUnion(items) }
        return result
    }

    /// Whether the item is indexed and its labels satisfy `selector`.
    func matches(_ item: Item, _ selector: Selector) -> Bool {
        guard let labels = labelsByItem[item] else { return false }
        return selector.matches(labels)
    }

    /// Every indexed item `selector` matches.
    func matching(_ selector: Selector) -> [Item] {
        if let candidates = candidates(for: selector.expression) {
            return candidates.filter { matches($0, selector) }
        }
        return labelsByItem.compactMap { item, labels in selector.matches(labels) ? item : nil }
    }

    /// The items of `subset` that `selector` matches, by whichever of the index's candidates
    /// and `subset` is smaller.
    func matching(_ selector: Selector, within subset: Set<Item>) -> [Item] {
        if subset.count > 8, let candidates = candidates(for: selector.expression), candidates.count < subset.count {
            return candidates.filter { subset.contains($0) && matches($0, selector) }
        }
        return subset.filter { matches($0, selector) }
    }

    /// Every item by a full scan, without the index: the reference the index is tested against.
    func scanning(_ selector: Selector) -> [Item] {
        labelsByItem.compactMap { item, labels in selector.matches(labels) ? item : nil }
    }
}
