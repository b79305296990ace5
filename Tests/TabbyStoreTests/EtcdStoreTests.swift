import Foundation
import Testing

@testable import TabbyStore

extension EtcdTests {
    @Suite("EtcdStore: reads, compare-and-swap writes, configuration") struct Store {
        @Test func createGetUpdateDelete() async throws {
            try await withEtcd { _, store in
                let before = try await store.currentRevision()
                let created = try await store.create("/tabby/k", value: Data(text: "one"))
                #expect(created.key == "/tabby/k" && created.value == Data(text: "one"))
                #expect(created.createRevision == created.modRevision && created.modRevision > before)
                #expect(try await store.get("/tabby/k") == created)
                #expect(try await store.currentRevision() == created.modRevision)

                let updated = try await store.update("/tabby/k", value: Data(), expectedRevision: created.modRevision)
                #expect(updated.value == Data() && updated.createRevision == created.createRevision)
                #expect(updated.modRevision > created.modRevision)
                #expect(try await store.get("/tabby/k") == updated)

                let deleted = try await store.delete("/tabby/k", expectedRevision: updated.modRevision)
                #expect(deleted == updated)
                #expect(try await store.get("/tabby/k") == nil)

                try await store.create("/tabby/k2", value: Data(text: "x"))
                #expect(try await store.delete("/tabby/k2", expectedRevision: nil).value == Data(text: "x"))
                #expect(store.name == store.configuration.endpoints[0])
            }
        }

        @Test func createTwiceIsAlreadyExists() async throws {
            try await withEtcd { _, store in
                try await store.create("/k", value: Data(text: "1"))
                #expect(
                    await storeError { try await store.create("/k", value: Data(text: "2")) }
                        == .alreadyExists(key: "/k"))
                #expect(try await store.get("/k")?.value == Data(text: "1"))
            }
        }

        @Test func staleRevisionsConflictWithTheActualRevision() async throws {
            try await withEtcd { _, store in
                let first = try await store.create("/k", value: Data(text: "1"))
                let second = try await store.update("/k", value: Data(text: "2"), expectedRevision: first.modRevision)
                #expect(
                    await storeError {
                        try await store.update("/k", value: Data(text: "3"), expectedRevision: first.modRevision)
                    }
                        == .conflict(key: "/k", expectedRevision: first.modRevision, actualRevision: second.modRevision)
                )
                #expect(
                    await storeError { try await store.delete("/k", expectedRevision: first.modRevision) }
                        == .conflict(key: "/k", expectedRevision: first.modRevision, actualRevision: second.modRevision)
                )
                #expect(try await store.get("/k") == second)
            }
        }

        @Test func missingKeysAreNotFound() async throws {
            try await withEtcd { _, store in
                let missing = try await store.get("/none")
                #expect(missing == nil)
                #expect(
                    await storeError { try await store.update("/none", value: Data(), expectedRevision: 5) }
                        == .notFound(key: "/none"))
                // A missing key's mod_revision is 0: expecting 0 must not create it.
                #expect(
                    await storeError { try await store.update("/none", value: Data(), expectedRevision: 0) }
                        == .notFound(key: "/none"))
                #expect(
                    await storeError { try await store.delete("/none", expectedRevision: nil) }
                        == .notFound(key: "/none"))
                #expect(
                    await storeError { try await store.delete("/none", expectedRevision: 3) } == .notFound(key: "/none")
                )
                #expect(try await store.get("/none") == nil)
            }
        }

        @Test func listIsSortedAndStaysInsideThePrefix() async throws {
            try await withEtcd { _, store in
                for key in ["/a/2", "/ab", "/a/1", "/a", "/b/1", "/a/3", "/a/\u{00e9}"] {
                    try await store.create(key, value: Data(text: key))
                }
                let now = try await store.currentRevision()
                let listed = try await store.list(prefix: "/a/")
                #expect(listed.items.map(\.key) == ["/a/1", "/a/2", "/a/3", "/a/\u{00e9}"])
                #expect(listed.items.allSatisfy { $0.value == Data(text: $0.key) })
                #expect(listed.revision == now)
                // Pages of two keys give the same snapshot.
                let paged = try await store.list(prefix: "/a/", pageSize: 2)
                #expect(paged.items == listed.items && paged.revision == now)
                #expect(try await store.list(prefix: "").items.count == 7)
                #expect(try await store.list(prefix: "/zz").items.isEmpty)
            }
        }

        @Test func compactionIsIdempotent() async throws {
            try await withEtcd { _, store in
                let kv = try await store.create("/k", value: Data(text: "1"))
                try await store.update("/k", value: Data(text: "2"), expectedRevision: kv.modRevision)
                let now = try await store.currentRevision()
                try await store.compact(through: now)
                try await store.compact(through: kv.modRevision)
                #expect(try await store.get("/k")?.value == Data(text: "2"))
            }
        }

        @Test func endpointsParseLikeCalico() throws {
            #expect(
                try EtcdConfiguration.parseEndpoints("http://127.0.0.1:2379, https://etcd.example:2379/")
                    == ["http://127.0.0.1:2379", "https://etcd.example:2379"])
            for bad in ["", "http://a:1,,http://b:2", "127.0.0.1:2379", "ftp://x:1", "http://x:1/path", "http://:1"] {
                #expect(throws: StoreError.self) { try EtcdConfiguration.parseEndpoints(bad) }
            }
            do {
                _ = try EtcdConfiguration.parseEndpoints("http://a:1,bogus")
                Issue.record("accepted bogus")
            } catch {
                #expect(error.description.contains("bogus"))
            }
        }

        @Test func badConfigurationIsRejectedUpFront() {
            func rejection(_ configuration: EtcdConfiguration) -> String? {
                do {
                    _ = try EtcdStore(configuration: configuration)
                    return nil
                } catch {
                    guard case .invalidConfiguration(let reason) = error else { return "wrong error \(error)" }
                    return reason
                }
            }
            #expect(rejection(EtcdConfiguration(endpoints: [])) != nil)
            #expect(rejection(EtcdConfiguration(endpoints: ["http://127.0.0.1:2379"], maxAttempts: 0)) != nil)
            #expect(rejection(EtcdConfiguration(endpoints: ["http://127.0.0.1:2379"], username: "root")) != nil)
            let missing = "/nonexistent/tabby-ca.pem"
            #expect(
                rejection(EtcdConfiguration(endpoints: ["https://127.0.0.1:2379"], caCertFile: missing))?.contains(
                    missing)
                    == true)
            #expect(
                rejection(
                    EtcdConfiguration(endpoints: ["https://127.0.0.1:2379"], certFile: "/x.pem", keyFile: "/y.pem"))?
                    .contains("/x.pem") == true)
        }
    }
}
