// Recursive-descent parser for Calico's label selector language.
//
//   sel   := "" | or                      (empty or all-whitespace = all())
//   or    := and ("||" and)*
//   and   := unary ("&&" unary)*
//   unary := "!"* ( has(LABEL) | all() | global() | "(" or ")"
//                 | LABEL ("=="|"!="|"contains"|"starts with"|"ends with") STRING
//                 | LABEL ("in"|"not in") "{" [STRING ("," STRING)*] "}" )
//   LABEL := [A-Za-z0-9_./-]{1,512}       STRING := "..." or '...' (no escapes)
//
// Details taken from Calico's lib/selector/tokenizer/tokenizer.go and parser/parser.go:
// - whitespace between tokens is a space or a tab only;
// - `has(`, `all(` and `global(` must have the `(` directly after the word, but allow whitespace inside
//   the parentheses; otherwise `has`, `all` and `global` are ordinary label names;
// - after a label, the word operators need a word boundary after them (the next character is not a label
//   character), and any amount of whitespace, including none, between the two words of `starts with`,
//   `ends with` and `not in` (so `startswith`, `endswith` and `notin` are accepted);
// - only `&&` and `||` are accepted for and/or (no `and`/`or` words);
// - a run of `!` collapses to a single negation or none; parentheses produce no node of their own.

struct SelectorParser {
    private let source: String
    private let bytes: [UInt8]
    private var position = 0

    static let maxLabelLength = 512

    private static let expectedExpression = "a selector expression (a label, '!', '(', has(), all() or global())"
    private static let expectedOperator =
        "an operator ('==', '!=', 'contains', 'starts with', 'ends with', 'in' or 'not in')"

    init(_ source: String) {
        self.source = source
        self.bytes = Array(source.utf8)
    }

    /// Parses the whole source. The result is already normalised (see `SelectorExpression.normalized`).
    mutating func parse() throws(SelectorError) -> SelectorExpression {
        skipWhitespace()
        if atEnd {
            return .all
        }
        let expression = try parseOr()
        skipWhitespace()
        if !atEnd {
            throw error(expected: "'&&', '||' or the end of the selector")
        }
        return expression
    }

    // MARK: Grammar

    private mutating func parseOr() throws(SelectorError) -> SelectorExpression {
        var operands = [try parseAnd()]
        while true {
            skipWhitespace()
            guard consume("||") else { break }
            operands.append(try parseAnd())
        }
        return operands.count == 1 ? operands[0] : .or(operands)
    }

    private mutating func parseAnd() throws(SelectorError) -> SelectorExpression {
        var operands = [try parseUnary()]
        while true {
            skipWhitespace()
            guard consume("&&") else { break }
            operands.append(try parseUnary())
        }
        return operands.count == 1 ? operands[0] : .and(operands)
    }

    private mutating func parseUnary() throws(SelectorError) -> SelectorExpression {
        skipWhitespace()
        var negated = false
        while peek == UInt8(ascii: "!") && peek(at: position + 1) != UInt8(ascii: "=") {
            negated.toggle()
            position += 1
            skipWhitespace()
        }
        let operand = try parsePrimary()
        return negated ? operand.negated : operand
    }

    private mutating func parsePrimary() throws(SelectorError) -> SelectorExpression {
        guard let byte = peek else {
            throw error(expected: Self.expectedExpression)
        }
        if byte == UInt8(ascii: "(") {
            position += 1
            let inner = try parseOr()
            skipWhitespace()
            guard consume(")") else {
                throw error(expected: "'&&', '||' or ')'")
            }
            return inner
        }
        guard Self.isLabelByte(byte) else {
            throw error(expected: Self.expectedExpression)
        }
        let start = position
        scanLabelBytes()
        if peek == UInt8(ascii: "(") {
            switch String(decoding: bytes[start..<position], as: UTF8.self) {
            case "has":
                position += 1
                skipWhitespace()
                let key = try parseLabel()
                skipWhitespace()
                guard consume(")") else { throw error(expected: "')'") }
                return .has(key)
            case "all":
                position += 1
                skipWhitespace()
                guard consume(")") else { throw error(expected: "')'") }
                return .all
            case "global":
                position += 1
                skipWhitespace()
                guard consume(")") else { throw error(expected: "')'") }
                return .global
            default:
                break
            }
        }
        position = start
        let key = try parseLabel()
        return try parseOperation(key)
    }

    private mutating func parseOperation(_ key: String) throws(SelectorError) -> SelectorExpression {
        skipWhitespace()
        if consume("==") {
            return .equal(key, try parseString(expected: "a string literal"))
        }
        if consume("!=") {
            return .notEqual(key, try parseString(expected: "a string literal"))
        }
        if consumeWords("contains") {
            return .contains(key, try parseString(expected: "a string literal"))
        }
        if consumeWords("starts", "with") {
            return .startsWith(key, try parseString(expected: "a string literal"))
        }
        if consumeWords("ends", "with") {
            return .endsWith(key, try parseString(expected: "a string literal"))
        }
        if consumeWords("not", "in") {
            return .notIn(key, try parseSet())
        }
        if consumeWords("in") {
            return .in(key, try parseSet())
        }
        throw error(expected: Self.expectedOperator)
    }

    private mutating func parseSet() throws(SelectorError) -> [String] {
        skipWhitespace()
        guard consume("{") else {
            throw error(expected: "'{' starting a set of string literals")
        }
        var members: [String] = []
        skipWhitespace()
        if consume("}") {
            return members
        }
        members.append(try parseString(expected: "a string literal or '}'"))
        while true {
            skipWhitespace()
            if consume("}") {
                break
            }
            guard consume(",") else {
                throw error(expected: "',' or '}'")
            }
            members.append(try parseString(expected: "a string literal"))
        }
        return SelectorUTF8.sortedUnique(members)
    }

    // MARK: Tokens

    private mutating func parseLabel() throws(SelectorError) -> String {
        let start = position
        guard let byte = peek, Self.isLabelByte(byte) else {
            throw error(expected: "a label name")
        }
        scanLabelBytes()
        let length = position - start
        guard length <= Self.maxLabelLength else {
            throw error(
                at: start,
                expected: "a label name of at most \(Self.maxLabelLength) characters",
                found: "a label of \(length) characters"
            )
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    private mutating func parseString(expected: String) throws(SelectorError) -> String {
        skipWhitespace()
        guard let quote = peek, quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
            throw error(expected: expected)
        }
        let start = position
        guard let end = closingQuote(from: start) else {
            let mark = quote == UInt8(ascii: "\"") ? "'\"'" : "\"'\""
            throw error(at: start, expected: "a closing \(mark) for the string literal", found: "end of input")
        }
        position = end + 1
        return String(decoding: bytes[(start + 1)..<end], as: UTF8.self)
    }

    private func closingQuote(from start: Int) -> Int? {
        let quote = bytes[start]
        var index = start + 1
        while index < bytes.count {
            if bytes[index] == quote {
                return index
            }
            index += 1
        }
        return nil
    }

    // MARK: Scanning

    private var atEnd: Bool { position >= bytes.count }

    private var peek: UInt8? { peek(at: position) }

    private func peek(at index: Int) -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
            position += 1
        }
    }

    private mutating func scanLabelBytes() {
        while let byte = peek, Self.isLabelByte(byte) {
            position += 1
        }
    }

    /// Consumes `literal` (ASCII punctuation) if it is next.
    private mutating func consume(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        let matches = literal.withUTF8Buffer { buffer in
            var index = 0
            while index < count {
                if bytes[position + index] != buffer[index] {
                    return false
                }
                index += 1
            }
            return true
        }
        if matches {
            position += count
        }
        return matches
    }

    /// Consumes a keyword made of one or more words separated by optional whitespace, followed by a
    /// word boundary (as Calico's cutMultiWordPrefixCheckBreak does).
    private mutating func consumeWords(_ words: StaticString...) -> Bool {
        let start = position
        for (index, word) in words.enumerated() {
            if index > 0 {
                skipWhitespace()
            }
            guard consume(word) else {
                position = start
                return false
            }
        }
        if let byte = peek, Self.isLabelByte(byte) {
            position = start
            return false
        }
        return true
    }

    static func isLabelByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"),
            UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    // MARK: Errors

    private func error(expected: String) -> SelectorError {
        error(at: position, expected: expected, found: describeToken(at: position))
    }

    private func error(at offset: Int, expected: String, found: String) -> SelectorError {
        SelectorError(source: source, column: column(ofByte: offset), expected: expected, found: found)
    }

    /// 1-based column, in Characters, of a UTF-8 byte offset (always a scalar boundary here).
    private func column(ofByte offset: Int) -> Int {
        let index = stringIndex(ofByte: offset)
        return source[..<index].count + 1
    }

    private func stringIndex(ofByte offset: Int) -> String.Index {
        source.utf8.index(source.utf8.startIndex, offsetBy: min(offset, bytes.count))
    }

    /// A short description of what starts at `offset`: "end of input", "'b'", "'&&'", "the string \"x\"".
    private func describeToken(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let byte = bytes[offset]
        if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
            guard let end = closingQuote(from: offset) else { return "an unterminated string literal" }
            return "the string literal " + Self.abbreviate(bytes[offset...end])
        }
        if Self.isLabelByte(byte) {
            var end = offset
            while end < bytes.count && Self.isLabelByte(bytes[end]) {
                end += 1
            }
            return "'" + Self.abbreviate(bytes[offset..<end]) + "'"
        }
        if offset + 1 < bytes.count {
            let pair = String(decoding: bytes[offset...(offset + 1)], as: UTF8.self)
            if ["&&", "||", "==", "!="].contains(pair) {
                return "'\(pair)'"
            }
        }
        let index = stringIndex(ofByte: offset)
        guard let character = source[index...].first else { return "end of input" }
        // Escape control characters (a newline is not whitespace in the selector language).
        let text = character.unicodeScalars.map { scalar in
            scalar.value < 0x20 || scalar.value == 0x7F ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return "'" + text.joined() + "'"
    }

    private static func abbreviate(_ slice: ArraySlice<UInt8>) -> String {
        let limit = 40
        if slice.count <= limit {
            return String(decoding: slice, as: UTF8.self)
        }
        let head = String(decoding: slice.prefix(limit), as: UTF8.self)
        return head + "..."
    }
}
