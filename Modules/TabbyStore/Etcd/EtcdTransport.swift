import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Whether an operation may be sent again after a failure that leaves its fate unknown.
enum EtcdRetryPolicy: Sendable {
    /// Reads, compaction and authentication: repeating them changes nothing, so any transport failure
    /// (refused, reset, timed out) is retried on the next endpoint.
    case idempotent
    /// Writes: retried only when the request surely never reached etcd (connection refused, connect
    /// timeout, TLS handshake failure, or etcd rejected the auth token before looking at it). A reset
    /// connection or a timeout after sending may have committed the write, and retrying a compare-and-
    /// swap that did commit would report a false conflict, so the caller gets `.unavailable` saying so.
    case onlyIfNotSent
}

/// One attempt's failure, classified for the retry loop.
enum EtcdFailure: Error {
    /// The request did not reach etcd (it could not connect, or the TLS handshake failed).
    case notSent(String)
    /// The connection failed after the request may have been sent.
    case maybeSent(String)
    /// etcd answered with an error.
    case etcd(code: Int?, message: String)
    /// The caller's task was cancelled.
    case cancelled
}

/// The HTTP side of `EtcdStore`: one `HTTPClient` for every endpoint, the sticky endpoint choice,
/// the auth token, and the bounded retry loop. Shared with watch tasks.
final class EtcdTransport: Sendable {
    struct State {
        /// Index in `endpoints` of the endpoint requests go to; it moves on when that one fails.
        var current = 0
        /// etcd's auth token, when `username` is set and we have authenticated.
        var token: String?
        var closed = false
        /// Running watch tasks, cancelled by `close()`.
        var watches: [UInt64: Task<Void, Never>] = [:]
        var nextWatchID: UInt64 = 0
    }

    let configuration: EtcdConfiguration
    let name: String
    let client: HTTPClient
    /// The `state` lock: guards the current endpoint, the auth token, the closed flag and the watch
    /// tasks. Held only for plain reads and writes, never across an `await`.
    let state = Mutex(State())

    init(configuration: EtcdConfiguration) throws(StoreError) {
        self.configuration = configuration
        self.name = configuration.endpoints.joined(separator: ",")
        var http = HTTPClient.Configuration(
            tlsConfiguration: try Self.tlsConfiguration(configuration), redirectConfiguration: .disallow,
            // No read timeout: a watch may stay quiet for hours. Unary requests have a deadline instead.
            // Connecting gets half the request timeout, so a silent endpoint fails as "not sent".
            timeout: .init(connect: Self.timeAmount(configuration.requestTimeout / 2), read: nil))
        http.httpVersion = .http1Only
        // Fail fast on a dead endpoint (we fail over ourselves) instead of AsyncHTTPClient retrying the
        // connection until the deadline.
        http.connectionPool.retryConnectionEstablishment = false
        // Each watch holds one HTTP/1.1 connection for its lifetime.
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        self.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http)
    }

    deinit {
        // An unclosed store: release the client without waiting (HTTPClient insists on a shutdown).
        if !state.withLock({ $0.closed }) {
            client.shutdown { _ in }
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// The TLS settings, with every file loaded now so a bad path fails at startup, not at first use.
    static func tlsConfiguration(_ configuration: EtcdConfiguration) throws(StoreError) -> TLSConfiguration? {
        let usesTLS = configuration.endpoints.contains { $0.lowercased().hasPrefix("https:") }
        guard usesTLS || configuration.caCertFile != nil || configuration.certFile != nil else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caCertFile = configuration.caCertFile {
            try checkReadable(caCertFile, what: "CA certificate file (caCertFile)")
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caCertFile))
            } catch {
                throw .invalidConfiguration("etcd CA certificate file \(caCertFile) is not PEM certificates: \(error)")
            }
        }
        if let certFile = configuration.certFile, let keyFile = configuration.keyFile {
            try checkReadable(certFile, what: "client certificate file (certFile)")
            try checkReadable(keyFile, what: "client key file (keyFile)")
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) }
            } catch {
                throw .invalidConfiguration(
                    "etcd client certificate file \(certFile) is not a PEM certificate: \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw .invalidConfiguration("etcd client key file \(keyFile) is not a PEM private key: \(error)")
            }
        }
        return tls
    }

    private static func checkReadable(_ path: String, what: String) throws(StoreError) {
        guard FileManager.default.isReadableFile(atPath: path) else {
            let problem = FileManager.default.fileExists(atPath: path) ? "is not readable" : "does not exist"
            throw .invalidConfiguration("etcd \(what) \(path) \(problem)")
        }
    }

    // MARK: Endpoints and backoff

    func currentEndpoint() -> (index: Int, url: String) {
        let index = state.withLock { $0.current }
        return (index, configuration.endpoints[index])
    }

    /// Moves off a failed endpoint, unless another request already did.
    func endpointFailed(_ index: Int) {
        state.withLock { state in
            if state.current == index { state.current = (index + 1) % configuration.endpoints.count }
        }
    }

    /// Exponential backoff before retry number `retry` (1, 2, ...): 50 ms doubling, at most 1 s.
    static func backoff(retry: Int) -> Duration {
        min(.milliseconds(50 << min(retry - 1, 5)), .seconds(1))
    }

    func checkOpen() throws(StoreError) {
        if state.withLock({ $0.closed }) { throw .unavailable(store: name, reason: "the etcd store has been closed") }
    }

    // MARK: Requests

    /// POSTs `body` to `path` (e.g. "/v3/kv/range") with retries and failover, authenticating when
    /// needed; decodes a 200 answer. `operation` names the call in messages.
    func call<Response: Decodable>(
        _ path: String, _ body: some Encodable, as: Response.Type, retry: EtcdRetryPolicy, operation: String
    ) async throws(StoreError) -> Response {
        try checkOpen()
        let payload = EtcdJSON.encode(body)
        var failures: [String] = []
        var attempt = 0
        var renewedToken = false
        while true {
            attempt += 1
            let endpoint = currentEndpoint()
            do {
                let token: String?
                do {
                    token = try await authToken(endpoint: endpoint.url)
                } catch EtcdFailure.maybeSent(let reason) {
                    // Only the authentication may have reached etcd, not this request.
                    throw EtcdFailure.notSent("authenticating: \(reason)")
                }
                let (status, data) = try await post(endpoint.url, path, payload, token: token)
                if status == .ok {
                    do {
                        return try EtcdJSON.decode(Response.self, from: data)
                    } catch {
                        throw StoreError.backend(
                            store: name, reason: "unexpected answer from \(endpoint.url)\(path): \(error)")
                    }
                }
                throw Self.etcdFailure(status: status, body: data)
            } catch let error as StoreError {
                throw error
            } catch let failure as EtcdFailure {
                switch failure {
                case .cancelled:
                    throw .unavailable(store: name, reason: "\(operation) was cancelled")
                case .etcd(_, let message) where Self.isInvalidToken(message) && !renewedToken:
                    // etcd checks the token before doing anything: renew it and send again, once.
                    renewedToken = true
                    state.withLock { $0.token = nil }
                    attempt -= 1
                    continue
                case .etcd(14, let message) where retry == .idempotent:
                    // Unavailable (no leader, the gateway lost its own connection): try elsewhere.
                    endpointFailed(endpoint.index)
                    failures.append("\(endpoint.url): \(message)")
                case .etcd(let code, let message):
                    throw mapEtcdError(code: code, message: message, operation: operation)
                case .maybeSent(let reason) where retry == .onlyIfNotSent:
                    endpointFailed(endpoint.index)
                    throw .unavailable(
                        store: name,
                        reason: "\(operation) on \(endpoint.url) failed: \(reason); it may or may not have been "
                            + "applied, so it was not retried; read the key to find out")
                case .notSent(let reason), .maybeSent(let reason):
                    endpointFailed(endpoint.index)
                    failures.append("\(endpoint.url): \(reason)")
                }
            } catch {
                throw .backend(store: name, reason: "\(operation) failed: \(error)")
            }
            guard attempt < configuration.maxAttempts else {
                throw unreachable(operation: operation, attempts: attempt, failures: failures)
            }
            do {
                try await Task.sleep(for: Self.backoff(retry: attempt))
            } catch {
                throw .unavailable(store: name, reason: "\(operation) was cancelled")
            }
        }
    }

    /// The error once every attempt failed to reach etcd.
    func unreachable(operation: String, attempts: Int, failures: [String]) -> StoreError {
        var seen = Set<String>()
        let distinct = failures.filter { seen.insert($0).inserted }
        let tls = distinct.contains { $0.contains("TLS") }
        let advice =
            tls
            ? "check the certificate files and that the endpoints serve TLS for these names"
            : "check that etcd is running and reachable at \(name)"
        return .unavailable(
            store: name,
            reason: "\(operation) failed after \(attempts) attempts on every endpoint "
                + "(\(distinct.joined(separator: "; "))); \(advice)")
    }

    /// One POST with the request deadline. Throws `EtcdFailure` (or `StoreError` from `authToken`).
    func post(
        _ endpoint: String, _ path: String, _ payload: Data, token: String?
    ) async throws(EtcdFailure) -> (HTTPResponseStatus, Data) {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: token) }
        request.body = .bytes(ByteBuffer(data: payload))
        do {
            let response = try await client.execute(request, timeout: Self.timeAmount(configuration.requestTimeout))
            let body = try await response.body.collect(upTo: 256 << 20)
            return (response.status, Data(buffer: body))
        } catch {
            throw Self.classify(error)
        }
    }

    /// Sorts an AsyncHTTPClient/NIO error into "did not reach etcd" and "may have reached it".
    static func classify(_ error: any Error) -> EtcdFailure {
        switch error {
        case is CancellationError:
            return .cancelled
        case let error as HTTPClientError:
            switch error {
            case .cancelled: return .cancelled
            case .connectTimeout, .socksHandshakeTimeout, .tlsHandshakeTimeout, .alreadyShutdown:
                return .notSent("\(error)")
            case .deadlineExceeded, .readTimeout: return .maybeSent("timed out")
            case .remoteConnectionClosed: return .maybeSent("connection closed by etcd")
            default: return .maybeSent("\(error)")
            }
        case let error as NIOConnectionError:
            let reasons = error.connectionErrors.map { describe($0.error) }
            return .notSent(
                reasons.isEmpty ? "could not connect: \(error)" : Set(reasons).sorted().joined(separator: ", "))
        case let error as IOError where error.errnoCode == ECONNREFUSED:
            return .notSent("connection refused")
        case ChannelError.connectTimeout:
            return .notSent("connect timed out")
        // The server handles no HTTP request on a connection whose TLS handshake failed.
        case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError:
            return .notSent("TLS: \(error)")
        default:
            return .maybeSent(describe(error))
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED { return "connection refused" }
        if case ChannelError.connectTimeout = error { return "connect timed out" }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError { return "TLS: \(error)" }
        return "\(error)"
    }

    static func etcdFailure(status: HTTPResponseStatus, body: Data) -> EtcdFailure {
        if let decoded = try? EtcdJSON.decode(EtcdErrorBody.self, from: body),
            let message = decoded.message ?? decoded.error
        {
            return .etcd(code: decoded.code, message: message)
        }
        let text = String(decoding: body.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .etcd(code: nil, message: "HTTP \(status.code) \(text.isEmpty ? status.reasonPhrase : text)")
    }

    static func isInvalidToken(_ message: String) -> Bool {
        message.contains("invalid auth token") || message.contains("revision of auth store is old")
    }

    /// A `StoreError` for an error etcd answered.
    func mapEtcdError(code: Int?, message: String, operation: String) -> StoreError {
        if message.contains("user name is empty") {
            return .permissionDenied(
                store: name, reason: "etcd requires authentication; set the etcd username and password (\(message))")
        }
        if message.contains("authentication failed") || message.contains("permission denied")
            || message.contains("CommonName of client") || Self.isInvalidToken(message) || code == 7 || code == 16
        {
            return .permissionDenied(store: name, reason: "\(operation): \(message)")
        }
        return .backend(store: name, reason: "\(operation): \(message)")
    }

    // MARK: Auth

    /// The token to send, authenticating first when credentials are set and there is none. Throws
    /// `StoreError` when etcd refuses, `EtcdFailure` when it cannot be reached.
    func authToken(endpoint: String) async throws -> String? {
        guard let username = configuration.username, let password = configuration.password else { return nil }
        if let token = state.withLock({ $0.token }) { return token }
        let payload = EtcdJSON.encode(EtcdAuthenticateRequest(name: username, password: password))
        let (status, data) = try await post(endpoint, "/v3/auth/authenticate", payload, token: nil)
        guard status == .ok else {
            guard case .etcd(let code, let message) = Self.etcdFailure(status: status, body: data) else {
                throw StoreError.backend(store: name, reason: "authentication failed")
            }
            if code == 14 { throw EtcdFailure.etcd(code: code, message: message) }
            throw mapEtcdError(code: code, message: message, operation: "authenticating as \(username)")
        }
        guard let token = (try? EtcdJSON.decode(EtcdAuthenticateResponse.self, from: data))?.token else {
            throw StoreError.permissionDenied(
                store: name, reason: "etcd at \(endpoint) returned no auth token for \(username); is auth enabled?")
        }
        state.withLock { $0.token = token }
        return token
    }

    // MARK: Lifecycle

    func register(_ task: Task<Void, Never>) -> UInt64? {
        state.withLock { state in
            guard !state.closed else { return nil }
            state.nextWatchID += 1
            state.watches[state.nextWatchID] = task
            return state.nextWatchID
        }
    }

    func unregister(_ id: UInt64) {
        _ = state.withLock { $0.watches.removeValue(forKey: id) }
    }

    func close() async {
        let watches: [Task<Void, Never>]? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            defer { state.watches = [:] }
            return Array(state.watches.values)
        }
        guard let watches else { return }
        for watch in watches { watch.cancel() }
        try? await client.shutdown()
    }
}
