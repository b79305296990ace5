import Yams

/// A position in a manifest, 1-based, as editors show it.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// One step of a field path: `spec.ingress[0].action` is `[.key("spec"), .key("ingress"), .index(0), .key("action")]`.
public enum PathComponent: Hashable, Sendable {
    case key(String)
    case index(Int)
}

extension [PathComponent] {
    /// `spec.ingress[0].action`; the empty path prints as `(document)`.
    public var fieldPath: String {
        var text = ""
        for component in self {
            switch component {
            case .key(let key):
                if !text.isEmpty { text += "." }
                text += key
            case .index(let index):
                text += "[\(index)]"
            }
        }
        return text.isEmpty ? "(document)" : text
    }
}

/// A YAML or JSON value that remembers where it was written, so that every problem found while
/// decoding or validating can name its line and column.
public struct DocumentNode: Sendable {
    public enum Value: Sendable {
        case null
        case bool(Bool)
        case int(Int)
        case double(Double)
        case string(String)
        case sequence([DocumentNode])
        /// Keys in document order; a repeated key is reported when the tree is built.
        case mapping([(key: String, keyLocation: SourceLocation, value: DocumentNode)])
    }

    public var value: Value
    public var location: SourceLocation

    public init(value: Value, location: SourceLocation) {
        self.value = value
        self.location = location
    }

    /// A short name for the kind of value, for "expected a string, found a mapping".
    public var kindDescription: String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .double: return "a number"
        case .string: return "a string"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    public subscript(key: String) -> DocumentNode? {
        guard case .mapping(let entries) = value else { return nil }
        return entries.first { $0.key == key }?.value
    }

    public var stringValue: String? {
        if case .string(let text) = value { return text }
        return nil
    }

    /// The node at `path`, or the deepest node on the way there (a missing field is reported
    /// at its parent's position).
    public func deepestNode(at path: [PathComponent]) -> DocumentNode {
        var node = self
        for component in path {
            switch (component, node.value) {
            case (.key(let key), .mapping(let entries)):
                guard let next = entries.first(where: { $0.key == key })?.value else { return node }
                node = next
            case (.index(let index), .sequence(let items)) where items.indices.contains(index):
                node = items[index]
            default:
                return node
            }
        }
        return node
    }
}

/// A problem found while reading a YAML/JSON stream, before any schema applies.
public struct SyntaxProblem: Error, Sendable {
    public var location: SourceLocation?
    public var path: [PathComponent]
    public var message: String
}

extension DocumentNode {
    /// Parses every document of a YAML (or JSON) stream. Syntax errors end the stream (YAML
    /// cannot recover after one); duplicate keys are reported and the first occurrence kept.
    public static func parseStream(_ text: String) -> (
        documents: [DocumentNode], problems: [(document: Int, problem: SyntaxProblem)]
    ) {
        var documents: [DocumentNode] = []
        var problems: [(document: Int, problem: SyntaxProblem)] = []
        do {
            let parser = try Parser(yaml: text, resolver: .default, encoding: .utf8)
            while let node = try parser.nextRoot() {
                var local: [SyntaxProblem] = []
                let converted = convert(node, path: [], problems: &local)
                documents.append(converted)
                problems += local.map { (documents.count, $0) }
            }
        } catch let error as YamlError {
            problems.append((documents.count + 1, syntaxProblem(from: error)))
        } catch {
            problems.append((documents.count + 1, SyntaxProblem(location: nil, path: [], message: "\(error)")))
        }
        return (documents, problems)
    }

    private static func syntaxProblem(from error: YamlError) -> SyntaxProblem {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let reason = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return SyntaxProblem(
                location: SourceLocation(line: mark.line, column: mark.column),
                path: [],
                message: "YAML syntax error: \(reason)"
            )
        case .composer(let context, let problem, let mark, _):
            let reason = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return SyntaxProblem(
                location: SourceLocation(line: mark.line, column: mark.column),
                path: [],
                message: "YAML error: \(reason)"
            )
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
            return SyntaxProblem(
                location: SourceLocation(line: context.mark.line, column: context.mark.column),
                path: [],
                message: "duplicate key \(keys) in a mapping"
            )
        default:
            return SyntaxProblem(location: nil, path: [], message: "YAML error: \(error)")
        }
    }

    private static func location(of node: Yams.Node) -> SourceLocation {
        guard let mark = node.mark else { return SourceLocation(line: 0, column: 0) }
        return SourceLocation(line: mark.line, column: mark.column)
    }

    private static func convert(_ node: Yams.Node, path: [PathComponent], problems: inout [SyntaxProblem])
        -> DocumentNode
    {
        let here = location(of: node)
        switch node {
        case .scalar(let scalar):
            return DocumentNode(value: scalarValue(scalar, tag: node.tag), location: here)
        case .alias:
            // Yams resolves aliases while composing; an unresolved alias carries no value.
            return DocumentNode(value: .null, location: here)
        case .sequence(let sequence):
            let items = sequence.enumerated().map { index, item in
                convert(item, path: path + [.index(index)], problems: &problems)
            }
            return DocumentNode(value: .sequence(items), location: here)
        case .mapping(let mapping):
            var entries: [(key: String, keyLocation: SourceLocation, value: DocumentNode)] = []
            var seen: Set<String> = []
            for (keyNode, valueNode) in mapping {
                let keyLocation = location(of: keyNode)
                guard let key = keyNode.scalar?.string else {
                    problems.append(
                        SyntaxProblem(location: keyLocation, path: path, message: "mapping keys must be strings")
                    )
                    continue
                }
                guard seen.insert(key).inserted else {
                    problems.append(
                        SyntaxProblem(
                            location: keyLocation,
                            path: path + [.key(key)],
                            message: "duplicate key \"\(key)\""
                        )
                    )
                    continue
                }
                entries.append(
                    (key, keyLocation, convert(valueNode, path: path + [.key(key)], problems: &problems))
                )
            }
            return DocumentNode(value: .mapping(entries), location: here)
        }
    }

    private static func scalarValue(_ scalar: Yams.Node.Scalar, tag: Tag) -> Value {
        // Quoted scalars are strings whatever they look like ("80" stays a string, as in YAML).
        if scalar.style != .plain { return .string(scalar.string) }
        let node = Yams.Node.scalar(scalar)
        switch tag.rawValue {
        case Tag.Name.null.rawValue: return .null
        case Tag.Name.bool.rawValue: return node.bool.map(Value.bool) ?? .string(scalar.string)
        case Tag.Name.int.rawValue: return node.int.map(Value.int) ?? .string(scalar.string)
        case Tag.Name.float.rawValue: return node.float.map(Value.double) ?? .string(scalar.string)
        default: return .string(scalar.string)
        }
    }
}
