import Foundation
import TabbyCore

/// A problem with a resource operation, naming the resource.
public enum ResourceError: Error, Sendable, CustomStringConvertible {
    case notFound(String)
    case alreadyExists(String)
    /// Someone else changed the resource since `resourceVersion` was read.
    case conflict(String, reason: String)
    /// The resource failed validation; nothing was written.
    case invalid(String, problems: [ValidationProblem])
    /// A stored value that does not decode: reported, never overwritten silently.
    case corruptedValue(key: String, reason: String)
    case store(StoreError)

    public var description: String {
        switch self {
        case .notFound(let resource): return "\(resource) does not exist"
        case .alreadyExists(let resource): return "\(resource) already exists"
        case .conflict(let resource, let reason): return "\(resource) was changed concurrently: \(reason)"
        case .invalid(let resource, let problems):
            return "\(resource) is invalid: " + problems.map(\.description).joined(separator: "; ")
        case .corruptedValue(let key, let reason): return "stored value at \(key) cannot be read: \(reason)"
        case .store(let error): return error.description
        }
    }
}

/// A change to a resource, from `ResourceClient.watch`.
public enum ResourceEvent: Sendable {
    case added(AnyResource)
    case modified(AnyResource)
    case deleted(kind: ResourceKind, namespace: String?, name: String, revision: Revision)
    /// History is gone: list again and watch after the list's revision.
    case resyncRequired
}

/// Typed access to resources in a `KeyValueStore`, shared by the CLI, IPAM and the agent.
///
/// Keys: `/tabby/v3/<plural>/<namespace>/<name>` for namespaced kinds, `/tabby/v3/<plural>/<name>`
/// otherwise. Values: the resource as JSON, without `resourceVersion` (which is the key's
/// modRevision, filled in on every read).
public struct ResourceClient: Sendable {
    public static let keyPrefix = "/tabby/v3/"

    public let store: any KeyValueStore

    public init(store: any KeyValueStore) {
        self.store = store
    }

    public static func prefix(for kind: ResourceKind, namespace: String? = nil) -> String {
        var prefix = keyPrefix + kind.plural + "/"
        if kind.isNamespaced, let namespace { prefix += namespace + "/" }
        return prefix
    }

    public static func key(for kind: ResourceKind, namespace: String?, name: String) -> String {
        prefix(for: kind, namespace: kind.isNamespaced ? (namespace ?? "default") : nil) + name
    }

    static func key(for resource: AnyResource) -> String {
        key(for: resource.kind, namespace: resource.metadata.namespace, name: resource.metadata.name)
    }

    /// `NetworkPolicy production/allow-db` or `IPPool pool-1`.
    public static func describe(_ kind: ResourceKind, namespace: String?, name: String) -> String {
        kind.isNamespaced ? "\(kind.name) \(namespace ?? "default")/\(name)" : "\(kind.name) \(name)"
    }

    // MARK: Reads

    public func get(_ kind: ResourceKind, name: String, namespace: String? = nil) async throws(ResourceError)
        -> AnyResource?
    {
        let key = Self.key(for: kind, namespace: namespace, name: name)
        let stored: KeyValue?
        do { stored = try await store.get(key) } catch { throw .store(error) }
        return try stored.map { (kv) throws(ResourceError) in try Self.decode(kv, as: kind) }
    }

    /// Whether a resource is stored, without decoding it (the CNI plugin asks this on every ADD).
    public func exists(_ kind: ResourceKind, name: String, namespace: String? = nil) async throws(ResourceError)
        -> Bool
    {
        do { return try await store.get(Self.key(for: kind, namespace: namespace, name: name)) != nil } catch {
            throw .store(error)
        }
    }

    public func get<T: ResourceObject>(_ type: T.Type, name: String, namespace: String? = nil)
        async throws(ResourceError) -> T?
    {
        try await get(T.kind, name: name, namespace: namespace)?.as(T.self)
    }

    /// Every resource of `kind` (in `namespace` when given), sorted by namespace and name, and the
    /// revision to watch after.
    public func list(_ kind: ResourceKind, namespace: String? = nil) async throws(ResourceError) -> (
        items: [AnyResource], revision: Revision
    ) {
        let listing: (items: [KeyValue], revision: Revision)
        do { listing = try await store.list(prefix: Self.prefix(for: kind, namespace: namespace)) } catch {
            throw .store(error)
        }
        var items: [AnyResource] = []
        for kv in listing.items { items.append(try Self.decode(kv, as: kind)) }
        return (items, listing.revision)
    }

    public func list<T: ResourceObject>(_ type: T.Type, namespace: String? = nil) async throws(ResourceError) -> [T] {
        try await list(T.kind, namespace: namespace).items.compactMap { $0.as(T.self) }
    }

    // MARK: Writes

    /// Creates a resource that must not exist yet. Defaults are applied and it is validated first;
    /// `uid` and `creationTimestamp` are set. Returns it as stored, with its `resourceVersion`.
    @discardableResult
    public func create(_ resource: AnyResource) async throws(ResourceError) -> AnyResource {
        var resource = try Self.prepared(resource)
        resource.base.metadata.uid = UUID().uuidString.lowercased()
        resource.base.metadata.creationTimestamp = Self.timestamp()
        let key = Self.key(for: resource)
        let value = try Self.encode(resource)
        do {
            let kv = try await store.create(key, value: value)
            return Self.withVersion(resource, kv.modRevision)
        } catch .alreadyExists(_) {
            throw .alreadyExists(resource.description)
        } catch {
            throw .store(error)
        }
    }

    /// Replaces an existing resource. With `metadata.resourceVersion` set, only if it is still at
    /// that version (compare-and-swap); without, over whatever is stored. `uid` and
    /// `creationTimestamp` are kept from the stored resource.
    @discardableResult
    public func replace(_ resource: AnyResource) async throws(ResourceError) -> AnyResource {
        var resource = try Self.prepared(resource)
        let key = Self.key(for: resource)
        let stored: KeyValue
        do {
            guard let current = try await store.get(key) else { throw ResourceError.notFound(resource.description) }
            stored = current
        } catch let error as ResourceError {
            throw error
        } catch let error as StoreError {
            throw .store(error)
        } catch {
            throw .store(.backend(store: store.name, reason: "\(error)"))
        }
        let expected: Revision
        if let version = resource.metadata.resourceVersion, !version.isEmpty {
            guard let revision = Revision(version) else {
                throw .invalid(
                    resource.description,
                    problems: [
                        ValidationProblem(
                            path: [.key("metadata"), .key("resourceVersion")],
                            message: "\"\(version)\" is not a resource version")
                    ])
            }
            expected = revision
        } else {
            expected = stored.modRevision
        }
        let previous = try Self.decode(stored, as: resource.kind)
        resource.base.metadata.uid = previous.metadata.uid
        resource.base.metadata.creationTimestamp = previous.metadata.creationTimestamp
        let value = try Self.encode(resource)
        do {
            let kv = try await store.update(key, value: value, expectedRevision: expected)
            return Self.withVersion(resource, kv.modRevision)
        } catch .conflict(_, let expected, let actual) {
            let now = actual.map { "it is at resourceVersion \($0)" } ?? "it was deleted"
            throw .conflict(resource.description, reason: "expected resourceVersion \(expected), but \(now)")
        } catch .notFound(_) {
            throw .notFound(resource.description)
        } catch {
            throw .store(error)
        }
    }

    /// Creates the resource, or replaces it if it exists (retrying a bounded number of times
    /// when someone else writes it meanwhile). Returns the stored resource and whether it was new.
    @discardableResult
    public func apply(_ resource: AnyResource) async throws(ResourceError) -> (resource: AnyResource, created: Bool) {
        var lastError: ResourceError?
        for _ in 0..<10 {
            do {
                return (try await create(resource), true)
            } catch .alreadyExists {
                var unversioned = resource
                unversioned.base.metadata.resourceVersion = nil
                do {
                    return (try await replace(unversioned), false)
                } catch .notFound {
                    lastError = .notFound(resource.description)  // deleted meanwhile: create again
                } catch .conflict(let name, let reason) {
                    lastError = .conflict(name, reason: reason)
                }
            }
        }
        throw lastError ?? .conflict(resource.description, reason: "too many concurrent writers")
    }

    /// Deletes a resource, only at `resourceVersion` when given. Returns what was deleted.
    @discardableResult
    public func delete(_ kind: ResourceKind, name: String, namespace: String? = nil, resourceVersion: String? = nil)
        async throws(ResourceError) -> AnyResource
    {
        let key = Self.key(for: kind, namespace: namespace, name: name)
        let description = Self.describe(kind, namespace: namespace, name: name)
        let expected = resourceVersion.flatMap { Revision($0) }
        do {
            let kv = try await store.delete(key, expectedRevision: expected)
            return try Self.decode(kv, as: kind)
        } catch let error as ResourceError {
            throw error
        } catch StoreError.notFound {
            throw .notFound(description)
        } catch StoreError.conflict(_, let expected, let actual) {
            let now = actual.map { "it is at resourceVersion \($0)" } ?? "it was deleted"
            throw .conflict(description, reason: "expected resourceVersion \(expected), but \(now)")
        } catch let error as StoreError {
            throw .store(error)
        } catch {
            throw .store(.backend(store: store.name, reason: "\(error)"))
        }
    }

    // MARK: Watch

    /// Changes to resources of `kind` after `revision`, in order. Values that do not decode end the
    /// stream with `.corruptedValue`.
    public func watch(_ kind: ResourceKind, namespace: String? = nil, after revision: Revision) -> AsyncThrowingStream<
        ResourceEvent, any Error
    > {
        let events = store.watch(prefix: Self.prefix(for: kind, namespace: namespace), after: revision)
        let prefix = Self.prefix(for: kind)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    for try await event in events {
                        switch event {
                        case .added(let kv): continuation.yield(.added(try Self.decode(kv, as: kind)))
                        case .modified(let kv, _): continuation.yield(.modified(try Self.decode(kv, as: kind)))
                        case .deleted(let key, let revision, _):
                            let parts = key.dropFirst(prefix.count).split(separator: "/", maxSplits: 1).map(String.init)
                            let (namespace, name) =
                                parts.count == 2 && kind.isNamespaced
                                ? (parts[0], parts[1]) : (nil, parts.joined(separator: "/"))
                            continuation.yield(
                                .deleted(kind: kind, namespace: namespace, name: name, revision: revision))
                        case .resyncRequired:
                            continuation.yield(.resyncRequired)
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Encoding

    /// Applies defaults and validates, as every write does.
    static func prepared(_ resource: AnyResource) throws(ResourceError) -> AnyResource {
        var resource = resource
        resource.base.applyDefaults()
        let problems = resource.base.validate()
        guard problems.isEmpty else { throw .invalid(resource.description, problems: problems) }
        return resource
    }

    static func encode(_ resource: AnyResource) throws(ResourceError) -> Data {
        var stored = resource
        stored.base.metadata.resourceVersion = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(stored)
        } catch {
            throw .corruptedValue(key: key(for: resource), reason: "cannot encode: \(error)")
        }
    }

    /// The resource kind a key belongs to (`/tabby/v3/<plural>/...`), nil for other keys.
    public static func kind(ofKey key: String) -> ResourceKind? {
        guard key.hasPrefix(keyPrefix) else { return nil }
        let plural = key.dropFirst(keyPrefix.count).prefix { $0 != "/" }
        return ResourceKind.allCases.first { $0.plural == plural }
    }

    /// Decodes a stored resource of any kind (as a watch over the whole prefix delivers them).
    public static func decode(_ kv: KeyValue) throws(ResourceError) -> AnyResource? {
        guard let kind = kind(ofKey: kv.key) else { return nil }
        return try decode(kv, as: kind)
    }

    public static func decode(_ kv: KeyValue, as kind: ResourceKind) throws(ResourceError) -> AnyResource {
        func decodeAs<T: ResourceObject>(_ type: T.Type) throws -> AnyResource {
            var value = try JSONDecoder().decode(T.self, from: kv.value)
            value.metadata.resourceVersion = String(kv.modRevision)
            return AnyResource(value)
        }
        do {
            return try decodeAs(kind.resourceType)
        } catch {
            throw .corruptedValue(key: kv.key, reason: "\(error)")
        }
    }

    static func withVersion(_ resource: AnyResource, _ revision: Revision) -> AnyResource {
        var resource = resource
        resource.base.metadata.resourceVersion = String(revision)
        return resource
    }

    static func timestamp() -> String {
        Timestamp.format(Date())
    }
}
