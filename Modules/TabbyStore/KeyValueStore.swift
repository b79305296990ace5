import Foundation

/// A datastore revision. Every write gets the next one; revisions only grow, and one store-wide
/// counter orders every change (as etcd's does).
public typealias Revision = Int64

/// One stored key and its value, with the revisions that created and last modified it.
public struct KeyValue: Sendable, Hashable {
    public var key: String
    public var value: Data
    /// The revision of the write that created the key (after its last delete).
    public var createRevision: Revision
    /// The revision of the write that last changed the key: the compare-and-swap token.
    public var modRevision: Revision

    public init(key: String, value: Data, createRevision: Revision, modRevision: Revision) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
    }
}

/// What a watch delivers, in revision order.
public enum WatchEvent: Sendable, Hashable {
    /// The key was created (it did not exist before this revision).
    case added(KeyValue)
    /// The key's value changed; `previous` when the backend knows it.
    case modified(KeyValue, previous: KeyValue?)
    /// The key was deleted at `revision`; `previous` is its last value when known.
    case deleted(key: String, revision: Revision, previous: KeyValue?)
    /// The history this watch needs is gone (compacted). No event was skipped silently: the
    /// watcher must list again and watch after the list's revision. The stream ends after this.
    case resyncRequired(compactedRevision: Revision)

    /// The revision this event happened at (the compacted revision for a resync).
    public var revision: Revision {
        switch self {
        case .added(let kv), .modified(let kv, _): return kv.modRevision
        case .deleted(_, let revision, _): return revision
        case .resyncRequired(let revision): return revision
        }
    }
}

/// Every error a datastore raises. Messages name the key, file or endpoint and what to do.
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `get`-style reads return nil instead; this is for update/delete of a missing key.
    case notFound(key: String)
    /// `create` of a key that exists.
    case alreadyExists(key: String)
    /// Compare-and-swap failed: the key is at `actualRevision` (nil: it no longer exists).
    case conflict(key: String, expectedRevision: Revision, actualRevision: Revision?)
    /// The store cannot be reached or opened (etcd down on every endpoint, file unopenable).
    case unavailable(store: String, reason: String)
    /// The store exists but its content is not a valid Tabby datastore (e.g. not SQLite).
    case corrupted(store: String, reason: String)
    /// The caller may not read or write the store (file mode, etcd auth).
    case permissionDenied(store: String, reason: String)
    /// Bad configuration: endpoint URLs, certificate files, store path.
    case invalidConfiguration(String)
    /// A bounded retry loop gave up; `lastError` says why the last attempt failed.
    case retriesExhausted(operation: String, attempts: Int, lastError: String)
    /// Anything else the backend reported.
    case backend(store: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let key): return "\(key) does not exist"
        case .alreadyExists(let key): return "\(key) already exists"
        case .conflict(let key, let expected, let actual):
            let now = actual.map { "it is at revision \($0)" } ?? "it has been deleted"
            return
                "\(key) was changed by someone else: expected revision \(expected), but \(now); read it again and retry"
        case .unavailable(let store, let reason): return "datastore \(store) is unavailable: \(reason)"
        case .corrupted(let store, let reason): return "datastore \(store) is corrupted: \(reason)"
        case .permissionDenied(let store, let reason): return "permission denied for datastore \(store): \(reason)"
        case .invalidConfiguration(let reason): return "invalid datastore configuration: \(reason)"
        case .retriesExhausted(let operation, let attempts, let last):
            return "\(operation) failed after \(attempts) attempts: \(last)"
        case .backend(let store, let reason): return "datastore \(store): \(reason)"
        }
    }
}

/// One write of a `KeyValueStore.commit`.
public enum StoreWrite: Sendable, Hashable {
    case create(key: String, value: Data)
    case update(key: String, value: Data, expectedRevision: Revision)
    case delete(key: String, expectedRevision: Revision?)

    public var key: String {
        switch self {
        case .create(let key, _), .update(let key, _, _), .delete(let key, _): return key
        }
    }

    /// Whether this write's condition holds when the key's current value is `current` (nil: the
    /// key does not exist): every store checks writes the same way.
    public func checkCondition(current: KeyValue?) throws(StoreError) {
        switch self {
        case .create(let key, _):
            if current != nil { throw .alreadyExists(key: key) }
        case .update(let key, _, let expected), .delete(let key, .some(let expected)):
            guard let current else { throw .notFound(key: key) }
            guard current.modRevision == expected else {
                throw .conflict(key: key, expectedRevision: expected, actualRevision: current.modRevision)
            }
        case .delete(let key, nil):
            if current == nil { throw .notFound(key: key) }
        }
    }

    /// A commit names each key once (etcd refuses a transaction that writes a key twice).
    public static func checkDistinct(_ writes: [StoreWrite], store: String) throws(StoreError) {
        var seen = Set<String>()
        for write in writes where !seen.insert(write.key).inserted {
            throw .backend(store: store, reason: "one commit writes \(write.key) twice")
        }
    }
}

/// The revisioned key/value API every Tabby component uses, shaped like Calico's libcalico-go
/// backend (and etcd v3). Implementations: `SQLiteStore` (embedded, one file, many processes)
/// and `EtcdStore` (etcd v3). All operations are atomic; writes are linearizable.
public protocol KeyValueStore: Sendable {
    /// A short name for messages: the SQLite path or the etcd endpoints.
    var name: String { get }

    /// The key's current value, or nil.
    func get(_ key: String) async throws(StoreError) -> KeyValue?

    /// Every key starting with `prefix`, sorted by key, and the store revision they were read at
    /// (watch after it to follow changes without a gap).
    func list(prefix: String) async throws(StoreError) -> (items: [KeyValue], revision: Revision)

    /// Creates the key; `.alreadyExists` if it exists.
    @discardableResult
    func create(_ key: String, value: Data) async throws(StoreError) -> KeyValue

    /// Replaces the value if the key is still at `expectedRevision` (its `modRevision`);
    /// `.conflict` otherwise, `.notFound` if the key does not exist.
    @discardableResult
    func update(_ key: String, value: Data, expectedRevision: Revision) async throws(StoreError) -> KeyValue

    /// Deletes the key, only if it is at `expectedRevision` when one is given; returns the
    /// deleted value. `.notFound` if it does not exist, `.conflict` on a revision mismatch.
    @discardableResult
    func delete(_ key: String, expectedRevision: Revision?) async throws(StoreError) -> KeyValue

    /// Applies every write or none of them, in one transaction: each write's condition (create:
    /// absent; update: at `expectedRevision`; delete: present, and at `expectedRevision` when
    /// given) must hold, or the first that fails is reported with the same error the single
    /// operation throws and nothing changes. Returns what each write stored (a delete: the value
    /// it removed). The writes take consecutive revisions (etcd: one revision for all). A key may
    /// appear once per commit.
    @discardableResult
    func commit(_ writes: [StoreWrite]) async throws(StoreError) -> [KeyValue]

    /// Changes to keys under `prefix` with a revision greater than `revision`, in revision
    /// order, until the task is cancelled. If that history was compacted the first event is
    /// `.resyncRequired`. Backend failures end the stream with a `StoreError`.
    func watch(prefix: String, after revision: Revision) -> AsyncThrowingStream<WatchEvent, any Error>

    /// The store's current revision.
    func currentRevision() async throws(StoreError) -> Revision

    /// Forgets history at and below `revision`; watches that need it get `.resyncRequired`.
    func compact(through revision: Revision) async throws(StoreError)

    /// Releases connections and files. Idempotent.
    func close() async
}

extension KeyValueStore {
    /// The single-key writes as one-write commits, for stores whose commit is the primitive.
    @discardableResult
    public func create(_ key: String, value: Data) async throws(StoreError) -> KeyValue {
        try await commit([.create(key: key, value: value)])[0]
    }

    @discardableResult
    public func update(_ key: String, value: Data, expectedRevision: Revision) async throws(StoreError) -> KeyValue {
        try await commit([.update(key: key, value: value, expectedRevision: expectedRevision)])[0]
    }

    @discardableResult
    public func delete(_ key: String, expectedRevision: Revision?) async throws(StoreError) -> KeyValue {
        try await commit([.delete(key: key, expectedRevision: expectedRevision)])[0]
    }
}
