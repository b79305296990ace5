/// Kubernetes label syntax, as enforced by the API server, so bad labels are caught before they are sent.
///
/// A key is an optional prefix and '/' followed by a name. The prefix is a DNS-1123 subdomain: at most 253
/// characters of lowercase alphanumerics, '-' and '.', each dot-separated part starting and ending alphanumeric.
/// The name is 1-63 characters of `[A-Za-z0-9-_.]`, starting and ending alphanumeric.
/// A value is empty, or follows the same rule as a name.
public enum LabelRules: Sendable {
    /// The longest allowed name part or value.
    public static let maximumNameLength = 63
    /// The longest allowed key prefix.
    public static let maximumPrefixLength = 253

    /// Nil if `key` is a valid label key, otherwise why it is not.
    public static func problem(withKey key: String) -> String? {
        guard !key.isEmpty else { return "key must not be empty" }
        let utf8 = key.utf8
        guard let slash = utf8.firstIndex(of: UInt8(ascii: "/")) else {
            return nameProblem(utf8[...], part: "name part")
        }
        let prefix = utf8[..<slash]
        let name = utf8[utf8.index(after: slash)...]
        if let problem = prefixProblem(prefix) { return problem }
        return nameProblem(name, part: "name part")
    }

    /// Nil if `value` is a valid label value (the empty string is), otherwise why it is not.
    public static func problem(withValue value: String) -> String? {
        guard !value.isEmpty else { return nil }
        return nameProblem(value.utf8[...], part: "value")
    }

    private static func isNameCharacter(_ byte: UInt8) -> Bool {
        ASCIIText.isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: ".")
    }

    private static func nameProblem(_ name: Substring.UTF8View, part: String) -> String? {
        let text = String(decoding: name, as: UTF8.self)
        guard !name.isEmpty else { return "\(part) must not be empty" }
        guard name.count <= maximumNameLength else {
            return "\(part) must be \(maximumNameLength) characters or less (got \(name.count))"
        }
        guard name.allSatisfy(isNameCharacter) else {
            return "\(part) \"\(text)\" may contain only letters, digits, '-', '_' and '.'"
        }
        guard ASCIIText.isAlphanumeric(name.first!), ASCIIText.isAlphanumeric(name.last!) else {
            return "\(part) \"\(text)\" must start and end with a letter or digit"
        }
        return nil
    }

    private static func prefixProblem(_ prefix: Substring.UTF8View) -> String? {
        let text = String(decoding: prefix, as: UTF8.self)
        guard !prefix.isEmpty else { return "prefix part before '/' must not be empty" }
        guard prefix.count <= maximumPrefixLength else {
            return "prefix part must be \(maximumPrefixLength) characters or less (got \(prefix.count))"
        }
        let isSubdomainCharacter = { (byte: UInt8) in
            ASCIIText.isLowercaseLetter(byte) || ASCIIText.isDecimalDigit(byte) || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: ".")
        }
        guard prefix.allSatisfy(isSubdomainCharacter) else {
            return "prefix part \"\(text)\" must be a DNS subdomain of lowercase letters, digits, '-' and '.'"
        }
        let isLowercaseAlphanumeric = { (byte: UInt8) in
            ASCIIText.isLowercaseLetter(byte) || ASCIIText.isDecimalDigit(byte)
        }
        for label in prefix.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard let first = label.first, let last = label.last,
                isLowercaseAlphanumeric(first), isLowercaseAlphanumeric(last)
            else {
                return "prefix part \"\(text)\": each dot-separated part must start and end with a letter or digit"
            }
        }
        return nil
    }
}

/// A set of Kubernetes labels, key to value.
public typealias Labels = [String: String]

/// Why a "k=v,k2=v2" label list could not be parsed.
public struct LabelParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The complete text that failed to parse.
    public var input: String
    /// What was wrong, naming the offending item.
    public var reason: String

    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    /// For example `invalid labels "app=-x": value "-x" must start and end with a letter or digit`.
    public var description: String {
        "invalid labels \"\(input)\": \(reason)"
    }
}

extension Dictionary where Key == String, Value == String {
    /// Parses "k=v,k2=v2" (the CLI's --labels and CNI's TABBY_LABELS).
    ///
    /// Whitespace around items is trimmed and an empty (or all-whitespace) string gives `[:]`. Each item must
    /// contain '='; keys and values are checked with `LabelRules`. Empty items and duplicate keys are errors,
    /// because both usually mean a typo that would otherwise silently drop a label.
    public static func parseLabels(_ text: String) throws(LabelParseError) -> [String: String] {
        func failure(_ reason: String) -> LabelParseError {
            LabelParseError(input: text, reason: reason)
        }
        guard !trimmingLabelWhitespace(text[...]).isEmpty else { return [:] }
        var labels: [String: String] = [:]
        for (index, rawItem) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let item = trimmingLabelWhitespace(rawItem)
            let position = index + 1
            guard !item.isEmpty else { throw failure("item \(position) is empty") }
            guard let equals = item.firstIndex(of: "=") else {
                throw failure("item \(position) \"\(item)\" is not of the form key=value")
            }
            let key = String(item[..<equals])
            let value = String(item[item.index(after: equals)...])
            if let problem = LabelRules.problem(withKey: key) {
                throw failure("key \"\(key)\": \(problem)")
            }
            if let problem = LabelRules.problem(withValue: value) {
                throw failure("value of \"\(key)\": \(problem)")
            }
            guard labels.updateValue(value, forKey: key) == nil else {
                throw failure("key \"\(key)\" appears more than once")
            }
        }
        return labels
    }

    /// "k=v,k2=v2" sorted by key; the inverse of `parseLabels` for valid labels.
    public var labelsDescription: String {
        sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    private static func trimmingLabelWhitespace(_ text: Substring) -> Substring {
        let isWhitespace = { (character: Character) in character.isWhitespace }
        guard let start = text.firstIndex(where: { !isWhitespace($0) }),
            let end = text.lastIndex(where: { !isWhitespace($0) })
        else { return text[text.endIndex...] }
        return text[start...end]
    }
}
