import TabbyCore
import Testing

@testable import TabbyPolicy

/// The label index must find exactly what a scan finds, for every kind of selector, after any
/// sequence of relabels and removals.
@Suite struct LabelIndexTests {
    private static let keys = ["app", "role", "tier", SelectorExpression.namespaceLabelKey]
    private static let values = ["a", "b", "ab", "ba", "c"]

    private static func randomLabels(_ random: inout SplitMix64) -> [String: String] {
        var labels: [String: String] = [:]
        for key in keys where Bool.random(using: &random) { labels[key] = values.randomElement(using: &random)! }
        return labels
    }

    private static func randomExpression(_ random: inout SplitMix64, depth: Int = 0) -> SelectorExpression {
        let key = keys.randomElement(using: &random)!
        let value = values.randomElement(using: &random)!
        let leaves = 10
        let choice = Int.random(in: 0..<(depth >= 3 ? leaves : leaves + 3), using: &random)
        switch choice {
        case 0: return .all
        case 1: return .global
        case 2: return .has(key)
        case 3: return .equal(key, value)
        case 4: return .notEqual(key, value)
        case 5: return .contains(key, String(value.prefix(1)))
        case 6: return .startsWith(key, String(value.prefix(1)))
        case 7: return .endsWith(key, String(value.suffix(1)))
        case 8: return .in(key, Array(Set(values.shuffled(using: &random).prefix(2))).sorted())
        case 9: return .notIn(key, [value])
        case 10: return .not(randomExpression(&random, depth: depth + 1))
        case 11:
            return .and(
                (0..<Int.random(in: 1...3, using: &random)).map { _ in
                    randomExpression(&random, depth: depth + 1)
                })
        default:
            return .or(
                (0..<Int.random(in: 1...3, using: &random)).map { _ in
                    randomExpression(&random, depth: depth + 1)
                })
        }
    }

    @Test(arguments: 0..<20)
    func indexedMatchingEqualsScan(seed: Int) {
        var random = SplitMix64(state: UInt64(seed) &* 104_729)
        var index = LabelIndex<Int>()
        for step in 0..<200 {
            let item = Int.random(in: 0..<40, using: &random)
            index.update(item, labels: Int.random(in: 0..<5, using: &random) == 0 ? nil : Self.randomLabels(&random))
            guard step % 10 == 9 else { continue }
            for _ in 0..<20 {
                let selector = Selector(expression: Self.randomExpression(&random))
                let scanned = Set(index.scanning(selector))
                #expect(Set(index.matching(selector)) == scanned, "seed \(seed) step \(step) \(selector)")
                if let candidates = index.candidates(for: selector.expression) {
                    #expect(candidates.isSuperset(of: scanned), "seed \(seed) step \(step) \(selector)")
                }
                let subset = Set((0..<40).filter { _ in Bool.random(using: &random) })
                #expect(
                    Set(index.matching(selector, within: subset)) == scanned.intersection(subset),
                    "seed \(seed) step \(step) \(selector) within \(subset.sorted())")
            }
        }
    }

    @Test func narrowsConjunctionsToTheSmallestOperand() throws {
        var index = LabelIndex<Int>()
        for item in 0..<100 { index.update(item, labels: ["app": "app-\(item % 10)", "role": "r-\(item % 2)"]) }
        let selector = try Selector.parse("role == 'r-1' && app == 'app-3'")
        #expect(index.candidates(for: selector.expression)?.count == 10)
        #expect(Set(index.matching(selector)) == Set((0..<100).filter { $0 % 10 == 3 }))
        // Not narrowable: a negation alone, and a disjunction with one.
        #expect(index.candidates(for: try Selector.parse("!has(app)").expression) == nil)
        #expect(index.candidates(for: try Selector.parse("app == 'x' || role != 'r-1'").expression) == nil)
        // Relabelled and removed items leave the index.
        index.update(13, labels: ["app": "app-4"])
        index.update(23, labels: nil)
        #expect(Set(index.matching(selector)) == Set((0..<100).filter { $0 % 10 == 3 && $0 != 13 && $0 != 23 }))
        #expect(index.candidates(for: try Selector.parse("has(role)").expression)?.count == 98)
    }
}
