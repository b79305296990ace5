// The syntax tree of a Calico label selector, its evaluation and its canonical text.
//
// Evaluation follows Calico's lib/selector/parser/ast.go: `==`, `in`, `contains`, `starts with` and
// `ends with` are false when the label is absent, `!=` and `not in` are true. String comparisons are
// byte-wise on UTF-8 (as in Go), not Unicode canonical equivalence, and do not allocate.

/// A parsed selector expression. Sets (`in`, `notIn`) hold members sorted (byte-wise) and unique.
public indirect enum SelectorExpression: Hashable, Sendable {
    /// `all()`: matches everything.
    case all
    /// `global()`: matches objects that are not namespaced.
    case global
    /// `has(label)`.
    case has(String)
    /// `label == "value"`.
    case equal(String, String)
    /// `label != "value"`.
    case notEqual(String, String)
    /// `label contains "value"`.
    case contains(String, String)
    /// `label starts with "value"`.
    case startsWith(String, String)
    /// `label ends with "value"`.
    case endsWith(String, String)
    /// `label in {"a", "b"}`; members sorted and unique.
    case `in`(String, [String])
    /// `label not in {"a", "b"}`; members sorted and unique.
    case notIn(String, [String])
    /// `!expr`.
    case not(SelectorExpression)
    /// `(a && b && ...)`.
    case and([SelectorExpression])
    /// `(a || b || ...)`.
    case or([SelectorExpression])

    /// The label Calico puts on namespaced endpoints; `global()` matches when it is absent.
    public static let namespaceLabelKey = "projectcalico.org/namespace"
}

// MARK: - Evaluation

extension SelectorExpression {
    /// Evaluates the expression against a label map. Does not allocate.
    public func matches(_ labels: [String: String]) -> Bool {
        switch self {
        case .all:
            return true
        case .global:
            // Calico's GlobalNode.Evaluate returns true unconditionally; the "non-namespaced only" meaning of
            // global() comes from the scope it is used in (e.g. a rule's namespaceSelector), where namespaced
            // endpoints carry projectcalico.org/namespace. Tabby folds that scope into the evaluation.
            return labels.index(forKey: SelectorExpression.namespaceLabelKey) == nil
        case .has(let key):
            return labels.index(forKey: key) != nil
        case .equal(let key, let value):
            guard let actual = labels[key] else { return false }
            return SelectorUTF8.equal(actual, value)
        case .notEqual(let key, let value):
            guard let actual = labels[key] else { return true }
            return !SelectorUTF8.equal(actual, value)
        case .contains(let key, let value):
            guard let actual = labels[key] else { return false }
            return SelectorUTF8.contains(actual, value)
        case .startsWith(let key, let value):
            guard let actual = labels[key] else { return false }
            return SelectorUTF8.hasPrefix(actual, value)
        case .endsWith(let key, let value):
            guard let actual = labels[key] else { return false }
            return SelectorUTF8.hasSuffix(actual, value)
        case .in(let key, let members):
            guard let actual = labels[key] else { return false }
            return SelectorUTF8.sortedContains(members, actual)
        case .notIn(let key, let members):
            guard let actual = labels[key] else { return true }
            return !SelectorUTF8.sortedContains(members, actual)
        case .not(let operand):
            return !operand.matches(labels)
        case .and(let operands):
            var index = 0
            while index < operands.count {
                if !operands[index].matches(labels) {
                    return false
                }
                index += 1
            }
            return true
        case .or(let operands):
            var index = 0
            while index < operands.count {
                if operands[index].matches(labels) {
                    return true
                }
                index += 1
            }
            return false
        }
    }

    /// Every label key the expression reads (`global()` reads `projectcalico.org/namespace`).
    public var labelKeys: Set<String> {
        var keys = Set<String>()
        collectLabelKeys(into: &keys)
        return keys
    }

    private func collectLabelKeys(into keys: inout Set<String>) {
        switch self {
        case .all:
            break
        case .global:
            keys.insert(SelectorExpression.namespaceLabelKey)
        case .has(let key), .equal(let key, _), .notEqual(let key, _), .contains(let key, _),
            .startsWith(let key, _), .endsWith(let key, _), .in(let key, _), .notIn(let key, _):
            keys.insert(key)
        case .not(let operand):
            operand.collectLabelKeys(into: &keys)
        case .and(let operands), .or(let operands):
            for operand in operands {
                operand.collectLabelKeys(into: &keys)
            }
        }
    }
}

// MARK: - Normalisation

extension SelectorExpression {
    /// The form the parser produces: set members sorted and unique, double negations collapsed (Calico
    /// collapses runs of `!`), single-operand groups unwrapped, empty `and` = `all()`, empty `or` = `!all()`.
    public var normalized: SelectorExpression {
        switch self {
        case .all, .global, .has, .equal, .notEqual, .contains, .startsWith, .endsWith:
            return self
        case .in(let key, let members):
            return .in(key, SelectorUTF8.sortedUnique(members))
        case .notIn(let key, let members):
            return .notIn(key, SelectorUTF8.sortedUnique(members))
        case .not(let operand):
            return operand.normalized.negated
        case .and(let operands):
            switch operands.count {
            case 0: return .all
            case 1: return operands[0].normalized
            default: return .and(operands.map(\.normalized))
            }
        case .or(let operands):
            switch operands.count {
            case 0: return .not(.all)
            case 1: return operands[0].normalized
            default: return .or(operands.map(\.normalized))
            }
        }
    }

    /// `!self`, collapsing a double negation.
    var negated: SelectorExpression {
        if case .not(let inner) = self {
            return inner
        }
        return .not(self)
    }
}

// MARK: - Canonical text

extension SelectorExpression {
    /// Calico's canonical text (ast.go collectFragments): `(a && b)`, `!x`, `k == "v"`, `k in {"a", "b"}`.
    public var canonical: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .all:
            out += "all()"
        case .global:
            out += "global()"
        case .has(let key):
            out += "has("
            out += key
            out += ")"
        case .equal(let key, let value):
            Self.writeComparison(key, " == ", value, to: &out)
        case .notEqual(let key, let value):
            Self.writeComparison(key, " != ", value, to: &out)
        case .contains(let key, let value):
            Self.writeComparison(key, " contains ", value, to: &out)
        case .startsWith(let key, let value):
            Self.writeComparison(key, " starts with ", value, to: &out)
        case .endsWith(let key, let value):
            Self.writeComparison(key, " ends with ", value, to: &out)
        case .in(let key, let members):
            Self.writeSet(key, " in {", members, to: &out)
        case .notIn(let key, let members):
            Self.writeSet(key, " not in {", members, to: &out)
        case .not(let operand):
            out += "!"
            operand.write(to: &out)
        case .and(let operands):
            Self.writeGroup(operands, " && ", to: &out)
        case .or(let operands):
            Self.writeGroup(operands, " || ", to: &out)
        }
    }

    private static func writeComparison(_ key: String, _ op: String, _ value: String, to out: inout String) {
        out += key
        out += op
        writeQuoted(value, to: &out)
    }

    private static func writeSet(_ key: String, _ opening: String, _ members: [String], to out: inout String) {
        out += key
        out += opening
        for (index, member) in members.enumerated() {
            if index > 0 {
                out += ", "
            }
            writeQuoted(member, to: &out)
        }
        out += "}"
    }

    private static func writeGroup(_ operands: [SelectorExpression], _ op: String, to out: inout String) {
        out += "("
        for (index, operand) in operands.enumerated() {
            if index > 0 {
                out += op
            }
            operand.write(to: &out)
        }
        out += ")"
    }

    /// Double quotes unless the value contains one, then single quotes (the language has no escapes).
    private static func writeQuoted(_ value: String, to out: inout String) {
        let quote = value.utf8.contains(UInt8(ascii: "\"")) ? "'" : "\""
        out += quote
        out += value
        out += quote
    }
}

// MARK: - Byte-wise string helpers

/// UTF-8 byte comparisons matching Go's string semantics; none of them allocate for native strings.
enum SelectorUTF8 {
    @inline(__always)
    static func withBytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = string.utf8.withContiguousStorageIfAvailable(body) {
            return result
        }
        var copy = string
        copy.makeContiguousUTF8()
        return copy.utf8.withContiguousStorageIfAvailable(body)!
    }

    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        return withBytes(lhs) { a in
            withBytes(rhs) { b in a.elementsEqual(b) }
        }
    }

    /// Byte-wise three-way comparison: negative, zero or positive.
    static func compare(_ lhs: String, _ rhs: String) -> Int {
        withBytes(lhs) { a in
            withBytes(rhs) { b in
                let n = min(a.count, b.count)
                var i = 0
                while i < n {
                    if a[i] != b[i] {
                        return a[i] < b[i] ? -1 : 1
                    }
                    i += 1
                }
                return a.count - b.count
            }
        }
    }

    static func hasPrefix(_ string: String, _ prefix: String) -> Bool {
        withBytes(string) { s in
            withBytes(prefix) { p in
                p.count <= s.count && UnsafeBufferPointer(rebasing: s[0..<p.count]).elementsEqual(p)
            }
        }
    }

    static func hasSuffix(_ string: String, _ suffix: String) -> Bool {
        withBytes(string) { s in
            withBytes(suffix) { p in
                p.count <= s.count && UnsafeBufferPointer(rebasing: s[(s.count - p.count)...]).elementsEqual(p)
            }
        }
    }

    static func contains(_ string: String, _ needle: String) -> Bool {
        withBytes(string) { s in
            withBytes(needle) { n in
                if n.isEmpty {
                    return true
                }
                if n.count > s.count {
                    return false
                }
                var start = 0
                while start + n.count <= s.count {
                    if s[start] == n[0] && UnsafeBufferPointer(rebasing: s[start..<(start + n.count)]).elementsEqual(n)
                    {
                        return true
                    }
                    start += 1
                }
                return false
            }
        }
    }

    /// Membership in a byte-wise sorted array: a linear scan for small sets, binary search otherwise.
    static func sortedContains(_ members: [String], _ value: String) -> Bool {
        if members.count <= 8 {
            for member in members where equal(member, value) {
                return true
            }
            return false
        }
        var low = 0
        var high = members.count
        while low < high {
            let mid = (low + high) / 2
            let order = compare(members[mid], value)
            if order == 0 {
                return true
            }
            if order < 0 {
                low = mid + 1
            } else {
                high = mid
            }
        }
        return false
    }

    /// Sorted (byte-wise, like Go's sort.Strings) with duplicates removed.
    static func sortedUnique(_ members: [String]) -> [String] {
        let sorted = members.sorted { compare($0, $1) < 0 }
        var result: [String] = []
        result.reserveCapacity(sorted.count)
        for member in sorted where result.last.map({ !equal($0, member) }) ?? true {
            result.append(member)
        }
        return result
    }
}
