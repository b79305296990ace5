import Foundation
import Testing

@testable import TabbyStore

extension EtcdTests {
    @Suite("EtcdStore: endpoints, TLS, auth, outages") struct Connection {
        @Test func failsOverToTheNextEndpointAndSticksToIt() async throws {
            let dead = "http://127.0.0.1:\(try deadPort())"
            try await withEtcd { server, _ in
                let store = try EtcdStore(configuration: server.configuration(endpoints: [dead, server.endpoint]))
                let kv = try await store.create("/f/k", value: Data(text: "v"))
                #expect(store.transport.currentEndpoint().url == server.endpoint)
                #expect(try await store.get("/f/k") == kv)
                let watch = WatchCollector(store.watch(prefix: "/f/", after: 0))
                defer { watch.cancel() }
                #expect(try await watch.wait(for: 1) == [.added(kv)])
                await store.close()
            }
        }

        @Test func tlsWithClientCertificates() async throws {
            try await withEtcd(["--tls"]) { server, store in
                #expect(server.endpoint.hasPrefix("https://127.0.0.1:"))
                let kv = try await store.create("/t/k", value: Data(text: "secret"))
                #expect(try await store.get("/t/k") == kv)
                let watch = WatchCollector(store.watch(prefix: "/t/", after: 0))
                defer { watch.cancel() }
                #expect(try await watch.wait(for: 1) == [.added(kv)])

                // Without the client certificate, or trusting another CA: unavailable, saying TLS.
                for configuration in [
                    EtcdConfiguration(
                        endpoints: [server.endpoint], caCertFile: server.env["ETCD_CA_CERT_FILE"], maxAttempts: 2),
                    EtcdConfiguration(endpoints: [server.endpoint], maxAttempts: 2),
                ] {
                    let other = try EtcdStore(configuration: configuration)
                    let error = await storeError { try await other.get("/t/k") }
                    await other.close()
                    guard case .unavailable(_, let reason) = error else {
                        Issue.record("expected .unavailable, got \(String(describing: error))")
                        continue
                    }
                    #expect(reason.contains("TLS"), "\(reason)")
                }
            }
        }

        @Test func userAndPasswordAuth() async throws {
            try await withEtcd(["--auth"]) { server, store in
                #expect(server.env["ETCD_USERNAME"] == "root")
                let kv = try await store.create("/u/k", value: Data(text: "v"))
                #expect(try await store.get("/u/k") == kv)
                let watch = WatchCollector(store.watch(prefix: "/u/", after: 0))
                defer { watch.cancel() }
                #expect(try await watch.wait(for: 1) == [.added(kv)])

                var wrong = server.configuration()
                wrong.password = "wrong"
                let wrongStore = try EtcdStore(configuration: wrong)
                let wrongError = await storeError { try await wrongStore.get("/u/k") }
                await wrongStore.close()
                guard case .permissionDenied = wrongError else {
                    Issue.record("wrong password: expected .permissionDenied, got \(String(describing: wrongError))")
                    return
                }
                let anonymous = try EtcdStore(configuration: server.configuration(auth: false))
                let anonymousError = await storeError { try await anonymous.get("/u/k") }
                let anonymousWatch = WatchCollector(anonymous.watch(prefix: "/u/", after: 0))
                let watchError = try await anonymousWatch.end()
                await anonymous.close()
                guard case .permissionDenied = anonymousError, case .permissionDenied? = watchError as? StoreError
                else {
                    Issue.record(
                        "no credentials: got \(String(describing: anonymousError)), \(String(describing: watchError))")
                    return
                }

                // etcd's simple tokens die with the process: after a restart the store authenticates again.
                server.stop(keep: true)
                try server.restart()
                #expect(try await store.get("/u/k") == kv)
            }
        }

        @Test func tlsAndAuthTogether() async throws {
            try await withEtcd(["--tls", "--auth"]) { _, store in
                let kv = try await store.create("/ta/k", value: Data(text: "v"))
                #expect(try await store.get("/ta/k") == kv)
            }
        }

        @Test func aStoppedEtcdIsAQuickTypedErrorAndLosesNothing() async throws {
            try await withEtcd { server, store in
                var committed: [KeyValue] = []
                for index in 1...5 {
                    committed.append(try await store.create("/s/\(index)", value: Data(text: "\(index)")))
                }
                let updated = try await store.update(
                    "/s/1", value: Data(text: "new"), expectedRevision: committed[0].modRevision)
                committed[0] = updated
                let watch = WatchCollector(store.watch(prefix: "/s/", after: updated.modRevision))

                server.stop(keep: true)
                let clock = ContinuousClock()
                for operation in ["get", "create", "list"] {
                    let started = clock.now
                    let error: StoreError?
                    switch operation {
                    case "get": error = await storeError { try await store.get("/s/1") }
                    case "create": error = await storeError { try await store.create("/s/new", value: Data()) }
                    default: error = await storeError { try await store.list(prefix: "/s/") }
                    }
                    let elapsed = clock.now - started
                    #expect(elapsed < .seconds(3), "\(operation) took \(elapsed)")
                    guard case .unavailable(let name, let reason) = error else {
                        Issue.record("\(operation): expected .unavailable, got \(String(describing: error))")
                        continue
                    }
                    #expect(name == server.endpoint)
                    #expect(reason.contains(server.endpoint) && reason.contains("etcd is running"), "\(reason)")
                }
                // The watch gives up with the same typed error.
                #expect(try await watch.end() is StoreError)

                try server.restart()
                let listed = try await store.list(prefix: "/s/")
                #expect(listed.items == committed)
                #expect(try await store.get("/s/new") == nil)
            }
        }
    }
}

/// A loopback port with no listener (bound, then released).
func deadPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw EtcdTestError("could not pick a loopback port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
