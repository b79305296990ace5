import Foundation

/// How `EtcdStore` reaches etcd: Calico's `etcd_endpoints`, `etcd_ca_cert_file`, `etcd_cert_file`,
/// `etcd_key_file`, `etcd_username` and `etcd_password`, plus Tabby's timeout and retry bounds.
public struct EtcdConfiguration: Sendable {
    /// `http://127.0.0.1:2379` or `https://...`; with several, requests go to the first that works and
    /// stay there until it fails.
    public var endpoints: [String]
    /// TLS: the PEM file of the certificate authorities to trust (the system's when nil).
    public var caCertFile: String?
    /// TLS: the PEM client certificate, for etcd's `--client-cert-auth`.
    public var certFile: String?
    /// TLS: the PEM key of `certFile`.
    public var keyFile: String?
    /// etcd user (with `password`), when etcd has `auth enable`.
    public var username: String?
    public var password: String?
    /// How long one attempt of one request may take (connecting included).
    public var requestTimeout: Duration
    /// Attempts per operation, across endpoints, with exponential backoff (50 ms doubling, at most 1 s).
    public var maxAttempts: Int

    public init(
        endpoints: [String], caCertFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
        username: String? = nil, password: String? = nil, requestTimeout: Duration = .seconds(5), maxAttempts: Int = 5
    ) {
        self.endpoints = endpoints
        self.caCertFile = caCertFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.username = username
        self.password = password
        self.requestTimeout = requestTimeout
        self.maxAttempts = maxAttempts
    }

    /// Parses Calico's comma-separated `etcd_endpoints` value, e.g.
    /// `http://10.0.0.1:2379,http://10.0.0.2:2379`. Spaces around entries are ignored; an empty or
    /// invalid entry is `.invalidConfiguration` naming it.
    public static func parseEndpoints(_ text: String) throws(StoreError) -> [String] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        var endpoints: [String] = []
        for (index, entry) in entries.enumerated() {
            guard !entry.isEmpty else {
                throw .invalidConfiguration(
                    "etcd endpoint \(index + 1) in \"\(text)\" is empty; list URLs like http://127.0.0.1:2379, "
                        + "separated by commas")
            }
            endpoints.append(try validatedEndpoint(entry))
        }
        return endpoints
    }

    /// `endpoint` without a trailing slash, if it is an http(s) URL with a host and no path, query or
    /// credentials.
    static func validatedEndpoint(_ endpoint: String) throws(StoreError) -> String {
        let trimmed = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        guard let url = URLComponents(string: trimmed), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty,
            url.path.isEmpty, url.query == nil, url.fragment == nil, url.user == nil, url.password == nil
        else {
            throw .invalidConfiguration(
                "etcd endpoint \"\(endpoint)\" is not a URL like http://127.0.0.1:2379 or https://etcd.example:2379")
        }
        if let port = url.port, !(1...65535).contains(port) {
            throw .invalidConfiguration("etcd endpoint \"\(endpoint)\" has an invalid port \(port)")
        }
        return trimmed
    }

    /// Checks everything that can be checked without etcd.
    func validated() throws(StoreError) -> EtcdConfiguration {
        var copy = self
        guard !endpoints.isEmpty else {
            throw .invalidConfiguration("no etcd endpoints; give at least one URL like http://127.0.0.1:2379")
        }
        copy.endpoints = []
        for endpoint in endpoints {
            copy.endpoints.append(try Self.validatedEndpoint(endpoint))
        }
        guard maxAttempts >= 1 else {
            throw .invalidConfiguration("etcd maxAttempts is \(maxAttempts); it must be at least 1")
        }
        guard requestTimeout > .zero else {
            throw .invalidConfiguration("etcd requestTimeout is \(requestTimeout); it must be positive")
        }
        guard (certFile == nil) == (keyFile == nil) else {
            throw .invalidConfiguration(
                "etcd client certificate and key go together: set both certFile and keyFile, or neither")
        }
        guard (username == nil) == (password == nil) else {
            throw .invalidConfiguration("etcd username and password go together: set both, or neither")
        }
        if let username, username.isEmpty {
            throw .invalidConfiguration("etcd username is empty")
        }
        return copy
    }
}
