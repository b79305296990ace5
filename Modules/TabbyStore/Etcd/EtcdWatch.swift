import AsyncHTTPClient
import Foundation
import NIOCore

/// `EtcdStore.watch`: one `/v3/watch` stream (newline-delimited JSON) per watch, reopened after the
/// last delivered revision when the connection drops.
///
/// Resume: `next` is one past the revision of the last event delivered (events of one revision come in
/// one message, so a revision is never split), and every reconnect asks etcd for `start_revision =
/// next` on the current endpoint (the next one, after a failure). Events below `next` are dropped as
/// a guard, so there are no duplicates and, since etcd replays from `start_revision`, no gaps. If that
/// revision is compacted, etcd cancels the watch with `compact_revision`: we emit `.resyncRequired`
/// and finish. Reconnects are bounded like requests: `maxAttempts` consecutive failures (reset when a
/// watch is established) end the stream with `.unavailable`.
enum EtcdWatch {
    /// How one connection of a watch ended.
    enum Outcome {
        /// The connection dropped or could not be made: reconnect (with backoff).
        case dropped(String)
        /// etcd rejected the auth token: get a new one and reconnect.
        case renewToken(String)
        /// Resync emitted, consumer gone or task cancelled: finish quietly.
        case finished
        /// A permanent error: finish the stream with it.
        case failed(StoreError)
    }

    static func start(
        transport: EtcdTransport, prefix: String, after revision: Revision
    ) -> AsyncThrowingStream<WatchEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<WatchEvent, any Error>.makeStream()
        let task = Task {
            await run(transport: transport, prefix: prefix, after: revision, continuation: continuation)
        }
        guard let id = transport.register(task) else {
            task.cancel()
            continuation.finish(
                throwing: StoreError.unavailable(store: transport.name, reason: "the etcd store has been closed"))
            return stream
        }
        // The consumer stopped iterating (or the stream finished): stop the task, which closes the
        // HTTP stream.
        continuation.onTermination = { _ in
            task.cancel()
            transport.unregister(id)
        }
        return stream
    }

    static func run(
        transport: EtcdTransport, prefix: String, after revision: Revision,
        continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation
    ) async {
        var next = revision + 1
        var failures: [String] = []
        var renewedToken = false
        while !Task.isCancelled {
            if !failures.isEmpty {
                guard failures.count < transport.configuration.maxAttempts else {
                    continuation.finish(
                        throwing: transport.unreachable(
                            operation: "watch \(prefix)", attempts: failures.count, failures: failures))
                    return
                }
                do {
                    try await Task.sleep(for: EtcdTransport.backoff(retry: failures.count))
                } catch {
                    break
                }
            }
            let endpoint = transport.currentEndpoint()
            let outcome = await connect(
                transport: transport, endpoint: endpoint.url, prefix: prefix, next: &next, failures: &failures,
                renewedToken: &renewedToken, continuation: continuation)
            switch outcome {
            case .finished:
                continuation.finish()
                return
            case .failed(let error):
                continuation.finish(throwing: error)
                return
            case .renewToken(let message):
                guard !renewedToken else {
                    continuation.finish(
                        throwing: transport.mapEtcdError(code: 16, message: message, operation: "watch"))
                    return
                }
                renewedToken = true
                transport.state.withLock { $0.token = nil }
            case .dropped(let reason):
                transport.endpointFailed(endpoint.index)
                failures.append("\(endpoint.url): \(reason)")
            }
        }
        continuation.finish()
    }

    /// One watch connection: open it at `next`, deliver events until it ends.
    static func connect(
        transport: EtcdTransport, endpoint: String, prefix: String, next: inout Revision, failures: inout [String],
        renewedToken: inout Bool, continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation
    ) async -> Outcome {
        let token: String?
        do {
            token = try await transport.authToken(endpoint: endpoint)
        } catch let error as StoreError {
            return .failed(error)
        } catch let failure as EtcdFailure {
            return outcome(of: failure, transport: transport)
        } catch {
            return .dropped("\(error)")
        }

        let range = EtcdBytes.prefixRange(prefix)
        let create = EtcdWatchRequest(
            createRequest: .init(key: range.key, rangeEnd: range.rangeEnd, startRevision: String(next), prevKv: true))
        var request = HTTPClientRequest(url: endpoint + "/v3/watch")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: token) }
        request.body = .bytes(ByteBuffer(data: EtcdJSON.encode(create)))

        let response: HTTPClientResponse
        do {
            // The timeout covers connecting and the response head; the body streams for as long as
            // the watch lives.
            response = try await transport.client.execute(
                request, timeout: EtcdTransport.timeAmount(transport.configuration.requestTimeout))
        } catch {
            return outcome(of: EtcdTransport.classify(error), transport: transport)
        }
        guard response.status == .ok else {
            let body = (try? await response.body.collect(upTo: 1 << 20)).map { Data(buffer: $0) } ?? Data()
            return outcome(of: EtcdTransport.etcdFailure(status: response.status, body: body), transport: transport)
        }

        var buffer = Data()
        do {
            for try await chunk in response.body {
                buffer.append(contentsOf: chunk.readableBytesView)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Data(buffer[buffer.startIndex..<newline])
                    buffer = Data(buffer[buffer.index(after: newline)...])
                    if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
                    guard let message = try? EtcdJSON.decode(EtcdWatchMessage.self, from: line) else {
                        return .failed(
                            .backend(
                                store: transport.name,
                                reason: "unexpected watch message from \(endpoint): "
                                    + String(decoding: line.prefix(300), as: UTF8.self)))
                    }
                    if let outcome = handle(
                        message, transport: transport, next: &next, failures: &failures, renewedToken: &renewedToken,
                        continuation: continuation)
                    {
                        return outcome
                    }
                }
            }
            return Task.isCancelled ? .finished : .dropped("etcd closed the watch stream")
        } catch {
            return outcome(of: EtcdTransport.classify(error), transport: transport)
        }
    }

    /// Delivers one stream message; an outcome when the connection is done.
    static func handle(
        _ message: EtcdWatchMessage, transport: EtcdTransport, next: inout Revision, failures: inout [String],
        renewedToken: inout Bool, continuation: AsyncThrowingStream<WatchEvent, any Error>.Continuation
    ) -> Outcome? {
        if let error = message.error {
            return outcome(
                of: .etcd(code: error.grpcCode, message: error.message ?? "watch failed"), transport: transport)
        }
        guard let result = message.result else { return nil }
        if result.canceled == true {
            if let compacted = result.compactRevision?.value, compacted > 0 {
                continuation.yield(.resyncRequired(compactedRevision: compacted))
                return .finished
            }
            let reason = result.cancelReason ?? "etcd cancelled the watch"
            return outcome(of: .etcd(code: nil, message: reason), transport: transport)
        }
        if result.created == true {
            // Established: the connection works, so consecutive failures start over.
            failures = []
            renewedToken = false
        }
        let floor = next
        for wire in result.events ?? [] {
            guard let event = event(wire), event.revision >= floor else { continue }
            if case .terminated = continuation.yield(event) { return .finished }
            next = max(next, event.revision + 1)
        }
        return nil
    }

    static func event(_ wire: EtcdWatchMessage.Event) -> WatchEvent? {
        guard let kv = wire.kv?.keyValue else { return nil }
        let previous = wire.prevKv?.keyValue
        if wire.type == "DELETE" { return .deleted(key: kv.key, revision: kv.modRevision, previous: previous) }
        return kv.createRevision == kv.modRevision ? .added(kv) : .modified(kv, previous: previous)
    }

    static func outcome(of failure: EtcdFailure, transport: EtcdTransport) -> Outcome {
        switch failure {
        case .cancelled: return .finished
        case .notSent(let reason), .maybeSent(let reason): return .dropped(reason)
        case .etcd(let code, let message):
            if EtcdTransport.isInvalidToken(message) { return .renewToken(message) }
            if code == 14 { return .dropped(message) }
            return .failed(transport.mapEtcdError(code: code, message: message, operation: "watch"))
        }
    }
}
