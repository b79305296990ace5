/// What a rule does when it matches.
public enum RuleAction: String, StringEnumeration {
    case allow = "Allow"
    case deny = "Deny"
    case log = "Log"
    case pass = "Pass"
}

/// Ingress or Egress, in a policy's `types`.
public enum PolicyType: String, StringEnumeration {
    case ingress = "Ingress"
    case egress = "Egress"
}

/// A protocol by name (`TCP`, also Calico's lower-case spellings) or number (1-255).
public enum IPProtocol: Hashable, Sendable, Codable, CustomStringConvertible {
    case name(String)
    case number(Int)

    /// Calico's protocol names and their numbers.
    public static let knownNames: [(name: String, number: Int)] = [
        ("TCP", 6), ("UDP", 17), ("ICMP", 1), ("ICMPv6", 58), ("SCTP", 132), ("UDPLite", 136),
    ]

    public static let tcp = IPProtocol.name("TCP")
    public static let udp = IPProtocol.name("UDP")

    /// The IANA protocol number, or nil for an unknown name.
    public var protocolNumber: Int? {
        switch self {
        case .number(let number): return number
        case .name(let name):
            return Self.knownNames.first { $0.name == name || $0.name.lowercased() == name }?.number
        }
    }

    /// Only TCP, UDP and SCTP have ports.
    public var supportsPorts: Bool { [6, 17, 132].contains(protocolNumber ?? -1) }

    public var description: String {
        switch self {
        case .name(let name): return name
        case .number(let number): return "\(number)"
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            self = .number(number)
        } else {
            self = .name(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .name(let name): try container.encode(name)
        case .number(let number): try container.encode(number)
        }
    }

    /// A problem with this protocol, or nil.
    public var problem: String? {
        switch self {
        case .number(let number) where !(1...255).contains(number):
            return "protocol number \(number) is out of range 1-255"
        case .name(let name) where protocolNumber == nil:
            let names = Self.knownNames.map(\.name).joined(separator: ", ")
            return "unknown protocol \"\(name)\": use \(names) (or lower case) or a number 1-255"
        default:
            return nil
        }
    }
}

/// A port match: a number, a `"min:max"` range, or a named port resolved per endpoint.
public enum Port: Hashable, Sendable, Codable, CustomStringConvertible {
    case number(UInt16)
    case range(UInt16, UInt16)
    case named(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            guard let port = UInt16(exactly: number) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "port \(number) is out of range 0-65535")
                )
            }
            self = .number(port)
            return
        }
        let text = try container.decode(String.self)
        do {
            self = try Port.parse(text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.reason))
        }
    }

    public struct ParseError: Error, Sendable { public var reason: String }

    /// `"80"`, `"8000:8080"` or a port name.
    public static func parse(_ text: String) throws(ParseError) -> Port {
        if let number = Int(text) {
            guard let port = UInt16(exactly: number) else {
                throw ParseError(reason: "port \(number) is out of range 0-65535")
            }
            return .number(port)
        }
        let bounds = text.split(separator: ":", omittingEmptySubsequences: false)
        if bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]) {
            guard let min = UInt16(exactly: low), let max = UInt16(exactly: high) else {
                throw ParseError(reason: "port range \"\(text)\" is out of range 0-65535")
            }
            guard min <= max else {
                throw ParseError(reason: "port range \"\(text)\" has its minimum above its maximum")
            }
            return .range(min, max)
        }
        return .named(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let number): try container.encode(Int(number))
        case .range(let min, let max): try container.encode("\(min):\(max)")
        case .named(let name): try container.encode(name)
        }
    }

    public var description: String {
        switch self {
        case .number(let number): return "\(number)"
        case .range(let min, let max): return "\(min):\(max)"
        case .named(let name): return name
        }
    }

    /// Kubernetes' IANA service name rule, which named ports follow: 1-15 characters of lowercase
    /// letters, digits and '-', with at least one letter, no '--', not starting or ending with '-'.
    public static func problem(withName name: String) -> String? {
        let bytes = Array(name.utf8)
        let isLower = { (byte: UInt8) in byte >= 0x61 && byte <= 0x7A }
        let isDigit = { (byte: UInt8) in byte >= 0x30 && byte <= 0x39 }
        if bytes.isEmpty || bytes.count > 15 { return "port name \"\(name)\" must be 1-15 characters" }
        if !bytes.allSatisfy({ isLower($0) || isDigit($0) || $0 == 0x2D }) || !bytes.contains(where: isLower)
            || bytes.first == 0x2D || bytes.last == 0x2D || name.contains("--")
        {
            return "\"\(name)\" is neither a port number, a \"min:max\" range nor a valid port name"
                + " (lowercase letters, digits and single '-', with at least one letter)"
        }
        return nil
    }
}

/// ICMP type and code (code needs a type).
public struct ICMPMatch: Codable, Hashable, Sendable {
    public var type: Int?
    public var code: Int?

    public init(type: Int? = nil, code: Int? = nil) {
        self.type = type
        self.code = code
    }
}

public struct ServiceAccountMatch: Codable, Hashable, Sendable {
    public var names: [String]?
    public var selector: String?
}

public struct ServiceMatch: Codable, Hashable, Sendable {
    public var name: String
    public var namespace: String?
}

/// The source or destination of a rule.
public struct EntityRule: Codable, Hashable, Sendable {
    public var nets: [String]?
    public var notNets: [String]?
    public var selector: String?
    public var notSelector: String?
    public var namespaceSelector: String?
    public var ports: [Port]?
    public var notPorts: [Port]?
    public var serviceAccounts: ServiceAccountMatch?
    public var services: ServiceMatch?

    public init(
        nets: [String]? = nil,
        notNets: [String]? = nil,
        selector: String? = nil,
        notSelector: String? = nil,
        namespaceSelector: String? = nil,
        ports: [Port]? = nil,
        notPorts: [Port]? = nil
    ) {
        self.nets = nets
        self.notNets = notNets
        self.selector = selector
        self.notSelector = notSelector
        self.namespaceSelector = namespaceSelector
        self.ports = ports
        self.notPorts = notPorts
    }

    var hasPorts: Bool { !(ports ?? []).isEmpty || !(notPorts ?? []).isEmpty }
}

public struct HTTPMatch: Codable, Hashable, Sendable {
    public struct PathMatch: Codable, Hashable, Sendable {
        public var exact: String?
        public var prefix: String?
    }
    public var methods: [String]?
    public var paths: [PathMatch]?
}

public struct RuleMetadata: Codable, Hashable, Sendable {
    public var annotations: [String: String]?
}

/// One policy or profile rule (first match wins).
public struct Rule: Codable, Hashable, Sendable {
    public var action: RuleAction
    public var ipVersion: Int?
    public var `protocol`: IPProtocol?
    public var notProtocol: IPProtocol?
    public var icmp: ICMPMatch?
    public var notICMP: ICMPMatch?
    public var source: EntityRule?
    public var destination: EntityRule?
    public var http: HTTPMatch?
    public var metadata: RuleMetadata?

    public init(
        action: RuleAction,
        protocol: IPProtocol? = nil,
        source: EntityRule? = nil,
        destination: EntityRule? = nil
    ) {
        self.action = action
        self.protocol = `protocol`
        self.source = source
        self.destination = destination
    }
}

extension Validator {
    mutating func validateRules(_ rules: [Rule]?, key: String) {
        each(key, rules) { validator, rule in validator.validateRule(rule) }
    }

    mutating func validateRule(_ rule: Rule) {
        var family: IPFamily?
        if let version = rule.ipVersion {
            family = IPFamily(rawValue: version)
            if family == nil { fail("ipVersion", "must be 4 or 6 (got \(version))") }
        }
        if let problem = rule.protocol?.problem { fail("protocol", problem) }
        if let problem = rule.notProtocol?.problem { fail("notProtocol", problem) }
        for (key, icmp) in [("icmp", rule.icmp), ("notICMP", rule.notICMP)] {
            guard let icmp else { continue }
            at(key) { validator in validator.validateICMP(icmp, protocol: rule.protocol, family: family) }
        }
        for (key, entity) in [("source", rule.source), ("destination", rule.destination)] {
            guard let entity else { continue }
            at(key) { validator in validator.validateEntity(entity, rule: rule, family: family) }
        }
    }

    private mutating func validateICMP(_ icmp: ICMPMatch, protocol: IPProtocol?, family: IPFamily?) {
        let number = `protocol`?.protocolNumber
        if number != 1 && number != 58 {
            fail("ICMP type and code need protocol ICMP or ICMPv6")
        } else if let family, (number == 1 && family != .v4) || (number == 58 && family != .v6) {
            fail("protocol \(`protocol`!) does not match ipVersion \(family.rawValue)")
        }
        if let type = icmp.type, !(0...254).contains(type) { fail("type", "ICMP type \(type) is out of range 0-254") }
        if let code = icmp.code {
            if icmp.type == nil { fail("code", "an ICMP code needs an ICMP type") }
            if !(0...255).contains(code) { fail("code", "ICMP code \(code) is out of range 0-255") }
        }
    }

    private mutating func validateEntity(_ entity: EntityRule, rule: Rule, family: IPFamily?) {
        validateCIDRs(entity.nets, key: "nets", family: family)
        validateCIDRs(entity.notNets, key: "notNets", family: family)
        validateSelector(entity.selector, key: "selector")
        validateSelector(entity.notSelector, key: "notSelector")
        validateSelector(entity.namespaceSelector, key: "namespaceSelector")
        validateSelector(entity.serviceAccounts?.selector, key: "serviceAccounts.selector")
        if entity.hasPorts, !(rule.protocol?.supportsPorts ?? false) {
            fail(
                "ports",
                "ports need protocol TCP, UDP or SCTP in the rule (protocol is \(rule.protocol?.description ?? "not set"))"
            )
        }
        for key in ["ports", "notPorts"] {
            each(key, key == "ports" ? entity.ports : entity.notPorts) { validator, port in
                if case .named(let name) = port, let problem = Port.problem(withName: name) {
                    validator.fail(problem)
                }
            }
        }
        if entity.services != nil,
            entity.nets != nil || entity.notNets != nil || entity.selector != nil || entity.notSelector != nil
                || entity.namespaceSelector != nil || entity.ports != nil || entity.notPorts != nil
        {
            fail("services", "services cannot be combined with nets, selectors or ports")
        }
    }
}
