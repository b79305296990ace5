import Foundation
import TabbyCore
import TabbyStore

/// IPAM's records read and written as JSON by hand. Every CNI ADD decodes and encodes a block, a
/// handle and the node's affinities; through Codable each record type costs the Swift runtime a
/// first-use scan of every protocol conformance in the binary, which showed as about 1.5 ms per
/// ADD (docs/benchmarks.md). The JSON is the same as the Codable conformances write (keys as the
/// property names, absent when nil, sorted), and those conformances stay for other callers.
protocol JSONRecord {
    init(json: JSONValue) throws(RecordFieldError)
    var json: JSONValue { get }
}

/// A field of a stored record that is missing or of the wrong type.
struct RecordFieldError: Error, CustomStringConvertible {
    var description: String
}

/// Typed access to one JSON object's fields, naming the field on error.
struct RecordFields {
    let entries: [String: JSONValue]
    let type: String

    init(_ value: JSONValue, type: String) throws(RecordFieldError) {
        guard case .object(let entries) = value else {
            throw RecordFieldError(description: "\(type) is not a JSON object")
        }
        self.entries = entries
        self.type = type
    }

    func problem(_ key: String, _ expected: String) -> RecordFieldError {
        RecordFieldError(description: "\(type).\(key) must be \(expected)")
    }

    func optionalString(_ key: String) throws(RecordFieldError) -> String? {
        switch entries[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw problem(key, "a string")
        }
    }

    func string(_ key: String) throws(RecordFieldError) -> String {
        guard let text = try optionalString(key) else { throw problem(key, "present") }
        return text
    }

    func cidr(_ key: String) throws(RecordFieldError) -> CIDR {
        let text = try string(key)
        guard let cidr = CIDR(text) else { throw problem(key, "a CIDR (got \"\(text)\")") }
        return cidr
    }

    func array(_ key: String) throws(RecordFieldError) -> [JSONValue] {
        guard case .array(let items)? = entries[key] else { throw problem(key, "an array") }
        return items
    }
}

extension JSONValue {
    init(_ text: String?) { self = text.map(JSONValue.string) ?? .null }
}

extension [String: JSONValue] {
    /// Drops nil fields, as Codable's synthesized `encodeIfPresent` does.
    fileprivate var withoutNulls: [String: JSONValue] { filter { $0.value != .null } }
}

extension AllocationAttributes: JSONRecord {
    init(json: JSONValue) throws(RecordFieldError) {
        let fields = try RecordFields(json, type: "attributes")
        self.init(
            handleID: try fields.string("handleID"), namespace: try fields.optionalString("namespace"),
            pod: try fields.optionalString("pod"), node: try fields.optionalString("node"),
            containerID: try fields.optionalString("containerID"), type: try fields.optionalString("type"),
            allocatedAt: try fields.optionalString("allocatedAt"))
    }

    var json: JSONValue {
        .object(
            [
                "handleID": .string(handleID), "namespace": JSONValue(namespace), "pod": JSONValue(pod),
                "node": JSONValue(node), "containerID": JSONValue(containerID), "type": JSONValue(type),
                "allocatedAt": JSONValue(allocatedAt),
            ]
            .withoutNulls)
    }
}

extension AllocationBlock: JSONRecord {
    init(json: JSONValue) throws(RecordFieldError) {
        let fields = try RecordFields(json, type: "block")
        self.init(cidr: try fields.cidr("cidr"), affinity: try fields.optionalString("affinity"), now: "")
        var allocations: [Int?] = []
        for item in try fields.array("allocations") {
            switch item {
            case .null: allocations.append(nil)
            case .int(let index): allocations.append(index)
            default: throw fields.problem("allocations", "an array of numbers and nulls")
            }
        }
        var unallocated: [Int] = []
        for item in try fields.array("unallocated") {
            guard case .int(let ordinal) = item else { throw fields.problem("unallocated", "an array of numbers") }
            unallocated.append(ordinal)
        }
        var attributes: [AllocationAttributes] = []
        for item in try fields.array("attributes") { attributes.append(try AllocationAttributes(json: item)) }
        self.allocations = allocations
        self.unallocated = unallocated
        self.attributes = attributes
        self.emptySince = try fields.optionalString("emptySince")
    }

    var json: JSONValue {
        .object(
            [
                "cidr": .string(cidr.description), "affinity": JSONValue(affinity),
                "allocations": .array(allocations.map { $0.map(JSONValue.int) ?? .null }),
                "unallocated": .array(unallocated.map(JSONValue.int)),
                "attributes": .array(attributes.map(\.json)), "emptySince": JSONValue(emptySince),
            ]
            .withoutNulls)
    }
}

extension BlockAffinity: JSONRecord {
    init(json: JSONValue) throws(RecordFieldError) {
        let fields = try RecordFields(json, type: "affinity")
        let stateText = try fields.string("state")
        guard let state = State(rawValue: stateText) else {
            throw fields.problem("state", "pending, confirmed or pendingDeletion (got \"\(stateText)\")")
        }
        self.init(node: try fields.string("node"), cidr: try fields.cidr("cidr"), state: state)
    }

    var json: JSONValue {
        .object(["node": .string(node), "cidr": .string(cidr.description), "state": .string(state.rawValue)])
    }
}

extension IPAMHandle: JSONRecord {
    init(json: JSONValue) throws(RecordFieldError) {
        let fields = try RecordFields(json, type: "handle")
        var blocks: [CIDR] = []
        for item in try fields.array("blocks") {
            guard case .string(let text) = item, let cidr = CIDR(text) else {
                throw fields.problem("blocks", "an array of CIDRs")
            }
            blocks.append(cidr)
        }
        self.init(handleID: try fields.string("handleID"), blocks: blocks)
    }

    var json: JSONValue {
        .object(["handleID": .string(handleID), "blocks": .array(blocks.map { .string($0.description) })])
    }
}
