import Foundation
import TabbyCore
import TabbyStore
import TabbyTestSupport
import Testing

@Suite("Typed resource client")
struct ResourceClientTests {
    static func policy(_ name: String, namespace: String = "prod", selector: String = "app == 'db'") -> AnyResource {
        var spec = NetworkPolicySpec()
        spec.selector = selector
        spec.ingress = [Rule(action: .allow, protocol: .tcp)]
        return AnyResource(NetworkPolicy(metadata: ObjectMeta(name: name, namespace: namespace), spec: spec))
    }

    @Test func createFillsInMetadataAndDefaults() async throws {
        let client = ResourceClient(store: InMemoryStore())
        let created = try await client.create(Self.policy("allow-db"))
        #expect(created.metadata.resourceVersion == "1")
        #expect(created.metadata.uid?.count == 36)
        #expect(created.metadata.creationTimestamp != nil)
        let stored = try #require(try await client.get(NetworkPolicy.self, name: "allow-db", namespace: "prod"))
        #expect(AnyResource(stored) == created)
        #expect(stored.spec.tier == "default")
        #expect(stored.spec.types == [.ingress])
        #expect(
            ResourceClient.key(for: .networkPolicy, namespace: "prod", name: "allow-db")
                == "/tabby/v3/networkpolicies/prod/allow-db")
        #expect(ResourceClient.key(for: .ipPool, namespace: nil, name: "p") == "/tabby/v3/ippools/p")
    }

    @Test func invalidResourcesAreNotWritten() async throws {
        let store = InMemoryStore()
        let client = ResourceClient(store: store)
        await #expect {
            try await client.create(Self.policy("bad", selector: "app == db"))
        } throws: { error in
            "\(error)".hasPrefix("NetworkPolicy prod/bad is invalid: spec.selector: invalid selector")
        }
        #expect(try await store.currentRevision() == 0)
    }

    @Test func createTwiceNamesTheResource() async throws {
        let client = ResourceClient(store: InMemoryStore())
        try await client.create(Self.policy("p"))
        await #expect {
            try await client.create(Self.policy("p"))
        } throws: { error in
            "\(error)" == "NetworkPolicy prod/p already exists"
        }
    }

    @Test func replaceHonoursResourceVersion() async throws {
        let client = ResourceClient(store: InMemoryStore())
        let created = try await client.create(Self.policy("p"))
        var changed = Self.policy("p", selector: "app == 'web'")
        changed.base.metadata.resourceVersion = created.metadata.resourceVersion
        let replaced = try await client.replace(changed)
        #expect(replaced.metadata.uid == created.metadata.uid)
        #expect(replaced.metadata.creationTimestamp == created.metadata.creationTimestamp)
        #expect(replaced.as(NetworkPolicy.self)?.spec.selector == "app == 'web'")
        // The old version is stale now.
        await #expect {
            try await client.replace(changed)
        } throws: { error in
            "\(error)".contains(
                "expected resourceVersion \(created.metadata.resourceVersion!), but it is at resourceVersion \(replaced.metadata.resourceVersion!)"
            )
        }
        // Without a version, replace overwrites.
        try await client.replace(Self.policy("p", selector: "all()"))
        #expect(try await client.get(NetworkPolicy.self, name: "p", namespace: "prod")?.spec.selector == "all()")
        await #expect {
            try await client.replace(Self.policy("absent"))
        } throws: { error in
            "\(error)" == "NetworkPolicy prod/absent does not exist"
        }
    }

    @Test func applyCreatesThenConfigures() async throws {
        let client = ResourceClient(store: InMemoryStore())
        #expect(try await client.apply(Self.policy("p")).created)
        let second = try await client.apply(Self.policy("p", selector: "all()"))
        #expect(!second.created)
        #expect(second.resource.as(NetworkPolicy.self)?.spec.selector == "all()")
    }

    @Test func listIsScopedAndSorted() async throws {
        let client = ResourceClient(store: InMemoryStore())
        for (name, namespace) in [("b", "prod"), ("a", "prod"), ("a", "dev")] {
            try await client.create(Self.policy(name, namespace: namespace))
        }
        try await client.create(
            AnyResource(IPPool(metadata: ObjectMeta(name: "pool"), spec: IPPoolSpec(cidr: "10.0.0.0/16"))))
        let prod = try await client.list(.networkPolicy, namespace: "prod")
        #expect(prod.items.map(\.description) == ["NetworkPolicy prod/a", "NetworkPolicy prod/b"])
        #expect(prod.revision == 4)
        #expect(try await client.list(.networkPolicy).items.count == 3)
        #expect(try await client.list(IPPool.self).map(\.spec.blockSize) == [26])
    }

    @Test func deleteReturnsWhatWasDeleted() async throws {
        let client = ResourceClient(store: InMemoryStore())
        try await client.create(Self.policy("p"))
        let deleted = try await client.delete(.networkPolicy, name: "p", namespace: "prod")
        #expect(deleted.description == "NetworkPolicy prod/p")
        await #expect {
            try await client.delete(.networkPolicy, name: "p", namespace: "prod")
        } throws: { error in
            "\(error)" == "NetworkPolicy prod/p does not exist"
        }
    }

    @Test func watchReportsResourceChanges() async throws {
        let client = ResourceClient(store: InMemoryStore())
        let stream = client.watch(.networkPolicy, after: 0)
        try await client.create(Self.policy("p"))
        try await client.replace(Self.policy("p", selector: "all()"))
        try await client.delete(.networkPolicy, name: "p", namespace: "prod")
        var iterator = stream.makeAsyncIterator()
        guard case .added(let added)? = try await iterator.next() else {
            Issue.record("expected added")
            return
        }
        #expect(added.description == "NetworkPolicy prod/p")
        guard case .modified(let modified)? = try await iterator.next() else {
            Issue.record("expected modified")
            return
        }
        #expect(modified.as(NetworkPolicy.self)?.spec.selector == "all()")
        guard case .deleted(let kind, let namespace, let name, _)? = try await iterator.next() else {
            Issue.record("expected deleted")
            return
        }
        #expect(kind == .networkPolicy && namespace == "prod" && name == "p")
    }

    @Test func aCorruptedValueIsReportedNotOverwritten() async throws {
        let store = InMemoryStore()
        let client = ResourceClient(store: store)
        let key = ResourceClient.key(for: .ipPool, namespace: nil, name: "broken")
        try await store.create(key, value: Data("{not json".utf8))
        await #expect {
            _ = try await client.get(.ipPool, name: "broken")
        } throws: { error in
            "\(error)".hasPrefix("stored value at /tabby/v3/ippools/broken cannot be read")
        }
        #expect(try await store.get(key)?.value == Data("{not json".utf8))
    }

    @Test func datastoreConfigurationFromEnvironmentAndCNIConfig() throws {
        let embedded = try DatastoreConfiguration.fromEnvironment(["TABBY_STORE": "/tmp/x.db"])
        #expect(embedded.kind == .embedded && embedded.path == "/tmp/x.db")
        let etcd = try DatastoreConfiguration.fromEnvironment([
            "ETCD_ENDPOINTS": "http://127.0.0.1:2379,http://127.0.0.1:22379"
        ])
        #expect(etcd.kind == .etcdv3 && etcd.etcdEndpoints.count == 2)
        #expect(throws: StoreError.self) { try DatastoreConfiguration.fromEnvironment(["DATASTORE_TYPE": "etcdv3"]) }
        #expect(throws: StoreError.self) {
            try DatastoreConfiguration.fromEnvironment(["DATASTORE_TYPE": "kubernetes"])
        }
        let cni = try DatastoreConfiguration.fromCNIConfig([
            "datastore_type": "etcdv3", "etcd_endpoints": "https://127.0.0.1:2379", "etcd_ca_cert_file": "/ca.pem",
            "etcd_cert_file": "/c.pem", "etcd_key_file": "/k.pem",
        ])
        #expect(cni.etcdCACertFile == "/ca.pem" && cni.etcdKeyFile == "/k.pem")
        #expect(throws: StoreError.self) {
            try DatastoreConfiguration.fromCNIConfig([
                "etcd_endpoints": "http://127.0.0.1:2379", "etcd_cert_file": "/c.pem",
            ])
        }
    }
}
