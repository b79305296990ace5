import Testing

@testable import TabbyCore

// MARK: - Tables

struct SelectorMatchCase: Sendable, CustomTestStringConvertible {
    var selector: String
    var labels: [String: String]
    var matches: Bool
    var testDescription: String { "\(selector) on \(labels) -> \(matches)" }
}

private let ns = "projectcalico.org/namespace"

private let matchCases: [SelectorMatchCase] = [
    // == and absent labels.
    SelectorMatchCase(selector: #"a == "b""#, labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: #"a == "b""#, labels: ["a": "b", "c": "d"], matches: true),
    SelectorMatchCase(selector: #"a == "b""#, labels: [:], matches: false),
    SelectorMatchCase(selector: #"a == "b""#, labels: ["a": "c"], matches: false),
    SelectorMatchCase(selector: #"a == "b""#, labels: ["c": "b"], matches: false),
    SelectorMatchCase(selector: "a == 'a'", labels: ["a": "a"], matches: true),
    SelectorMatchCase(selector: #"a == """#, labels: ["a": ""], matches: true),
    SelectorMatchCase(selector: #"a == """#, labels: [:], matches: false),
    // != is true when absent.
    SelectorMatchCase(selector: #"a != "b""#, labels: ["a": "a"], matches: true),
    SelectorMatchCase(selector: #"a != "a""#, labels: [:], matches: true),
    SelectorMatchCase(selector: #"a != "a""#, labels: ["a": "a"], matches: false),
    // contains / starts with / ends with, false when absent.
    SelectorMatchCase(selector: #"a contains "a""#, labels: ["a": "bab"], matches: true),
    SelectorMatchCase(selector: #"a contains "a""#, labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: #"a contains "a""#, labels: ["b": "aaa"], matches: false),
    SelectorMatchCase(selector: #"a contains """#, labels: ["a": "x"], matches: true),
    SelectorMatchCase(selector: #"a starts with "a""#, labels: ["a": "abb"], matches: true),
    SelectorMatchCase(selector: #"a starts with "a""#, labels: ["a": "baa"], matches: false),
    SelectorMatchCase(selector: #"a starts with "a""#, labels: [:], matches: false),
    SelectorMatchCase(selector: #"a ends with "a""#, labels: ["a": "bba"], matches: true),
    SelectorMatchCase(selector: #"a ends with "a""#, labels: ["a": "aab"], matches: false),
    SelectorMatchCase(selector: #"a ends with "a""#, labels: ["b": "a"], matches: false),
    SelectorMatchCase(selector: #"a ends with "abc""#, labels: ["a": "bc"], matches: false),
    // Byte-wise comparison (Go semantics): precomposed and decomposed é differ.
    SelectorMatchCase(selector: "a == \"\u{E9}\"", labels: ["a": "e\u{301}"], matches: false),
    SelectorMatchCase(selector: "a starts with \"e\"", labels: ["a": "e\u{301}"], matches: true),
    // has().
    SelectorMatchCase(selector: "has(a)", labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: "has(a)", labels: ["a": ""], matches: true),
    SelectorMatchCase(selector: "has(b)", labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: "has( a )", labels: ["a": "b"], matches: true),
    // Sets.
    SelectorMatchCase(selector: #"a in {"'", '"', "c"}"#, labels: ["a": "c"], matches: true),
    SelectorMatchCase(selector: #"a in {"'", '"', "c"}"#, labels: ["a": "\""], matches: true),
    SelectorMatchCase(selector: #"a in {"'", '"', "c"}"#, labels: ["a": "'"], matches: true),
    SelectorMatchCase(selector: #"a in {"'", '"', "c"}"#, labels: ["a": "e"], matches: false),
    SelectorMatchCase(selector: #"a in {"'", '"', "c"}"#, labels: [:], matches: false),
    SelectorMatchCase(selector: #"a not in {"'", '"', "c"}"#, labels: [:], matches: true),
    SelectorMatchCase(selector: #"a not in {"'", '"', "c"}"#, labels: ["a": "e"], matches: true),
    SelectorMatchCase(selector: #"a not in {"'", '"', "c"}"#, labels: ["a": "c"], matches: false),
    SelectorMatchCase(selector: "a in {}", labels: ["a": ""], matches: false),
    SelectorMatchCase(selector: "a in {}", labels: [:], matches: false),
    SelectorMatchCase(selector: "a not in {}", labels: ["a": "x"], matches: true),
    SelectorMatchCase(selector: "a not in {}", labels: [:], matches: true),
    SelectorMatchCase(
        selector: #"a in {"k", "j", "i", "h", "g", "f", "e", "d", "c", "b", "a"}"#, labels: ["a": "e"], matches: true),
    SelectorMatchCase(
        selector: #"a in {"k", "j", "i", "h", "g", "f", "e", "d", "c", "b", "a"}"#, labels: ["a": "z"], matches: false),
    SelectorMatchCase(selector: #"a notin {"x"}"#, labels: ["a": "x"], matches: false),
    // all(), empty, global().
    SelectorMatchCase(selector: "", labels: [:], matches: true),
    SelectorMatchCase(selector: " ", labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: "all()", labels: [:], matches: true),
    SelectorMatchCase(selector: " all( ) ", labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: "global()", labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: "global()", labels: [ns: "default"], matches: false),
    SelectorMatchCase(selector: "!global()", labels: [ns: "default"], matches: true),
    SelectorMatchCase(selector: #"global() && a == "b""#, labels: ["a": "b"], matches: true),
    // Negation.
    SelectorMatchCase(selector: "!has(a)", labels: ["b": "b"], matches: true),
    SelectorMatchCase(selector: "! has(a)", labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: "!!has(b)", labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: "!!has(a)", labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: "!!! has(a)", labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: "! !!has(a)", labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: #"!a in {"a"}"#, labels: ["a": "b"], matches: true),
    SelectorMatchCase(selector: #"!a == "b""#, labels: [:], matches: true),
    SelectorMatchCase(selector: "!all()", labels: [:], matches: false),
    // && and ||.
    SelectorMatchCase(selector: #"a == "b" && c == "d""#, labels: ["a": "b", "c": "d"], matches: true),
    SelectorMatchCase(selector: #"a == "b" && c == "d""#, labels: ["a": "b", "c": "e"], matches: false),
    SelectorMatchCase(selector: #"a == "b" && c == "d""#, labels: ["a": "b"], matches: false),
    SelectorMatchCase(selector: #"a == "b" || c == "d""#, labels: ["c": "d"], matches: true),
    SelectorMatchCase(selector: #"a == "b" || c == "d""#, labels: ["a": "e", "c": "e"], matches: false),
    SelectorMatchCase(selector: "a != 'a1' || b != 'b1'", labels: ["a": "a1", "b": "b1"], matches: false),
    SelectorMatchCase(selector: "! a == 'a1' || ! b == 'b1'", labels: ["a": "a1", "b": "b1"], matches: false),
    SelectorMatchCase(selector: "a != 'a1' && !b == 'b1'", labels: ["a": "a1", "b": "b1"], matches: false),
    SelectorMatchCase(selector: "has(a) && !has(b)", labels: ["a": "a"], matches: true),
    SelectorMatchCase(selector: "!(!has(a) || has(b))", labels: ["a": "a"], matches: true),
    SelectorMatchCase(selector: "!(has(b) || !has(a))", labels: ["a": "a", "b": "b"], matches: false),
    // Precedence: a || b && c == a || (b && c).
    SelectorMatchCase(selector: "has(a) || has(b) && has(c)", labels: ["a": "1"], matches: true),
    SelectorMatchCase(selector: "has(a) || has(b) && has(c)", labels: ["b": "1"], matches: false),
    SelectorMatchCase(selector: "has(a) || has(b) && has(c)", labels: ["b": "1", "c": "1"], matches: true),
    SelectorMatchCase(selector: "(has(a) || has(b)) && has(c)", labels: ["a": "1"], matches: false),
    SelectorMatchCase(selector: "has(a) && has(b) || has(c)", labels: ["c": "1"], matches: true),
    // Nesting and odd spacing.
    SelectorMatchCase(
        selector: #"((a == "1" || b == "2") && !(c in {"x", "y"})) || d starts with "z""#,
        labels: ["b": "2", "c": "q"], matches: true),
    SelectorMatchCase(
        selector: #"((a == "1" || b == "2") && !(c in {"x", "y"})) || d starts with "z""#,
        labels: ["b": "2", "c": "y"], matches: false),
    SelectorMatchCase(
        selector: #"((a == "1" || b == "2") && !(c in {"x", "y"})) || d starts with "z""#,
        labels: ["d": "zz"], matches: true),
    SelectorMatchCase(selector: "\ta=='x'&&b!='y'\t", labels: ["a": "x"], matches: true),
    SelectorMatchCase(selector: "k8s.io/app-name == 'web_1'", labels: ["k8s.io/app-name": "web_1"], matches: true),
    // Keywords are plain label names unless followed directly by "(".
    SelectorMatchCase(selector: #"has == "x""#, labels: ["has": "x"], matches: true),
    SelectorMatchCase(selector: #"all in {"x"}"#, labels: ["all": "x"], matches: true),
    SelectorMatchCase(selector: #"in == "x""#, labels: ["in": "x"], matches: true),
]

struct SelectorCanonicalCase: Sendable, CustomTestStringConvertible {
    var input: String
    var canonical: String
    var testDescription: String { "\(input) -> \(canonical)" }
}

private let canonicalCases: [SelectorCanonicalCase] = [
    SelectorCanonicalCase(input: #"a == "b" && c == "d""#, canonical: #"(a == "b" && c == "d")"#),
    SelectorCanonicalCase(input: "! (has( b)||! has(a ))", canonical: "!(has(b) || !has(a))"),
    SelectorCanonicalCase(input: #"a in {"z","z","x"}"#, canonical: #"a in {"x", "z"}"#),
    SelectorCanonicalCase(input: "", canonical: "all()"),
    SelectorCanonicalCase(input: " \t ", canonical: "all()"),
    SelectorCanonicalCase(input: #"a == 'x"y'"#, canonical: #"a == 'x"y'"#),
    SelectorCanonicalCase(input: "a not in {}", canonical: "a not in {}"),
    SelectorCanonicalCase(input: "a in { }", canonical: "a in {}"),
    SelectorCanonicalCase(
        input: #"a == "1" && b == "2" && c == "3""#, canonical: #"(a == "1" && b == "2" && c == "3")"#),
    SelectorCanonicalCase(
        input: #"a == "1" || b == "2" || c == "3""#, canonical: #"(a == "1" || b == "2" || c == "3")"#),
    SelectorCanonicalCase(
        input: #"a == "1" || b == "2" && c == "3""#, canonical: #"(a == "1" || (b == "2" && c == "3"))"#),
    SelectorCanonicalCase(
        input: #"(a == "1" && b == "2") && c == "3""#, canonical: #"((a == "1" && b == "2") && c == "3")"#),
    SelectorCanonicalCase(input: " all() ", canonical: "all()"),
    SelectorCanonicalCase(input: " (all() )", canonical: "all()"),
    SelectorCanonicalCase(input: "((has(a)))", canonical: "has(a)"),
    SelectorCanonicalCase(input: "global( )", canonical: "global()"),
    SelectorCanonicalCase(input: #"! (a == "b"&&! c != "d")"#, canonical: #"!(a == "b" && !c != "d")"#),
    SelectorCanonicalCase(input: #"a == "'""#, canonical: #"a == "'""#),
    SelectorCanonicalCase(input: #"a == '"'"#, canonical: #"a == '"'"#),
    SelectorCanonicalCase(input: #"a contains '"'"#, canonical: #"a contains '"'"#),
    SelectorCanonicalCase(input: "a contains 'x'", canonical: #"a contains "x""#),
    SelectorCanonicalCase(input: #"a startswith '"'"#, canonical: #"a starts with '"'"#),
    SelectorCanonicalCase(input: #"a  starts   with "x""#, canonical: #"a starts with "x""#),
    SelectorCanonicalCase(input: #"a endswith "'""#, canonical: #"a ends with "'""#),
    SelectorCanonicalCase(input: #"a!='"'"#, canonical: #"a != '"'"#),
    SelectorCanonicalCase(input: "a notin {'x'}", canonical: #"a not in {"x"}"#),
    SelectorCanonicalCase(input: #"a in{"x"}"#, canonical: #"a in {"x"}"#),
    SelectorCanonicalCase(input: #"a in {"d", "a", "b"}"#, canonical: #"a in {"a", "b", "d"}"#),
    SelectorCanonicalCase(input: #"a in {"z", "z", "x", "y", "x", "a"}"#, canonical: #"a in {"a", "x", "y", "z"}"#),
    SelectorCanonicalCase(input: #"a in {'"', "'"}"#, canonical: #"a in {'"', "'"}"#),
    SelectorCanonicalCase(input: #"a in {"b", "B", "_", "1"}"#, canonical: #"a in {"1", "B", "_", "b"}"#),
    SelectorCanonicalCase(input: "!!has(a)", canonical: "has(a)"),
    SelectorCanonicalCase(input: "!!!has(a)", canonical: "!has(a)"),
    SelectorCanonicalCase(input: "!(!has(a))", canonical: "has(a)"),
    SelectorCanonicalCase(input: "!(k == 'v')", canonical: #"!k == "v""#),
    SelectorCanonicalCase(
        input: "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
        canonical: #"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#),
    SelectorCanonicalCase(input: #"has == "x""#, canonical: #"has == "x""#),
]

struct SelectorErrorCase: Sendable, CustomTestStringConvertible {
    var input: String
    var column: Int
    var expected: String? = nil
    var found: String? = nil
    var testDescription: String { "\(input) fails at column \(column)" }
}

private let longLabel512 = String(repeating: "a", count: 512)
private let longLabel513 = String(repeating: "a", count: 513)

private let errorCases: [SelectorErrorCase] = [
    SelectorErrorCase(input: "b == b", column: 6, expected: "a string literal", found: "'b'"),
    SelectorErrorCase(input: "'b1' == b", column: 1, found: "the string literal 'b1'"),
    SelectorErrorCase(input: "b", column: 2, found: "end of input"),
    SelectorErrorCase(input: "a b", column: 3, found: "'b'"),
    SelectorErrorCase(input: "!", column: 2, found: "end of input"),
    SelectorErrorCase(
        input: #"foo == "bar" &"#, column: 14, expected: "'&&', '||' or the end of the selector", found: "'&'"),
    SelectorErrorCase(input: #"(a == "foo""#, column: 12, expected: "'&&', '||' or ')'", found: "end of input"),
    SelectorErrorCase(input: "()", column: 2, found: "')'"),
    SelectorErrorCase(input: "has()", column: 5, expected: "a label name", found: "')'"),
    SelectorErrorCase(input: "all(", column: 5, expected: "')'", found: "end of input"),
    SelectorErrorCase(input: #"label = "value""#, column: 7, found: "'='"),
    SelectorErrorCase(input: #"a == "x"#, column: 6, found: "end of input"),
    SelectorErrorCase(input: "a == 'x", column: 6),
    SelectorErrorCase(input: longLabel513 + #" == "x""#, column: 1, found: "a label of 513 characters"),
    SelectorErrorCase(input: "has(\(longLabel513))", column: 5),
    SelectorErrorCase(
        input: #"a == "b" )"#, column: 10, expected: "'&&', '||' or the end of the selector", found: "')'"),
    SelectorErrorCase(input: #"a in {"x" "y"}"#, column: 11, expected: "',' or '}'", found: #"the string literal "y""#),
    SelectorErrorCase(input: #"a in {"x",}"#, column: 11, expected: "a string literal", found: "'}'"),
    SelectorErrorCase(input: "has(a", column: 6, expected: "')'", found: "end of input"),
    SelectorErrorCase(input: #"&& a == "b""#, column: 1, found: "'&&'"),
    // More of Calico's bad selectors.
    SelectorErrorCase(input: "b contains b", column: 12),
    SelectorErrorCase(input: "b starts with b", column: 15),
    SelectorErrorCase(input: "b ends with b", column: 13),
    SelectorErrorCase(input: #"foo == "bar" |"#, column: 14),
    SelectorErrorCase(input: "foo != ||", column: 8, found: "'||'"),
    SelectorErrorCase(input: #"foo in {"", ||"#, column: 13),
    SelectorErrorCase(input: #"foo in """#, column: 8),
    SelectorErrorCase(input: #""FOO'"#, column: 1),
    SelectorErrorCase(input: "(", column: 2),
    SelectorErrorCase(input: ")", column: 1),
    SelectorErrorCase(input: "%", column: 1, found: "'%'"),
    SelectorErrorCase(input: #"a == "b" && %"#, column: 13),
    SelectorErrorCase(input: "a ", column: 3),
    SelectorErrorCase(input: "has(foo) &&", column: 12),
    SelectorErrorCase(input: #"a in {"x""#, column: 10, expected: "',' or '}'"),
    SelectorErrorCase(input: "a in", column: 5),
    SelectorErrorCase(input: "has (a)", column: 5),
    SelectorErrorCase(input: #"a containsx "y""#, column: 3),
    SelectorErrorCase(input: #"a and b == "c""#, column: 3),
    SelectorErrorCase(input: "a\n== 'x'", column: 2, found: #"'\n'"#),
    // Columns count Characters, not bytes.
    SelectorErrorCase(input: "a == \"\u{E9}\" b", column: 10),
    SelectorErrorCase(input: "a == \"e\u{301}\" b", column: 10),
]

// MARK: - Tests

@Suite("Selector")
struct SelectorTests {
    @Test(arguments: matchCases)
    func matches(_ testCase: SelectorMatchCase) throws {
        let selector = try Selector(parsing: testCase.selector)
        #expect(selector.matches(testCase.labels) == testCase.matches)
        // Same answer after a round trip through the canonical form.
        let reparsed = try Selector(parsing: selector.canonical)
        #expect(reparsed.matches(testCase.labels) == testCase.matches)
        #expect(reparsed == selector)
    }

    @Test(arguments: canonicalCases)
    func canonicalForm(_ testCase: SelectorCanonicalCase) throws {
        let selector = try Selector.parse(testCase.input)
        #expect(selector.canonical == testCase.canonical)
        #expect(selector.description == testCase.canonical)
        // Idempotent: the canonical form of the canonical form is unchanged.
        let again = try Selector(parsing: selector.canonical)
        #expect(again.canonical == testCase.canonical)
        #expect(again == selector)
        #expect(again.hashValue == selector.hashValue)
    }

    @Test(arguments: errorCases)
    func rejects(_ testCase: SelectorErrorCase) {
        #expect(Selector(testCase.input) == nil)
        do {
            let selector = try Selector(parsing: testCase.input)
            Issue.record("parsed \(testCase.input) as \(selector)")
        } catch {
            #expect(error.source == testCase.input)
            #expect(error.column == testCase.column, "\(error)")
            if let expected = testCase.expected {
                #expect(error.expected == expected)
            }
            if let found = testCase.found {
                #expect(error.found == found)
            }
            #expect(error.description == "column \(error.column): expected \(error.expected), found \(error.found)")
        }
    }

    @Test func errorDescription() {
        #expect(throws: SelectorError.self) { try Selector(parsing: "b == b") }
        do {
            _ = try Selector.parse("b == b")
        } catch {
            #expect(error.description == "column 6: expected a string literal, found 'b'")
        }
    }

    @Test func labelLengthLimit() throws {
        let selector = try Selector(parsing: "\(longLabel512) == 'x'")
        #expect(selector.matches([longLabel512: "x"]))
        #expect(try Selector(parsing: "has(\(longLabel512))").labelKeys == [longLabel512])
    }

    @Test func losslessStringConvertible() throws {
        let selector = try #require(Selector(#"a in {"y", "x"} && !has(b)"#))
        #expect(selector.description == #"(a in {"x", "y"} && !has(b))"#)
        #expect(Selector(selector.description) == selector)
        #expect(Selector("a ==") == nil)
    }

    @Test func expressionTree() throws {
        let selector = try Selector(parsing: #"a == "1" || !b in {"y", "x", "y"} && has(c)"#)
        #expect(
            selector.expression
                == .or([.equal("a", "1"), .and([.not(.in("b", ["x", "y"])), .has("c")])]))
        #expect(try Selector(parsing: "a not in {}").expression == .notIn("a", []))
        #expect(try Selector(parsing: "x starts with 'p'").expression == .startsWith("x", "p"))
        #expect(try Selector(parsing: "x ends with 'p'").expression == .endsWith("x", "p"))
        #expect(try Selector(parsing: "x contains 'p'").expression == .contains("x", "p"))
        #expect(try Selector(parsing: "global()").expression == .global)
    }

    @Test func initExpressionNormalises() {
        #expect(Selector(expression: .and([])).canonical == "all()")
        #expect(Selector(expression: .and([])).isAll)
        #expect(Selector(expression: .or([])).canonical == "!all()")
        #expect(Selector(expression: .or([.has("a")])).canonical == "has(a)")
        #expect(Selector(expression: .not(.not(.has("a")))).canonical == "has(a)")
        #expect(Selector(expression: .in("a", ["b", "a", "b"])).canonical == #"a in {"a", "b"}"#)
        #expect(Selector(expression: .in("a", ["b", "a", "b"])).expression == .in("a", ["a", "b"]))
        #expect(Selector(expression: .equal("a", #"x"y"#)).canonical == #"a == 'x"y'"#)
        #expect(Selector.all.canonical == "all()")
        #expect(Selector.all == Selector(""))
    }

    @Test func equalityIgnoresSpelling() throws {
        let a = try Selector(parsing: #"a=="1"&&b in {'y','x'}"#)
        let b = try Selector(parsing: #"  ( a == '1' ) && b in { "x" , "y" , "x" }"#)
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(try Selector(parsing: "has(a)") != Selector(parsing: "has(b)"))
    }

    @Test func labelKeysAndIsAll() throws {
        let selector = try Selector(
            parsing: #"a == "1" && (b != "2" || !has(c)) && d in {"x"} && e not in {} && f contains "z" && global()"#)
        #expect(selector.labelKeys == ["a", "b", "c", "d", "e", "f", ns])
        #expect(try Selector(parsing: "all()").labelKeys.isEmpty)
        #expect(try Selector(parsing: "").isAll)
        #expect(try Selector(parsing: " ( all() ) ").isAll)
        #expect(try Selector(parsing: "!!all()").isAll)
        #expect(try !Selector(parsing: "!all()").isAll)
        #expect(try !Selector(parsing: "has(a)").isAll)
    }

    @Test func codable() throws {
        let selector = try Selector(parsing: "a in {'y','x'}")
        let encoded = try StringEncoder.encode(selector)
        #expect(encoded == #"a in {"x", "y"}"#)
        #expect(try Selector(from: StringDecoder(value: encoded)) == selector)
        do {
            _ = try Selector(from: StringDecoder(value: "a b"))
            Issue.record("decoded a bad selector")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription == "column 3: expected \(try errorExpected("a b")), found 'b'")
            #expect(context.underlyingError as? SelectorError == (try? errorOf("a b")))
        }
    }

    /// Random label maps: the canonical form evaluates exactly like the original, and both agree with a
    /// straightforward reference evaluator.
    @Test func canonicalEvaluatesTheSameOnRandomLabels() throws {
        let selectors = propertySelectors.map { try! Selector(parsing: $0) }
        var rng = SplitMix64(seed: 0x5EED)
        for _ in 0..<400 {
            let labels = randomLabels(using: &rng)
            for selector in selectors {
                let reparsed = try Selector(parsing: selector.canonical)
                let expected = referenceMatches(selector.expression, labels)
                #expect(selector.matches(labels) == expected, "\(selector) on \(labels)")
                #expect(reparsed.matches(labels) == expected, "\(selector) on \(labels)")
            }
        }
    }

    /// Random expression trees: printing then parsing gives back the same selector.
    @Test func randomExpressionsRoundTrip() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<300 {
            let selector = Selector(expression: randomExpression(depth: 3, using: &rng))
            let reparsed = try Selector(parsing: selector.canonical)
            #expect(reparsed == selector, "\(selector.canonical)")
            #expect(reparsed.canonical == selector.canonical)
            for _ in 0..<5 {
                let labels = randomLabels(using: &rng)
                #expect(reparsed.matches(labels) == referenceMatches(selector.expression, labels))
            }
        }
    }
}

// MARK: - Helpers

private func errorOf(_ source: String) throws -> SelectorError {
    do {
        _ = try Selector(parsing: source)
    } catch {
        return error
    }
    throw SelectorError(source: source, column: 0, expected: "an error", found: "none")
}

private func errorExpected(_ source: String) throws -> String {
    try errorOf(source).expected
}

private let propertySelectors: [String] = [
    "",
    "global()",
    "!global()",
    "has(a)",
    "!has(b)",
    #"a == "x""#,
    #"a != "x""#,
    #"a contains "y""#,
    #"a starts with "x""#,
    #"b ends with "y""#,
    #"a in {"x", "xy", ""}"#,
    #"a not in {"x", "'"}"#,
    #"c in {}"#,
    #"c not in {}"#,
    #"b == '"'"#,
    #"a == "x" && b != "y" || has(c)"#,
    #"a == "x" || b == "y" && c == "x""#,
    #"!(a == "x" || !has(b)) && c not in {"y"}"#,
    #"!!(has(a) && (b == "" || c starts with "y")) || global()"#,
    #"a in {"x"} && (b in {"y", "x"} || !(c == "yx"))"#,
    #"((a == "x"))"#,
]

private let keyPool = ["a", "b", "c", ns]
private let valuePool = ["", "x", "y", "xy", "yx", "'", "\""]

private func randomLabels(using rng: inout SplitMix64) -> [String: String] {
    var labels: [String: String] = [:]
    for key in keyPool where rng.next() % 2 == 0 {
        labels[key] = valuePool[Int(rng.next() % UInt64(valuePool.count))]
    }
    return labels
}

private func randomExpression(depth: Int, using rng: inout SplitMix64) -> SelectorExpression {
    func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
    let leafKinds = 10
    let kind = Int(rng.next() % UInt64(depth > 0 ? leafKinds + 3 : leafKinds))
    let key = pick(["a", "b", "c"])
    let value = pick(valuePool)
    switch kind {
    case 0: return .all
    case 1: return .global
    case 2: return .has(key)
    case 3: return .equal(key, value)
    case 4: return .notEqual(key, value)
    case 5: return .contains(key, value)
    case 6: return .startsWith(key, value)
    case 7: return .endsWith(key, value)
    case 8: return .in(key, (0..<Int(rng.next() % 4)).map { _ in pick(valuePool) })
    case 9: return .notIn(key, (0..<Int(rng.next() % 4)).map { _ in pick(valuePool) })
    case 10: return .not(randomExpression(depth: depth - 1, using: &rng))
    case 11: return .and((0..<Int(1 + rng.next() % 3)).map { _ in randomExpression(depth: depth - 1, using: &rng) })
    default: return .or((0..<Int(1 + rng.next() % 3)).map { _ in randomExpression(depth: depth - 1, using: &rng) })
    }
}

/// An independent, obviously-correct evaluator (values in the pools are ASCII, so String operations and
/// byte-wise semantics agree).
private func referenceMatches(_ expression: SelectorExpression, _ labels: [String: String]) -> Bool {
    switch expression {
    case .all: return true
    case .global: return labels[ns] == nil
    case .has(let k): return labels.keys.contains(k)
    case .equal(let k, let v): return labels[k].map { $0 == v } ?? false
    case .notEqual(let k, let v): return labels[k].map { $0 != v } ?? true
    case .contains(let k, let v): return labels[k].map { v.isEmpty || $0.contains(v) } ?? false
    case .startsWith(let k, let v): return labels[k].map { $0.hasPrefix(v) } ?? false
    case .endsWith(let k, let v): return labels[k].map { $0.hasSuffix(v) } ?? false
    case .in(let k, let vs): return labels[k].map { vs.contains($0) } ?? false
    case .notIn(let k, let vs): return labels[k].map { !vs.contains($0) } ?? true
    case .not(let e): return !referenceMatches(e, labels)
    case .and(let es): return es.allSatisfy { referenceMatches($0, labels) }
    case .or(let es): return es.contains { referenceMatches($0, labels) }
    }
}

private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// Minimal single-value coders, so the tests need no Foundation.

private struct Unsupported: Error {}

private struct StringDecoder: Decoder, SingleValueDecodingContainer {
    var value: String
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        throw Unsupported()
    }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { throw Unsupported() }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool { false }
    func decode(_ type: String.Type) throws -> String { value }
    func decode(_ type: Bool.Type) throws -> Bool { throw Unsupported() }
    func decode(_ type: Double.Type) throws -> Double { throw Unsupported() }
    func decode(_ type: Float.Type) throws -> Float { throw Unsupported() }
    func decode(_ type: Int.Type) throws -> Int { throw Unsupported() }
    func decode(_ type: Int8.Type) throws -> Int8 { throw Unsupported() }
    func decode(_ type: Int16.Type) throws -> Int16 { throw Unsupported() }
    func decode(_ type: Int32.Type) throws -> Int32 { throw Unsupported() }
    func decode(_ type: Int64.Type) throws -> Int64 { throw Unsupported() }
    func decode(_ type: UInt.Type) throws -> UInt { throw Unsupported() }
    func decode(_ type: UInt8.Type) throws -> UInt8 { throw Unsupported() }
    func decode(_ type: UInt16.Type) throws -> UInt16 { throw Unsupported() }
    func decode(_ type: UInt32.Type) throws -> UInt32 { throw Unsupported() }
    func decode(_ type: UInt64.Type) throws -> UInt64 { throw Unsupported() }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let string = value as? T {
            return string
        }
        throw Unsupported()
    }
}

private final class StringEncoder: Encoder, SingleValueEncodingContainer {
    var value: String?
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    static func encode(_ value: some Encodable) throws -> String {
        let encoder = StringEncoder()
        try value.encode(to: encoder)
        guard let result = encoder.value else { throw Unsupported() }
        return result
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        fatalError("unsupported")
    }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { fatalError("unsupported") }
    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    func encodeNil() throws { throw Unsupported() }
    func encode(_ value: String) throws { self.value = value }
    func encode(_ value: Bool) throws { throw Unsupported() }
    func encode(_ value: Double) throws { throw Unsupported() }
    func encode(_ value: Float) throws { throw Unsupported() }
    func encode(_ value: Int) throws { throw Unsupported() }
    func encode(_ value: Int8) throws { throw Unsupported() }
    func encode(_ value: Int16) throws { throw Unsupported() }
    func encode(_ value: Int32) throws { throw Unsupported() }
    func encode(_ value: Int64) throws { throw Unsupported() }
    func encode(_ value: UInt) throws { throw Unsupported() }
    func encode(_ value: UInt8) throws { throw Unsupported() }
    func encode(_ value: UInt16) throws { throw Unsupported() }
    func encode(_ value: UInt32) throws { throw Unsupported() }
    func encode(_ value: UInt64) throws { throw Unsupported() }
    func encode<T: Encodable>(_ value: T) throws {
        guard let string = value as? String else { throw Unsupported() }
        self.value = string
    }
}
