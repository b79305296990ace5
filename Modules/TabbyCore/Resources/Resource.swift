/// Kubernetes-style object metadata. Fields Tabby does not model (managedFields, ownerReferences,
/// ...) are accepted and dropped, so `kubectl get -o yaml` output can be applied as it is.
public struct ObjectMeta: Codable, Hashable, Sendable, AcceptsUnknownFields {
    public var name: String
    public var namespace: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var resourceVersion: String?
    public var uid: String?
    public var creationTimestamp: String?

    public init(name: String, namespace: String? = nil, labels: [String: String]? = nil) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // A missing name is a validation problem, reported with the others, not a decode failure.
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels)
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations)
        resourceVersion = try container.decodeIfPresent(String.self, forKey: .resourceVersion)
        uid = try container.decodeIfPresent(String.self, forKey: .uid)
        creationTimestamp = try container.decodeIfPresent(String.self, forKey: .creationTimestamp)
    }
}

/// The spec of one resource kind: what it is called, where it lives, its defaults and its rules.
public protocol ResourceSpec: Codable, Hashable, Sendable {
    static var kind: ResourceKind { get }
    /// An empty spec, used when a document has no `spec` (e.g. a Tier with defaults only).
    init()
    /// Fills in what Calico fills in on create (policy `types`, pool `blockSize`, ...).
    mutating func applyDefaults(metadata: ObjectMeta)
    /// Reports every problem, at paths relative to `spec`.
    func validate(_ validator: inout Validator, metadata: ObjectMeta)
}

extension ResourceSpec {
    public mutating func applyDefaults(metadata: ObjectMeta) {}
}

/// Any resource Tabby reads: `apiVersion`, `kind`, `metadata` and a typed `spec`.
public protocol ResourceObject: Codable, Hashable, Sendable {
    static var kind: ResourceKind { get }
    var metadata: ObjectMeta { get set }
    mutating func applyDefaults()
    func validate() -> [ValidationProblem]
}

/// The envelope shared by every kind.
public struct Resource<Spec: ResourceSpec>: ResourceObject {
    public static var kind: ResourceKind { Spec.kind }

    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: Spec

    public init(metadata: ObjectMeta, spec: Spec = Spec()) {
        self.apiVersion = Spec.kind.apiVersion
        self.kind = Spec.kind.name
        self.metadata = metadata
        self.spec = spec
    }

    enum CodingKeys: String, CodingKey {
        case apiVersion, kind, metadata, spec, status
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion) ?? Spec.kind.apiVersion
        kind = try container.decodeIfPresent(String.self, forKey: .kind) ?? Spec.kind.name
        metadata = try container.decode(ObjectMeta.self, forKey: .metadata)
        spec = try container.decodeIfPresent(Spec.self, forKey: .spec) ?? Spec()
        // Kubernetes objects carry a server-written `status`; accepted and not kept.
        _ = container.contains(.status)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(apiVersion, forKey: .apiVersion)
        try container.encode(kind, forKey: .kind)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(spec, forKey: .spec)
    }

    public mutating func applyDefaults() {
        if Spec.kind.isNamespaced, metadata.namespace == nil || metadata.namespace == "" {
            metadata.namespace = "default"
        }
        spec.applyDefaults(metadata: metadata)
    }

    public func validate() -> [ValidationProblem] {
        var validator = Validator()
        validator.validateMetadata(metadata, kind: Spec.kind)
        validator.at("spec") { spec.validate(&$0, metadata: metadata) }
        return validator.problems
    }
}

/// A resource of any kind, as read from a manifest.
public struct AnyResource: Hashable, Sendable, Encodable, CustomStringConvertible {
    public var base: any ResourceObject

    public init(_ base: some ResourceObject) { self.base = base }

    public var kind: ResourceKind { type(of: base).kind }
    public var metadata: ObjectMeta { base.metadata }

    /// `NetworkPolicy default/allow-tcp-6379`, `IPPool my-pool`.
    public var description: String {
        if let namespace = metadata.namespace, kind.isNamespaced {
            return "\(kind.name) \(namespace)/\(metadata.name)"
        }
        return "\(kind.name) \(metadata.name)"
    }

    public func `as`<T: ResourceObject>(_ type: T.Type) -> T? { base as? T }

    public static func == (lhs: AnyResource, rhs: AnyResource) -> Bool {
        func equal<T: ResourceObject>(_ left: T) -> Bool { (rhs.base as? T) == left }
        return equal(lhs.base)
    }

    public func hash(into hasher: inout Hasher) { base.hash(into: &hasher) }

    public func encode(to encoder: any Encoder) throws { try base.encode(to: encoder) }
}

/// A string-valued enumeration whose decoding error lists the accepted values.
public protocol StringEnumeration: RawRepresentable, CaseIterable, Codable, Hashable, Sendable
where RawValue == String {}

extension StringEnumeration {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: text) else {
            let accepted = Self.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "must be one of \(accepted) (got \"\(text)\")")
            )
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
