import ArgumentParser
import Foundation
import TabbyStore

/// How a command reaches the datastore: flags, falling back to calicoctl's environment
/// variables, falling back to the embedded store at /var/lib/tabby/tabby.db.
public struct DatastoreOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .long,
        help: "embedded or etcdv3 (env DATASTORE_TYPE; default embedded, or etcdv3 when etcd endpoints are given).")
    var datastoreType: String?

    @Option(
        name: .customLong("store"),
        help: "The embedded datastore's SQLite file (env TABBY_STORE; default /var/lib/tabby/tabby.db).")
    var storePath: String?

    @Option(name: .long, help: "etcd endpoints, comma-separated (env ETCD_ENDPOINTS).")
    var etcdEndpoints: String?

    @Option(name: .long, help: "CA certificate for etcd's TLS (env ETCD_CA_CERT_FILE).")
    var etcdCaCertFile: String?

    @Option(name: .long, help: "Client certificate for etcd (env ETCD_CERT_FILE).")
    var etcdCertFile: String?

    @Option(name: .long, help: "Client key for etcd (env ETCD_KEY_FILE).")
    var etcdKeyFile: String?

    @Option(name: .long, help: "etcd user name (env ETCD_USERNAME); the password comes from env ETCD_PASSWORD.")
    var etcdUsername: String?

    /// Flags win over the environment.
    public func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> DatastoreConfiguration
    {
        do {
            var configuration = try DatastoreConfiguration.fromEnvironment(environment)
            if let storePath { configuration.path = storePath }
            if let etcdEndpoints {
                configuration.etcdEndpoints = try EtcdConfiguration.parseEndpoints(etcdEndpoints)
                configuration.kind = .etcdv3
            }
            if let datastoreType {
                configuration.kind = try DatastoreConfiguration.parseKind(datastoreType, source: "--datastore-type")
            }
            if let etcdCaCertFile { configuration.etcdCACertFile = etcdCaCertFile }
            if let etcdCertFile { configuration.etcdCertFile = etcdCertFile }
            if let etcdKeyFile { configuration.etcdKeyFile = etcdKeyFile }
            if let etcdUsername { configuration.etcdUsername = etcdUsername }
            try configuration.check()
            return configuration
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// Opens the store, or explains why it cannot.
    func openClient() throws -> ResourceClient {
        let configuration = try configuration()
        do {
            return ResourceClient(store: try configuration.makeStore())
        } catch {
            printError("tabbyctl: \(error)")
            throw ExitStatus.invalidInput
        }
    }
}
