/// A problem with a resource's content, at a field path inside the resource.
public struct ValidationProblem: Hashable, Sendable, CustomStringConvertible {
    public var path: [PathComponent]
    public var message: String

    public init(path: [PathComponent], message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path.fieldPath): \(message)" }
}

/// Collects every problem of a resource, each at its field path.
public struct Validator: Sendable {
    public private(set) var problems: [ValidationProblem] = []
    private var path: [PathComponent] = []

    public init() {}

    /// Runs `body` one field deeper.
    public mutating func at(_ key: String, _ body: (inout Validator) -> Void) {
        path.append(.key(key))
        body(&self)
        path.removeLast()
    }

    /// Runs `body` for each element, one index deeper.
    public mutating func each<Element>(_ key: String, _ items: [Element]?, _ body: (inout Validator, Element) -> Void) {
        guard let items else { return }
        at(key) { validator in
            for (index, item) in items.enumerated() {
                validator.path.append(.index(index))
                body(&validator, item)
                validator.path.removeLast()
            }
        }
    }

    /// A problem with the current field.
    public mutating func fail(_ message: String) {
        problems.append(ValidationProblem(path: path, message: message))
    }

    /// A problem with field `key` of the current object.
    public mutating func fail(_ key: String, _ message: String) {
        problems.append(ValidationProblem(path: path + [.key(key)], message: message))
    }
}

/// The checks resources share.
extension Validator {
    /// Calico's resource names: DNS-1123 subdomains (lowercase alphanumerics, '-' and '.').
    public static func problem(withName name: String, allowDots: Bool = true) -> String? {
        if name.isEmpty { return "is required" }
        if name.utf8.count > 253 { return "must be 253 characters or less" }
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D
                || (allowDots && byte == 0x2E)
        }
        let ends = { (byte: UInt8?) in byte.map { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) } ?? false }
        if !allowed || !ends(name.utf8.first) || !ends(name.utf8.last) {
            let dots = allowDots ? ", '-' and '.'" : " and '-'"
            return
                "\"\(name)\" is not a valid name: use lowercase letters, digits\(dots), starting and ending with a letter or digit"
        }
        return nil
    }

    mutating func validateMetadata(_ metadata: ObjectMeta, kind: ResourceKind) {
        at("metadata") { validator in
            if let problem = Self.problem(withName: metadata.name) {
                validator.fail("name", problem)
            }
            if kind.isNamespaced {
                if let namespace = metadata.namespace, let problem = Self.problem(withName: namespace, allowDots: false)
                {
                    validator.fail("namespace", problem)
                }
            } else if let namespace = metadata.namespace, !namespace.isEmpty {
                validator.fail("namespace", "\(kind.name) is not namespaced; remove the namespace \"\(namespace)\"")
            }
            validator.validateLabels(metadata.labels, key: "labels")
        }
    }

    public mutating func validateLabels(_ labels: [String: String]?, key: String) {
        guard let labels else { return }
        at(key) { validator in
            for (name, value) in labels.sorted(by: { $0.key < $1.key }) {
                if let problem = LabelRules.problem(withKey: name) {
                    validator.fail(name, "invalid label key: \(problem)")
                } else if let problem = LabelRules.problem(withValue: value) {
                    validator.fail(name, "invalid label value \"\(value)\": \(problem)")
                }
            }
        }
    }

    public mutating func validateSelector(_ text: String?, key: String) {
        guard let text else { return }
        do {
            _ = try Selector.parse(text)
        } catch {
            fail(key, "invalid selector \"\(text)\": \(error)")
        }
    }

    /// A CIDR (or bare address); `strict` refuses host bits (pools), lenient masks them (rule nets).
    @discardableResult
    public mutating func validateCIDR(_ text: String, key: String? = nil, strict: Bool = false) -> CIDR? {
        do {
            return try CIDR.parse(text, allowHostBits: !strict)
        } catch {
            if let key { fail(key, error.description) } else { fail(error.description) }
            return nil
        }
    }

    public mutating func validateCIDRs(_ texts: [String]?, key: String, family: IPFamily? = nil) {
        each(key, texts) { validator, text in
            if let cidr = validator.validateCIDR(text), let family, cidr.family != family {
                validator.fail(
                    "\(text) is not an IPv\(family.rawValue) network, but the rule's ipVersion is \(family.rawValue)")
            }
        }
    }

    @discardableResult
    public mutating func validateAddress(_ text: String, key: String? = nil) -> IPAddress? {
        do {
            return try IPAddress.parse(text)
        } catch {
            if let key { fail(key, error.description) } else { fail(error.description) }
            return nil
        }
    }
}
