/// Which datastore to use and how to reach it, configured the same way everywhere: CNI config
/// keys (Calico's names), environment variables (calicoctl's names plus `TABBY_STORE`) and flags.
public struct DatastoreConfiguration: Sendable, Hashable {
    public enum Kind: String, Sendable, CaseIterable {
        /// One SQLite file on this machine.
        case embedded
        /// etcd v3.
        case etcdv3
    }

    public var kind: Kind
    /// The SQLite file (embedded).
    public var path: String
    /// etcd endpoints, e.g. `http://127.0.0.1:2379` (etcdv3).
    public var etcdEndpoints: [String]
    public var etcdCACertFile: String?
    public var etcdCertFile: String?
    public var etcdKeyFile: String?
    public var etcdUsername: String?
    public var etcdPassword: String?

    public static let defaultPath = SQLiteStoreConfiguration.defaultPath

    public init(
        kind: Kind = .embedded,
        path: String = defaultPath,
        etcdEndpoints: [String] = [],
        etcdCACertFile: String? = nil,
        etcdCertFile: String? = nil,
        etcdKeyFile: String? = nil,
        etcdUsername: String? = nil,
        etcdPassword: String? = nil
    ) {
        self.kind = kind
        self.path = path
        self.etcdEndpoints = etcdEndpoints
        self.etcdCACertFile = etcdCACertFile
        self.etcdCertFile = etcdCertFile
        self.etcdKeyFile = etcdKeyFile
        self.etcdUsername = etcdUsername
        self.etcdPassword = etcdPassword
    }

    /// Parses a `datastore_type` / `DATASTORE_TYPE` value; `source` names where it came from.
    public static func parseKind(_ text: String, source: String) throws(StoreError) -> Kind {
        if let kind = Kind(rawValue: text) { return kind }
        if text == "kubernetes" {
            throw .invalidConfiguration(
                "\(source): datastore type \"kubernetes\" is Calico's Kubernetes API store, which Tabby does not use; use embedded or etcdv3"
            )
        }
        throw .invalidConfiguration("\(source): unknown datastore type \"\(text)\"; use embedded or etcdv3")
    }

    /// Reads calicoctl's environment variables: `DATASTORE_TYPE`, `TABBY_STORE`, `ETCD_ENDPOINTS`,
    /// `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `ETCD_USERNAME`, `ETCD_PASSWORD`.
    /// Setting `ETCD_ENDPOINTS` alone selects etcdv3.
    public static func fromEnvironment(_ environment: [String: String]) throws(StoreError) -> DatastoreConfiguration {
        var configuration = DatastoreConfiguration()
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        if let path = value("TABBY_STORE") { configuration.path = path }
        if let endpoints = value("ETCD_ENDPOINTS") {
            configuration.etcdEndpoints = try EtcdConfiguration.parseEndpoints(endpoints)
            configuration.kind = .etcdv3
        }
        if let kind = value("DATASTORE_TYPE") { configuration.kind = try parseKind(kind, source: "DATASTORE_TYPE") }
        configuration.etcdCACertFile = value("ETCD_CA_CERT_FILE")
        configuration.etcdCertFile = value("ETCD_CERT_FILE")
        configuration.etcdKeyFile = value("ETCD_KEY_FILE")
        configuration.etcdUsername = value("ETCD_USERNAME")
        configuration.etcdPassword = value("ETCD_PASSWORD")
        try configuration.check()
        return configuration
    }

    /// Reads a CNI network config's keys (Calico's names): `datastore_type`, `etcd_endpoints`,
    /// `etcd_ca_cert_file`, `etcd_cert_file`, `etcd_key_file`, `etcd_username`, `etcd_password`,
    /// and Tabby's `datastore_path`.
    public static func fromCNIConfig(_ config: [String: String]) throws(StoreError) -> DatastoreConfiguration {
        var configuration = DatastoreConfiguration()
        if let path = config["datastore_path"], !path.isEmpty { configuration.path = path }
        if let endpoints = config["etcd_endpoints"], !endpoints.isEmpty {
            configuration.etcdEndpoints = try EtcdConfiguration.parseEndpoints(endpoints)
            configuration.kind = .etcdv3
        }
        if let kind = config["datastore_type"], !kind.isEmpty {
            configuration.kind = try parseKind(kind, source: "datastore_type")
        }
        configuration.etcdCACertFile = config["etcd_ca_cert_file"]
        configuration.etcdCertFile = config["etcd_cert_file"]
        configuration.etcdKeyFile = config["etcd_key_file"]
        configuration.etcdUsername = config["etcd_username"]
        configuration.etcdPassword = config["etcd_password"]
        try configuration.check()
        return configuration
    }

    /// Catches combinations that cannot work, before anything connects.
    public func check() throws(StoreError) {
        switch kind {
        case .embedded:
            if path.isEmpty {
                throw .invalidConfiguration("the embedded datastore needs a file path (TABBY_STORE or --store)")
            }
        case .etcdv3:
            if etcdEndpoints.isEmpty {
                throw .invalidConfiguration(
                    "datastore type etcdv3 needs etcd endpoints (ETCD_ENDPOINTS, --etcd-endpoints or etcd_endpoints)")
            }
            if (etcdCertFile == nil) != (etcdKeyFile == nil) {
                throw .invalidConfiguration("an etcd client certificate needs both a certificate file and a key file")
            }
            if (etcdUsername == nil) != (etcdPassword == nil) {
                throw .invalidConfiguration("etcd authentication needs both a username and a password")
            }
        }
    }

    /// Opens the configured store.
    /// `shortLived`: the caller is a one-shot process (the CNI plugin): an embedded store is a
    /// `SQLiteOneShotStore`, one connection through SQLite's C API, which costs a CNI call less to
    /// open and use than GRDB (docs/benchmarks.md).
    public func makeStore(shortLived: Bool = false) throws(StoreError) -> any KeyValueStore {
        try check()
        switch kind {
        case .embedded:
            let configuration = SQLiteStoreConfiguration(path: path)
            if shortLived { return try SQLiteOneShotStore(configuration: configuration) }
            return try SQLiteStore(configuration: configuration)
        case .etcdv3:
            return try EtcdStore(
                configuration: EtcdConfiguration(
                    endpoints: etcdEndpoints,
                    caCertFile: etcdCACertFile,
                    certFile: etcdCertFile,
                    keyFile: etcdKeyFile,
                    username: etcdUsername,
                    password: etcdPassword
                )
            )
        }
    }
}
