import Foundation
import TabbyCore
import TabbyStore
import Testing

@testable import TabbyIPAM

/// The hand-written record JSON must be what the Codable conformances read and write.
@Suite struct RecordJSONTests {
    static func codable(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    static func sampleBlock() -> AllocationBlock {
        var block = AllocationBlock(
            cidr: CIDR("10.1.2.0/29")!, affinity: "host:node-a", now: "2026-11-28T13:00:00.000Z")
        let owner = AllocationAttributes(
            handleID: "net.abc", namespace: "default", pod: "web-1", node: "node-a", containerID: "abc",
            allocatedAt: "2026-11-28T13:00:01.000Z")
        _ = block.assign(count: 3, owner: owner, reserved: [], now: "x")
        _ = block.assign(
            count: 1, owner: AllocationAttributes(handleID: "tunnel", type: "vxlanTunnelAddress"), reserved: [],
            now: "x")
        _ = block.release([block.address(ordinal: 1)], handleID: nil, now: "y")
        return block
    }

    @Test func blocksMatchCodableByteForByte() throws {
        let block = Self.sampleBlock()
        let written = JSONCoding.encode(block)
        #expect(written == (try Self.codable(block)))
        #expect(try JSONDecoder().decode(AllocationBlock.self, from: written) == block)
        let read = try JSONCoding.decode(
            AllocationBlock.self, KeyValue(key: "k", value: try Self.codable(block), createRevision: 1, modRevision: 1))
        #expect(read == block)
    }

    @Test func handlesAndAffinitiesMatchCodable() throws {
        let handle = IPAMHandle(handleID: "net.abc", blocks: [CIDR("10.1.2.0/26")!, CIDR("fd00::/122")!])
        let affinity = BlockAffinity(node: "node-a", cidr: CIDR("10.1.2.0/26")!, state: .pendingDeletion)
        #expect(JSONCoding.encode(handle) == (try Self.codable(handle)))
        #expect(JSONCoding.encode(affinity) == (try Self.codable(affinity)))
        let kv = { (data: Data) in KeyValue(key: "k", value: data, createRevision: 1, modRevision: 1) }
        #expect(try JSONCoding.decode(IPAMHandle.self, kv(try Self.codable(handle))) == handle)
        #expect(try JSONCoding.decode(BlockAffinity.self, kv(try Self.codable(affinity))) == affinity)
    }

    @Test(arguments: [
        (#"{"handleID": 7, "blocks": []}"#, "handle.handleID must be a string"),
        (#"{"handleID": "h", "blocks": ["10.0.0.0/33"]}"#, "handle.blocks must be an array of CIDRs"),
        (#"{"handleID": "h""#, "invalid JSON"),
        (#"[]"#, "handle is not a JSON object"),
    ])
    func corruptedRecordsNameTheKeyAndField(text: String, reason: String) {
        let kv = KeyValue(key: "/tabby/ipam/v2/handles/h", value: Data(text.utf8), createRevision: 1, modRevision: 1)
        #expect {
            try JSONCoding.decode(IPAMHandle.self, kv)
        } throws: { error in
            guard case IPAMError.corruptedRecord(let key, let found) = error else { return false }
            return key == kv.key && found.contains(reason)
        }
    }
}
