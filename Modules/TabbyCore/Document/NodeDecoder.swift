/// A `Decoder` over a `DocumentNode` tree that reports as many problems as it can find, each with
/// its field path and source position, rather than stopping at the first.
///
/// How it keeps going: an optional field (`decodeIfPresent`) that fails to decode is recorded and
/// read as absent; an array is decoded element by element so every bad element is reported; a
/// mapping with fields the type does not know is reported field by field ("unknown field"), as
/// calicoctl's strict decoding does. A document with any recorded problem is rejected as a whole.
public struct DecodeProblem: Sendable, Hashable {
    public var path: [PathComponent]
    public var location: SourceLocation
    public var message: String
}

/// Collects problems while one document decodes. Reference type so that every nested decoder
/// shares it; used from one thread only (decoding is synchronous), hence no lock.
final class ProblemSink {
    /// The node decoding started at, and its path in the document (non-empty for `items[i]` of a List).
    let root: DocumentNode
    let rootPath: [PathComponent]
    var problems: [DecodeProblem] = []

    init(root: DocumentNode, rootPath: [PathComponent]) {
        self.root = root
        self.rootPath = rootPath
    }

    func record(_ message: String, path: [PathComponent], at location: SourceLocation? = nil) {
        let where_ = location ?? root.deepestNode(at: Array(path.dropFirst(rootPath.count))).location
        let problem = DecodeProblem(path: path, location: where_, message: message)
        if !problems.contains(problem) { problems.append(problem) }
    }

    /// Records an error that escaped a nested decode; errors this decoder raised carry their path.
    func record(_ error: any Error, fallbackPath: [PathComponent]) {
        switch error {
        case let error as NodeDecodingError:
            record(error.message, path: error.path, at: error.location)
        case let DecodingError.dataCorrupted(context),
            let DecodingError.typeMismatch(_, context),
            let DecodingError.valueNotFound(_, context):
            let path = context.codingPath.isEmpty ? fallbackPath : context.codingPath.pathComponents
            record(context.debugDescription, path: path)
        case let DecodingError.keyNotFound(key, context):
            record("required field \"\(key.stringValue)\" is missing", path: context.codingPath.pathComponents)
        default:
            record("\(error)", path: fallbackPath)
        }
    }
}

/// An error raised by this decoder: it knows exactly where it happened.
struct NodeDecodingError: Error {
    var path: [PathComponent]
    var location: SourceLocation
    var message: String
}

/// Types that take over their own unknown-field policy (e.g. a spec that keeps fields it does not
/// model, so they survive a round trip).
public protocol AcceptsUnknownFields {}

struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { nil }
}

extension [any CodingKey] {
    var pathComponents: [PathComponent] {
        map { key in key.intValue.map(PathComponent.index) ?? .key(key.stringValue) }
    }
}

/// Which keys of a mapping a type asked for, to find the ones it does not know.
final class KeyAccessLog {
    var keys: Set<String> = []
}

struct NodeDecoder: Decoder {
    let node: DocumentNode
    let codingPath: [any CodingKey]
    let sink: ProblemSink
    let accessLog = KeyAccessLog()
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    var path: [PathComponent] { codingPath.pathComponents }

    func mismatch(_ expected: String) -> NodeDecodingError {
        var message = "expected \(expected), found \(node.kindDescription)"
        if expected == "a string", case .int(let number) = node.value {
            message += " (quote it: \"\(number)\")"
        } else if expected == "a string", case .bool(let flag) = node.value {
            message += " (quote it: \"\(flag)\")"
        }
        return NodeDecodingError(path: path, location: node.location, message: message)
    }

    func child(_ node: DocumentNode, key: any CodingKey) -> NodeDecoder {
        NodeDecoder(node: node, codingPath: codingPath + [key], sink: sink)
    }

    /// Decodes `T` from this node, then reports any mapping fields `T` never asked for.
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if let arrayType = T.self as? any ElementwiseDecodable.Type {
            guard let value = arrayType.decodeElementwise(self) else {
                throw NodeDecodingError(path: path, location: node.location, message: "")
            }
            return value as! T
        }
        let value = try T(from: self)
        if case .mapping(let entries) = node.value, !(value is AcceptsUnknownFields), !accessLog.keys.isEmpty {
            for entry in entries where !accessLog.keys.contains(entry.key) {
                var message = "unknown field \"\(entry.key)\""
                if let suggestion = closestKey(to: entry.key, among: accessLog.keys) {
                    message += "; did you mean \"\(suggestion)\"?"
                }
                sink.record(message, path: path + [.key(entry.key)], at: entry.keyLocation)
            }
        }
        return value
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .mapping(let entries) = node.value else { throw mismatch("a mapping") }
        return KeyedDecodingContainer(NodeKeyedContainer<Key>(decoder: self, entries: entries))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .sequence(let items) = node.value else { throw mismatch("a list") }
        return NodeUnkeyedContainer(decoder: self, items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        NodeSingleValueContainer(decoder: self)
    }
}

/// Arrays decode element by element so that every bad element is reported.
protocol ElementwiseDecodable {
    /// nil when any element failed (each failure recorded in the decoder's sink).
    static func decodeElementwise(_ decoder: NodeDecoder) -> Self?
}

extension Array: ElementwiseDecodable where Element: Decodable {
    static func decodeElementwise(_ decoder: NodeDecoder) -> [Element]? {
        guard case .sequence(let items) = decoder.node.value else {
            let error = decoder.mismatch("a list")
            decoder.sink.record(error.message, path: error.path, at: error.location)
            return nil
        }
        var result: [Element] = []
        result.reserveCapacity(items.count)
        var failed = false
        for (index, item) in items.enumerated() {
            let child = decoder.child(item, key: IndexKey(index))
            do {
                result.append(try child.decodeValue(Element.self))
            } catch let error as NodeDecodingError where error.message.isEmpty {
                failed = true  // already recorded element by element
            } catch {
                decoder.sink.record(error, fallbackPath: child.path)
                failed = true
            }
        }
        return failed ? nil : result
    }
}

struct NodeKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: NodeDecoder
    let entries: [(key: String, keyLocation: SourceLocation, value: DocumentNode)]

    var codingPath: [any CodingKey] { decoder.codingPath }
    var allKeys: [Key] { entries.compactMap { Key(stringValue: $0.key) } }

    private func entry(_ key: Key) -> DocumentNode? {
        decoder.accessLog.keys.insert(key.stringValue)
        return entries.first { $0.key == key.stringValue }?.value
    }

    func contains(_ key: Key) -> Bool { entry(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let node = entry(key) else { return true }
        if case .null = node.value { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let node = entry(key) else {
            throw NodeDecodingError(
                path: decoder.path + [.key(key.stringValue)],
                location: decoder.node.location,
                message: "required field \"\(key.stringValue)\" is missing"
            )
        }
        return try decoder.child(node, key: key).decodeValue(T.self)
    }

    /// Lenient: a present but undecodable value is recorded and read as absent, so decoding goes
    /// on and finds the document's other problems too.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let node = entry(key) else { return nil }
        if case .null = node.value { return nil }
        let child = decoder.child(node, key: key)
        do {
            return try child.decodeValue(T.self)
        } catch let error as NodeDecodingError where error.message.isEmpty {
            return nil
        } catch {
            decoder.sink.record(error, fallbackPath: child.path)
            return nil
        }
    }

    // The standard library's defaults for these would bypass the lenient generic path above.
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try lenient(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try lenient(type, key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try lenient(type, key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try lenient(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try lenient(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try lenient(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try lenient(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try lenient(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try lenient(type, key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try lenient(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try lenient(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try lenient(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try lenient(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try lenient(type, key) }

    private func lenient<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        try decodeIfPresent(type, forKey: key)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        guard let node = entry(key) else {
            throw NodeDecodingError(
                path: decoder.path + [.key(key.stringValue)],
                location: decoder.node.location,
                message: "required field \"\(key.stringValue)\" is missing"
            )
        }
        return try decoder.child(node, key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        guard let node = entry(key) else {
            throw NodeDecodingError(
                path: decoder.path + [.key(key.stringValue)],
                location: decoder.node.location,
                message: "required field \"\(key.stringValue)\" is missing"
            )
        }
        return try decoder.child(node, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { decoder }
    func superDecoder(forKey key: Key) throws -> any Decoder {
        decoder.child(entry(key) ?? DocumentNode(value: .null, location: decoder.node.location), key: key)
    }
}

struct NodeUnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: NodeDecoder
    let items: [DocumentNode]
    var currentIndex = 0

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next() throws -> NodeDecoder {
        guard !isAtEnd else {
            throw NodeDecodingError(path: decoder.path, location: decoder.node.location, message: "list is too short")
        }
        defer { currentIndex += 1 }
        return decoder.child(items[currentIndex], key: IndexKey(currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if case .null = items[currentIndex].value {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next().decodeValue(T.self)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next().unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { try next() }
}

struct NodeSingleValueContainer: SingleValueDecodingContainer {
    let decoder: NodeDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }
    private var node: DocumentNode { decoder.node }

    func decodeNil() -> Bool {
        if case .null = node.value { return true }
        return false
    }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .bool(let flag) = node.value else { throw decoder.mismatch("true or false") }
        return flag
    }

    func decode(_ type: String.Type) throws -> String {
        guard case .string(let text) = node.value else { throw decoder.mismatch("a string") }
        return text
    }

    func decode(_ type: Double.Type) throws -> Double {
        switch node.value {
        case .int(let number): return Double(number)
        case .double(let number): return number
        default: throw decoder.mismatch("a number")
        }
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    private func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        let wide: Int
        switch node.value {
        case .int(let number): wide = number
        case .double(let number) where number.rounded() == number && abs(number) < 9e18: wide = Int(number)
        default: throw decoder.mismatch("an integer")
        }
        guard let value = I(exactly: wide) else {
            throw NodeDecodingError(
                path: decoder.path,
                location: node.location,
                message: "\(wide) is out of range \(I.min)...\(I.max)"
            )
        }
        return value
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decoder.decodeValue(T.self)
    }
}

extension DocumentNode {
    /// Decodes `T` from this node, which sits at `path` in its document. With problems, the value
    /// (if any) is partial: fields that failed read as absent. Callers may still validate it to find
    /// more problems, but must not use it.
    public func decode<T: Decodable>(_ type: T.Type, at path: [PathComponent] = []) -> (
        value: T?, problems: [DecodeProblem]
    ) {
        let sink = ProblemSink(root: self, rootPath: path)
        let keys: [any CodingKey] = path.map { component in
            switch component {
            case .key(let key): return AnyCodingKey(key)
            case .index(let index): return IndexKey(index)
            }
        }
        let decoder = NodeDecoder(node: self, codingPath: keys, sink: sink)
        var value: T?
        do {
            value = try decoder.decodeValue(T.self)
        } catch let error as NodeDecodingError where error.message.isEmpty {
            value = nil
        } catch {
            sink.record(error, fallbackPath: path)
        }
        return (value, sink.problems)
    }
}

/// A coding key made from any string, for dynamic mappings.
public struct AnyCodingKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ string: String) { stringValue = string }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// The known field a misspelt one most likely meant: within two edits, or differing only in case.
func closestKey(to key: String, among known: Set<String>) -> String? {
    let wanted = Array(key.lowercased())
    var best: (key: String, distance: Int)?
    for candidate in known.sorted() {
        let distance = editDistance(wanted, Array(candidate.lowercased()))
        if distance <= 2, distance < (best?.distance ?? .max) { best = (candidate, distance) }
    }
    return best?.key
}

private func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
