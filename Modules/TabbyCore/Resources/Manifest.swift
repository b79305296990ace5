import Foundation
import Yams

/// One problem in a manifest, with everything a user needs to find it.
public struct ManifestProblem: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file name (`-` for standard input).
    public var source: String
    /// 1-based document number in the stream.
    public var document: Int
    public var location: SourceLocation?
    /// `spec.ingress[0].action`, or `(document)`.
    public var path: String
    public var message: String

    /// `policy.yaml:12:9: document 2: spec.ingress[0].action: must be one of ...`
    public var description: String {
        let position = location.map { ":\($0.line):\($0.column)" } ?? ""
        return "\(source)\(position): document \(document): \(path): \(message)"
    }
}

/// A resource read from a manifest, with where it came from.
public struct ManifestEntry: Sendable {
    public var document: Int
    public var location: SourceLocation
    public var resource: AnyResource
}

/// What a manifest holds: the resources that are entirely valid, and every problem of the rest.
public struct Manifest: Sendable {
    public var entries: [ManifestEntry] = []
    public var problems: [ManifestProblem] = []

    public var resources: [AnyResource] { entries.map(\.resource) }
    public var isValid: Bool { problems.isEmpty }

    /// Reads a YAML (multi-document, `kind: List`) or JSON manifest. Defaults are applied to every
    /// resource and every resource is validated; nothing stops at the first problem.
    public init(text: String, source: String) {
        let (documents, syntaxProblems) = DocumentNode.parseStream(text)
        for (document, problem) in syntaxProblems {
            problems.append(
                ManifestProblem(
                    source: source,
                    document: document,
                    location: problem.location,
                    path: problem.path.fieldPath,
                    message: problem.message
                )
            )
        }
        for (index, node) in documents.enumerated() {
            read(node, document: index + 1, path: [], source: source)
        }
        // Top to bottom, as an editor shows them; equal positions keep the order they were found in.
        problems = problems.enumerated().sorted { left, right in
            let l = (left.element.document, left.element.location?.line ?? 0, left.element.location?.column ?? 0)
            let r = (right.element.document, right.element.location?.line ?? 0, right.element.location?.column ?? 0)
            return l != r ? l < r : left.offset < right.offset
        }.map(\.element)
    }

    private mutating func read(_ node: DocumentNode, document: Int, path: [PathComponent], source: String) {
        func problem(_ message: String, at subpath: [PathComponent] = [], location: SourceLocation? = nil) {
            let location = location ?? node.deepestNode(at: subpath).location
            problems.append(
                ManifestProblem(
                    source: source,
                    document: document,
                    location: location,
                    path: (path + subpath).fieldPath,
                    message: message
                )
            )
        }
        switch node.value {
        case .null:
            return  // an empty document, e.g. after a trailing `---`
        case .mapping:
            break
        default:
            problem("a resource must be a mapping with apiVersion, kind and metadata, found \(node.kindDescription)")
            return
        }
        guard let kindName = node["kind"]?.stringValue, !kindName.isEmpty else {
            problem("kind is missing", at: [.key("kind")])
            return
        }
        if kindName == "List" || kindName.hasSuffix("List") {
            guard case .sequence(let items)? = node["items"]?.value else {
                if node["items"] == nil {
                    return  // an empty list
                }
                problem("items must be a list", at: [.key("items")])
                return
            }
            for (index, item) in items.enumerated() {
                read(item, document: document, path: path + [.key("items"), .index(index)], source: source)
            }
            return
        }
        guard let apiVersion = node["apiVersion"]?.stringValue, !apiVersion.isEmpty else {
            problem(
                "apiVersion is missing (\(kindName) needs apiVersion: \(ResourceKind.calicoAPIVersion))",
                at: [.key("apiVersion")])
            return
        }
        guard let kind = ResourceKind.lookup(apiVersion: apiVersion, kind: kindName) else {
            let sameName = ResourceKind.allCases.filter { $0.name == kindName }
            if sameName.isEmpty {
                let known = Set(ResourceKind.allCases.map(\.name)).sorted().joined(separator: ", ")
                problem("unknown kind \"\(kindName)\"; Tabby knows \(known)", at: [.key("kind")])
            } else {
                let versions = sameName.map(\.apiVersion).joined(separator: " or ")
                problem("\(kindName) needs apiVersion \(versions), not \"\(apiVersion)\"", at: [.key("apiVersion")])
            }
            return
        }
        decode(kind.resourceType, node: node, document: document, path: path, source: source)
    }

    private mutating func decode<T: ResourceObject>(
        _ type: T.Type,
        node: DocumentNode,
        document: Int,
        path: [PathComponent],
        source: String
    ) {
        let (decoded, decodeProblems) = node.decode(T.self, at: path)
        for found in decodeProblems {
            problems.append(
                ManifestProblem(
                    source: source,
                    document: document,
                    location: found.location,
                    path: found.path.fieldPath,
                    message: found.message
                )
            )
        }
        guard var resource = decoded else { return }
        resource.applyDefaults()
        // A partially decoded resource is still validated, to report its other problems too; a
        // field that failed to decode reads as absent, so skip what validation says about it.
        let decodedPaths = decodeProblems.map { Array($0.path.dropFirst(path.count)) }
        let validationProblems = resource.validate().filter { found in
            !decodedPaths.contains { $0.starts(with: found.path) || found.path.starts(with: $0) }
        }
        for found in validationProblems {
            problems.append(
                ManifestProblem(
                    source: source,
                    document: document,
                    location: node.deepestNode(at: found.path).location,
                    path: (path + found.path).fieldPath,
                    message: found.message
                )
            )
        }
        if decodeProblems.isEmpty && validationProblems.isEmpty {
            entries.append(ManifestEntry(document: document, location: node.location, resource: AnyResource(resource)))
        }
    }
}

/// How resources are written back out.
public enum ManifestFormat: String, Sendable, CaseIterable {
    case yaml
    case json

    /// Renders resources: YAML documents separated by `---`, or one JSON value (an object for
    /// one resource, a `List` for several), as calicoctl prints them.
    public func render(_ resources: [AnyResource]) throws -> String {
        switch self {
        case .yaml:
            let encoder = YAMLEncoder()
            encoder.options.sortKeys = false
            return try resources.map { try encoder.encode($0) }.joined(separator: "---\n")
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
            let data: Data
            if resources.count == 1 {
                data = try encoder.encode(resources[0])
            } else {
                data = try encoder.encode(ResourceList(items: resources))
            }
            return String(decoding: data, as: UTF8.self) + "\n"
        }
    }
}

/// `kind: List` (or `<Kind>List`), for several resources in one value.
struct ResourceList: Encodable {
    var apiVersion = ResourceKind.calicoAPIVersion
    var kind = "List"
    var items: [AnyResource]
}

extension ManifestFormat {
    /// Resources of one kind as a `<Kind>List`, as `calicoctl get -o yaml` prints them.
    public func renderList(kind: ResourceKind, _ resources: [AnyResource]) throws -> String {
        let list = ResourceList(apiVersion: kind.apiVersion, kind: kind.name + "List", items: resources)
        switch self {
        case .yaml:
            return try YAMLEncoder().encode(list)
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(list), as: UTF8.self) + "\n"
        }
    }
}
