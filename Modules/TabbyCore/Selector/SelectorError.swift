// Errors raised while parsing a Calico label selector.

/// A selector that could not be parsed: where (1-based column, in Characters) and what was expected there.
public struct SelectorError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The selector text that failed to parse.
    public var source: String
    /// 1-based column in `source`, counted in Characters.
    public var column: Int
    /// What the parser wanted at `column`, e.g. "a string literal".
    public var expected: String
    /// What was there instead, e.g. "end of input" or "'b'".
    public var found: String

    public init(source: String, column: Int, expected: String, found: String) {
        self.source = source
        self.column = column
        self.expected = expected
        self.found = found
    }

    /// "column 6: expected a string literal, found 'b'".
    public var description: String {
        "column \(column): expected \(expected), found \(found)"
    }
}
