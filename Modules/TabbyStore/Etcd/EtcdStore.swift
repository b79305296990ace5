import Foundation

/// `KeyValueStore` on etcd v3, through etcd's JSON gateway (`/v3/kv/...`, `/v3/watch`) over HTTP/1.1.
///
/// Compare-and-swap writes are etcd transactions on `create_revision`/`mod_revision`; a failed compare
/// reads the key in the same transaction to report what it found. Requests go to the first endpoint
/// that works and stay there; failures move to the next endpoint, with bounded, backed-off retries (see
/// `EtcdRetryPolicy` for which failures are retried). CAS conflicts are never retried here: the
/// caller decides.
public final class EtcdStore: KeyValueStore {
    public let configuration: EtcdConfiguration
    let transport: EtcdTransport

    public var name: String { transport.name }

    /// Checks the configuration and loads the TLS files; etcd need not be up yet.
    public init(configuration: EtcdConfiguration) throws(StoreError) {
        let checked = try configuration.validated()
        self.configuration = checked
        self.transport = try EtcdTransport(configuration: checked)
    }

    // MARK: Reads

    public func get(_ key: String) async throws(StoreError) -> KeyValue? {
        let response = try await transport.call(
            "/v3/kv/range", EtcdRangeRequest(key: EtcdBytes.encode(key)), as: EtcdRangeResponse.self,
            retry: .idempotent, operation: "get \(key)")
        return response.kvs?.first?.keyValue
    }

    public func list(prefix: String) async throws(StoreError) -> (items: [KeyValue], revision: Revision) {
        try await list(prefix: prefix, pageSize: 1000)
    }

    /// Pages of `pageSize` keys, all read at the revision of the first page so the result is one
    /// consistent snapshot. If that revision is compacted between pages, start over (bounded).
    func list(prefix: String, pageSize: Int) async throws(StoreError) -> (items: [KeyValue], revision: Revision) {
        let range = EtcdBytes.prefixRange(prefix)
        var restarts = 0
        while true {
            var items: [KeyValue] = []
            var revision: Revision?
            var start = range.key
            do {
                while true {
                    let request = EtcdRangeRequest(
                        key: start, rangeEnd: range.rangeEnd, limit: String(pageSize),
                        revision: revision.map(String.init))
                    let response = try await transport.call(
                        "/v3/kv/range", request, as: EtcdRangeResponse.self, retry: .idempotent,
                        operation: "list \(prefix)")
                    let pageRevision = revision ?? response.header?.revision?.value ?? 0
                    revision = pageRevision
                    let page = response.kvs ?? []
                    items += page.map(\.keyValue)
                    guard response.more == true, let last = page.last?.key else {
                        return (items, pageRevision)
                    }
                    // The next page starts just after the last key: the key with a 0 byte appended.
                    start = (EtcdBytes.decode(last) + [0]).base64EncodedString()
                }
            } catch let error {
                guard case .backend(_, let reason) = error, reason.contains("required revision has been compacted"),
                    restarts < 3
                else { throw error }
                restarts += 1
            }
        }
    }

    public func currentRevision() async throws(StoreError) -> Revision {
        let request = EtcdRangeRequest(key: EtcdBytes.encode("\0"), countOnly: true)
        let response = try await transport.call(
            "/v3/kv/range", request, as: EtcdRangeResponse.self, retry: .idempotent, operation: "read the revision")
        guard let revision = response.header?.revision?.value else {
            throw .backend(store: name, reason: "etcd answered without a revision")
        }
        return revision
    }

    // MARK: Writes

    @discardableResult
    public func create(_ key: String, value: Data) async throws(StoreError) -> KeyValue {
        let encodedKey = EtcdBytes.encode(key)
        let txn = EtcdTxnRequest(
            compare: [EtcdCompare(key: encodedKey, target: "CREATE", createRevision: "0")],
            success: [EtcdRequestOp(requestPut: EtcdPutRequest(key: encodedKey, value: value.base64EncodedString()))],
            failure: [])
        let response = try await transport.call(
            "/v3/kv/txn", txn, as: EtcdTxnResponse.self, retry: .onlyIfNotSent, operation: "create \(key)")
        guard response.succeeded == true else { throw .alreadyExists(key: key) }
        let revision = try revision(of: response, key: key)
        return KeyValue(key: key, value: value, createRevision: revision, modRevision: revision)
    }

    @discardableResult
    public func update(_ key: String, value: Data, expectedRevision: Revision) async throws(StoreError) -> KeyValue {
        let encodedKey = EtcdBytes.encode(key)
        let put = EtcdPutRequest(key: encodedKey, value: value.base64EncodedString(), prevKv: true)
        let response = try await transport.call(
            "/v3/kv/txn", casTxn(encodedKey, expectedRevision, success: EtcdRequestOp(requestPut: put)),
            as: EtcdTxnResponse.self, retry: .onlyIfNotSent, operation: "update \(key)")
        guard response.succeeded == true else {
            throw casFailure(response, key: key, expectedRevision: expectedRevision)
        }
        guard let previous = response.responses?.first?.responsePut?.prevKv?.keyValue else {
            throw .backend(store: name, reason: "etcd updated \(key) but did not return its previous value")
        }
        let revision = try revision(of: response, key: key)
        return KeyValue(key: key, value: value, createRevision: previous.createRevision, modRevision: revision)
    }

    @discardableResult
    public func delete(_ key: String, expectedRevision: Revision?) async throws(StoreError) -> KeyValue {
        let encodedKey = EtcdBytes.encode(key)
        let deletion = EtcdDeleteRangeRequest(key: encodedKey, prevKv: true)
        guard let expectedRevision else {
            let response = try await transport.call(
                "/v3/kv/deleterange", deletion, as: EtcdDeleteRangeResponse.self, retry: .onlyIfNotSent,
                operation: "delete \(key)")
            guard let previous = response.prevKvs?.first?.keyValue else { throw .notFound(key: key) }
            return previous
        }
        let response = try await transport.call(
            "/v3/kv/txn", casTxn(encodedKey, expectedRevision, success: EtcdRequestOp(requestDeleteRange: deletion)),
            as: EtcdTxnResponse.self, retry: .onlyIfNotSent, operation: "delete \(key)")
        guard response.succeeded == true else {
            throw casFailure(response, key: key, expectedRevision: expectedRevision)
        }
        guard let previous = response.responses?.first?.responseDeleteRange?.prevKvs?.first?.keyValue else {
            throw .notFound(key: key)
        }
        return previous
    }

    /// One etcd transaction: a compare per write, the writes on success, and on failure a read
    /// of every key to name the write whose condition failed.
    @discardableResult
    public func commit(_ writes: [StoreWrite]) async throws(StoreError) -> [KeyValue] {
        try StoreWrite.checkDistinct(writes, store: name)
        guard !writes.isEmpty else { return [] }
        var compare: [EtcdCompare] = []
        var success: [EtcdRequestOp] = []
        var failure: [EtcdRequestOp] = []
        for write in writes {
            let encodedKey = EtcdBytes.encode(write.key)
            failure.append(EtcdRequestOp(requestRange: EtcdRangeRequest(key: encodedKey)))
            switch write {
            case .create(_, let value):
                compare.append(EtcdCompare(key: encodedKey, target: "CREATE", createRevision: "0"))
                success.append(
                    EtcdRequestOp(requestPut: EtcdPutRequest(key: encodedKey, value: value.base64EncodedString())))
            case .update(_, let value, let expected):
                compare.append(EtcdCompare(key: encodedKey, target: "CREATE", result: "GREATER", createRevision: "0"))
                compare.append(EtcdCompare(key: encodedKey, target: "MOD", modRevision: String(expected)))
                success.append(
                    EtcdRequestOp(
                        requestPut: EtcdPutRequest(key: encodedKey, value: value.base64EncodedString(), prevKv: true)))
            case .delete(_, let expected):
                compare.append(EtcdCompare(key: encodedKey, target: "CREATE", result: "GREATER", createRevision: "0"))
                if let expected {
                    compare.append(EtcdCompare(key: encodedKey, target: "MOD", modRevision: String(expected)))
                }
                success.append(
                    EtcdRequestOp(requestDeleteRange: EtcdDeleteRangeRequest(key: encodedKey, prevKv: true)))
            }
        }
        let keys = writes.map(\.key).joined(separator: ", ")
        let response = try await transport.call(
            "/v3/kv/txn", EtcdTxnRequest(compare: compare, success: success, failure: failure),
            as: EtcdTxnResponse.self, retry: .onlyIfNotSent, operation: "commit \(keys)")
        let answers = response.responses ?? []
        guard response.succeeded == true else {
            for (index, write) in writes.enumerated() {
                let current = index < answers.count ? answers[index].responseRange?.kvs?.first?.keyValue : nil
                try write.checkCondition(current: current)
            }
            throw .backend(store: name, reason: "etcd refused the commit of \(keys) although every condition holds")
        }
        let revision = try revision(of: response, key: keys)
        var results: [KeyValue] = []
        for (index, write) in writes.enumerated() {
            let answer = index < answers.count ? answers[index] : nil
            switch write {
            case .create(let key, let value):
                results.append(KeyValue(key: key, value: value, createRevision: revision, modRevision: revision))
            case .update(let key, let value, _):
                guard let previous = answer?.responsePut?.prevKv?.keyValue else {
                    throw .backend(store: name, reason: "etcd updated \(key) but did not return its previous value")
                }
                results.append(
                    KeyValue(key: key, value: value, createRevision: previous.createRevision, modRevision: revision))
            case .delete(let key, _):
                guard let previous = answer?.responseDeleteRange?.prevKvs?.first?.keyValue else {
                    throw .notFound(key: key)
                }
                results.append(previous)
            }
        }
        return results
    }

    /// If the key exists at mod_revision `expected`, `success`; otherwise read the key, to tell a
    /// conflict (and its actual revision) from a missing key. (The existence check matters for
    /// `expected` 0: a missing key's mod_revision is 0 too.)
    private func casTxn(_ encodedKey: String, _ expected: Revision, success: EtcdRequestOp) -> EtcdTxnRequest {
        EtcdTxnRequest(
            compare: [
                EtcdCompare(key: encodedKey, target: "CREATE", result: "GREATER", createRevision: "0"),
                EtcdCompare(key: encodedKey, target: "MOD", modRevision: String(expected)),
            ],
            success: [success],
            failure: [EtcdRequestOp(requestRange: EtcdRangeRequest(key: encodedKey))])
    }

    private func casFailure(_ response: EtcdTxnResponse, key: String, expectedRevision: Revision) -> StoreError {
        guard let actual = response.responses?.first?.responseRange?.kvs?.first?.modRevision?.value else {
            return .notFound(key: key)
        }
        return .conflict(key: key, expectedRevision: expectedRevision, actualRevision: actual)
    }

    private func revision(of response: EtcdTxnResponse, key: String) throws(StoreError) -> Revision {
        guard let revision = response.header?.revision?.value else {
            throw .backend(store: name, reason: "etcd answered the write of \(key) without a revision")
        }
        return revision
    }

    // MARK: Compaction, watch, close

    public func compact(through revision: Revision) async throws(StoreError) {
        do {
            _ = try await transport.call(
                "/v3/kv/compaction", EtcdCompactionRequest(revision: String(revision), physical: true),
                as: EtcdCompactionResponse.self, retry: .idempotent, operation: "compact through \(revision)")
        } catch {
            // Already compacted at or past `revision`: the history is gone, which is what was asked.
            guard case .backend(_, let reason) = error, reason.contains("required revision has been compacted") else {
                throw error
            }
        }
    }

    public func watch(prefix: String, after revision: Revision) -> AsyncThrowingStream<WatchEvent, any Error> {
        EtcdWatch.start(transport: transport, prefix: prefix, after: revision)
    }

    public func close() async {
        await transport.close()
    }
}
