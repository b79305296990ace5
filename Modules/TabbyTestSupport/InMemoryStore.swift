import Foundation
import Synchronization
import TabbyStore

/// A `KeyValueStore` in memory, for fast unit tests. It passes the same conformance suite as the
/// real backends (revisions, CAS, ordered watch, compaction), but lives in one process only.
public final class InMemoryStore: KeyValueStore {
    private struct State {
        var revision: Revision = 0
        var compactedRevision: Revision = 0
        var items: [String: KeyValue] = [:]
        var log: [WatchEvent] = []
        var watchers: [UUID: (prefix: String, continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation)] =
            [:]
    }

    /// Guards every field of the store's state; held only for short, non-suspending sections.
    private let state = Mutex(State())

    public let name = "memory"

    public init() {}

    public func get(_ key: String) async throws(StoreError) -> KeyValue? {
        state.withLock { $0.items[key] }
    }

    public func list(prefix: String) async throws(StoreError) -> (items: [KeyValue], revision: Revision) {
        state.withLock { state in
            (state.items.values.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }, state.revision)
        }
    }

    @discardableResult
    public func commit(_ writes: [StoreWrite]) async throws(StoreError) -> [KeyValue] {
        try StoreWrite.checkDistinct(writes, store: name)
        return try state.withLock { (state) throws(StoreError) -> [KeyValue] in
            // Every condition first, so that a failing one changes nothing.
            for write in writes { try write.checkCondition(current: state.items[write.key]) }
            var results: [KeyValue] = []
            for write in writes {
                let old = state.items[write.key]
                state.revision += 1
                switch write {
                case .create(let key, let value):
                    let kv = KeyValue(
                        key: key, value: value, createRevision: state.revision, modRevision: state.revision)
                    state.items[key] = kv
                    Self.publish(.added(kv), key: key, in: &state)
                    results.append(kv)
                case .update(let key, let value, _):
                    let kv = KeyValue(
                        key: key, value: value, createRevision: old!.createRevision, modRevision: state.revision)
                    state.items[key] = kv
                    Self.publish(.modified(kv, previous: old), key: key, in: &state)
                    results.append(kv)
                case .delete(let key, _):
                    state.items[key] = nil
                    Self.publish(.deleted(key: key, revision: state.revision, previous: old), key: key, in: &state)
                    results.append(old!)
                }
            }
            return results
        }
    }

    private static func publish(_ event: WatchEvent, key: String, in state: inout State) {
        state.log.append(event)
        for watcher in state.watchers.values where key.hasPrefix(watcher.prefix) {
            watcher.continuation.yield(event)
        }
    }

    public func watch(prefix: String, after revision: Revision) -> AsyncThrowingStream<WatchEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchEvent, any Error>.makeStream()
        let id = UUID()
        state.withLock { state in
            if revision < state.compactedRevision {
                continuation.yield(.resyncRequired(compactedRevision: state.compactedRevision))
                continuation.finish()
                return
            }
            for event in state.log where event.revision > revision {
                if Self.key(of: event).hasPrefix(prefix) { continuation.yield(event) }
            }
            state.watchers[id] = (prefix, continuation)
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }

    private static func key(of event: WatchEvent) -> String {
        switch event {
        case .added(let kv), .modified(let kv, _): return kv.key
        case .deleted(let key, _, _): return key
        case .resyncRequired: return ""
        }
    }

    public func currentRevision() async throws(StoreError) -> Revision {
        state.withLock { $0.revision }
    }

    public func compact(through revision: Revision) async throws(StoreError) {
        state.withLock { state in
            state.compactedRevision = max(state.compactedRevision, min(revision, state.revision))
            let floor = state.compactedRevision
            state.log.removeAll { $0.revision <= floor }
        }
    }

    public func close() async {
        let watchers = state.withLock { state in
            defer { state.watchers.removeAll() }
            return state.watchers.values.map(\.continuation)
        }
        for continuation in watchers { continuation.finish() }
    }
}
