import Foundation
import TabbyStore

/// A CNI network configuration as a plugin receives it on stdin, with Calico's keys.
public struct NetworkConfig: @unchecked Sendable {
    // @unchecked: `raw` holds only JSONSerialization values (strings, numbers, arrays,
    // dictionaries), never mutated after init.
    public var cniVersion: String
    public var name: String
    public var type: String
    /// The whole document, for keys read on demand.
    public var raw: [String: Any]
    /// The `ipam` section (empty if none).
    public var ipam: [String: Any]

    public init(data: Data) throws(CNIError) {
        guard !data.isEmpty else { throw .decodeFailure("no network configuration on stdin") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw .decodeFailure(
                "the network configuration on stdin is not JSON", details: "\(error.localizedDescription)")
        }
        guard let raw = object as? [String: Any] else {
            throw .decodeFailure("the network configuration must be a JSON object")
        }
        self.raw = raw
        guard let version = raw["cniVersion"] as? String else {
            throw .invalidConfig("cniVersion is missing from the network configuration")
        }
        cniVersion = version
        name = raw["name"] as? String ?? ""
        type = raw["type"] as? String ?? ""
        ipam = raw["ipam"] as? [String: Any] ?? [:]
    }

    /// A string setting, from the `ipam` section first, then the top level (as Calico reads its
    /// keys from either).
    public func string(_ key: String) throws(CNIError) -> String? {
        for section in [ipam, raw] {
            guard let value = section[key] else { continue }
            if let text = value as? String { return text }
            if let number = value as? NSNumber { return number.stringValue }
            throw .invalidConfig("\(key) must be a string")
        }
        return nil
    }

    /// A boolean written as Calico writes them ("true"/"false") or as JSON booleans.
    public func flag(_ key: String, default value: Bool) throws(CNIError) -> Bool {
        for section in [ipam, raw] {
            guard let found = section[key] else { continue }
            if let flag = found as? Bool { return flag }
            if let text = found as? String, let flag = Bool(text.lowercased()) { return flag }
            throw .invalidConfig("\(key) must be true or false (got \(found))")
        }
        return value
    }

    public func stringList(_ key: String) throws(CNIError) -> [String]? {
        for section in [ipam, raw] {
            guard let value = section[key] else { continue }
            guard let list = value as? [String] else { throw .invalidConfig("\(key) must be a list of strings") }
            return list
        }
        return nil
    }

    /// The datastore keys (`datastore_type`, `etcd_endpoints`, ...). A config without any of
    /// them uses the environment the runtime passes (`DATASTORE_TYPE`, `TABBY_STORE`,
    /// `ETCD_ENDPOINTS`, ...), then the default embedded store.
    /// (`environment` nil: the process's, read only when the config names no datastore.)
    public func datastore(environment: [String: String]? = nil) throws(CNIError) -> DatastoreConfiguration {
        var settings: [String: String] = [:]
        for key in [
            "datastore_type", "datastore_path", "etcd_endpoints", "etcd_ca_cert_file", "etcd_cert_file",
            "etcd_key_file",
            "etcd_username", "etcd_password",
        ] {
            if let value = try string(key) { settings[key] = value }
        }
        do {
            if settings.isEmpty {
                return try DatastoreConfiguration.fromEnvironment(environment ?? ProcessInfo.processInfo.environment)
            }
            return try DatastoreConfiguration.fromCNIConfig(settings)
        } catch {
            throw .invalidConfig(error.description)
        }
    }

    /// The node this plugin runs on: `nodename`, else /var/lib/tabby/nodename, else the host name.
    public func nodeName() throws(CNIError) -> String {
        if let name = try string("nodename"), !name.isEmpty { return name }
        if let text = try? String(contentsOfFile: "/var/lib/tabby/nodename", encoding: .utf8) {
            let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !name.isEmpty { return name }
        }
        return ProcessInfo.processInfo.hostName
    }

    /// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`) of a GC request.
    public func validAttachments() throws(CNIError) -> [(containerID: String, interface: String?)] {
        guard let list = (raw["cni.dev/valid-attachments"] ?? raw["cni.dev/attachments"]) else { return [] }
        guard let entries = list as? [[String: Any]] else {
            throw .invalidConfig("cni.dev/valid-attachments must be a list of objects")
        }
        return try entries.map { (entry) throws(CNIError) in
            guard let id = entry["containerID"] as? String else {
                throw .invalidConfig("a valid attachment has no containerID")
            }
            return (id, entry["ifname"] as? String)
        }
    }

    /// The previous result (CHECK, and optionally DEL).
    public func previousResult() throws(CNIError) -> CNIResult? {
        guard let object = raw["prevResult"] else { return nil }
        guard let dictionary = object as? [String: Any] else {
            throw .decodeFailure("prevResult must be a JSON object")
        }
        return try CNIResult(json: dictionary)
    }
}
