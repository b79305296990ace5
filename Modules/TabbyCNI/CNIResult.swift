import Foundation
import TabbyCore

/// The CNI versions Tabby reads and writes results in.
public enum CNIVersion {
    public static let supported = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    public static let latest = "1.1.0"

    /// Whether a config's version is one Tabby speaks (code 1 otherwise).
    public static func check(_ version: String) throws(CNIError) {
        guard supported.contains(version) else {
            throw .incompatibleVersion(
                "CNI version \(version) is not supported; use one of \(supported.joined(separator: ", "))")
        }
    }
}

/// A CNI result (`interfaces`, `ips`, `routes`, `dns`), encoded for the requested version.
public struct CNIResult: Sendable, Hashable {
    public struct Interface: Sendable, Hashable {
        public var name: String
        public var mac: String?
        public var mtu: Int?
        public var sandbox: String?
        public init(name: String, mac: String? = nil, mtu: Int? = nil, sandbox: String? = nil) {
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.sandbox = sandbox
        }
    }

    public struct IPConfig: Sendable, Hashable {
        /// Address with prefix length, e.g. 10.65.0.5/32.
        public var address: String
        public var gateway: String?
        public var interface: Int?
        public init(address: String, gateway: String? = nil, interface: Int? = nil) {
            self.address = address
            self.gateway = gateway
            self.interface = interface
        }
    }

    public struct Route: Sendable, Hashable {
        public var dst: String
        public var gw: String?
        public init(dst: String, gw: String? = nil) {
            self.dst = dst
            self.gw = gw
        }
    }

    public var interfaces: [Interface] = []
    public var ips: [IPConfig] = []
    public var routes: [Route] = []

    public init(interfaces: [Interface] = [], ips: [IPConfig] = [], routes: [Route] = []) {
        self.interfaces = interfaces
        self.ips = ips
        self.routes = routes
    }

    /// The JSON for `cniVersion` (0.3.x and 0.4.0 carry each IP's `version`).
    public func json(cniVersion: String) -> Data {
        var object: [String: JSONValue] = ["cniVersion": .string(cniVersion)]
        if !interfaces.isEmpty {
            object["interfaces"] = .array(
                interfaces.map { interface in
                    var entry: [String: JSONValue] = ["name": .string(interface.name)]
                    if let mac = interface.mac { entry["mac"] = .string(mac) }
                    if let mtu = interface.mtu, !cniVersion.hasPrefix("0.") { entry["mtu"] = .int(mtu) }
                    if let sandbox = interface.sandbox { entry["sandbox"] = .string(sandbox) }
                    return .object(entry)
                })
        }
        object["ips"] = .array(
            ips.map { ip in
                var entry: [String: JSONValue] = ["address": .string(ip.address)]
                if let gateway = ip.gateway { entry["gateway"] = .string(gateway) }
                if let interface = ip.interface { entry["interface"] = .int(interface) }
                if cniVersion.hasPrefix("0.") { entry["version"] = .string(ip.address.contains(":") ? "6" : "4") }
                return .object(entry)
            })
        if !routes.isEmpty {
            object["routes"] = .array(
                routes.map { route in
                    var entry: [String: JSONValue] = ["dst": .string(route.dst)]
                    if let gw = route.gw { entry["gw"] = .string(gw) }
                    return .object(entry)
                })
        }
        object["dns"] = .object([:])
        return Data(JSONValue.object(object).serialized().utf8)
    }

    /// Reads a `prevResult` of any supported version.
    public init(json object: [String: Any]) throws(CNIError) {
        for entry in object["interfaces"] as? [[String: Any]] ?? [] {
            guard let name = entry["name"] as? String else {
                throw .decodeFailure("prevResult.interfaces: an interface has no name")
            }
            interfaces.append(
                Interface(
                    name: name, mac: entry["mac"] as? String, mtu: entry["mtu"] as? Int,
                    sandbox: entry["sandbox"] as? String))
        }
        for entry in object["ips"] as? [[String: Any]] ?? [] {
            guard let address = entry["address"] as? String, CIDR(address) != nil else {
                throw .decodeFailure(
                    "prevResult.ips: \(entry["address"] ?? "an entry") is not an address with a prefix length")
            }
            ips.append(
                IPConfig(address: address, gateway: entry["gateway"] as? String, interface: entry["interface"] as? Int))
        }
        for entry in object["routes"] as? [[String: Any]] ?? [] {
            guard let dst = entry["dst"] as? String else {
                throw .decodeFailure("prevResult.routes: a route has no dst")
            }
            routes.append(Route(dst: dst, gw: entry["gw"] as? String))
        }
    }
}
