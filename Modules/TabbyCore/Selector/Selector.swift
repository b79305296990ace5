// A Calico label selector: parsed once, evaluated many times without allocating.

/// A parsed Calico label selector such as `app == "web" && has(tier)`.
///
/// Two selectors are equal when their (normalised) expressions are equal, so selectors that differ only in
/// whitespace, quoting, set order or redundant parentheses compare and hash equal.
public struct Selector: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible, Codable {
    /// The normalised expression tree.
    public let expression: SelectorExpression
    private let canonicalText: String

    /// Parses `source`; an empty or all-whitespace source is `all()`.
    ///
    /// (A throwing `init(_:)` cannot coexist with LosslessStringConvertible's `init?(_:)`, so parsing is
    /// `init(parsing:)` / `Selector.parse(_:)`.)
    public init(parsing source: String) throws(SelectorError) {
        var parser = SelectorParser(source)
        self.init(normalizedExpression: try parser.parse())
    }

    /// Parses `source`, throwing a `SelectorError` naming the column and what was expected.
    public static func parse(_ source: String) throws(SelectorError) -> Selector {
        try Selector(parsing: source)
    }

    /// LosslessStringConvertible: `nil` when `description` is not a valid selector.
    public init?(_ description: String) {
        guard let selector = try? Selector(parsing: description) else { return nil }
        self = selector
    }

    /// Wraps an expression, normalising it (sets sorted and de-duplicated, `!!x` = `x`, one-operand groups
    /// unwrapped) so that `Selector(parsing: canonical)` gives back an equal selector.
    public init(expression: SelectorExpression) {
        self.init(normalizedExpression: expression.normalized)
    }

    private init(normalizedExpression: SelectorExpression) {
        self.expression = normalizedExpression
        self.canonicalText = normalizedExpression.canonical
    }

    /// `all()`.
    public static let all = Selector(expression: .all)

    /// Calico's canonical text, e.g. `(a == "b" && !has(c))`; equal to `description`.
    public var canonical: String { canonicalText }

    public var description: String { canonicalText }

    /// Whether the labels satisfy the selector. Does not allocate.
    public func matches(_ labels: [String: String]) -> Bool {
        expression.matches(labels)
    }

    /// The label keys the selector reads, for indexing (`global()` reads `projectcalico.org/namespace`).
    public var labelKeys: Set<String> { expression.labelKeys }

    /// Whether this is exactly `all()` (after normalisation, so also `""`, `(all())` and `!!all()`).
    public var isAll: Bool { expression == .all }

    public static func == (lhs: Selector, rhs: Selector) -> Bool {
        lhs.expression == rhs.expression
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(expression)
    }

    /// Decodes from a selector string; a bad selector is `DecodingError.dataCorrupted` whose
    /// debugDescription is the `SelectorError` description.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let source = try container.decode(String.self)
        do {
            self = try Selector(parsing: source)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: decoder.codingPath,
                    debugDescription: error.description,
                    underlyingError: error
                )
            )
        }
    }

    /// Encodes as the canonical selector string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(canonicalText)
    }
}
