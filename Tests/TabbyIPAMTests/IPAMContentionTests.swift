import Foundation
import TabbyCore
import TabbyStore
import TabbyTestSupport
import Testing

@testable import TabbyIPAM

@Suite("Block IPAM under contention")
struct IPAMContentionTests {
    /// Many CNI calls of one node start claiming the same block at once; the losers must wait for
    /// the winner and share its block, not spin until they give up (or claim a block each).
    @Test func aCallThatLosesAClaimToASiblingTakesFromTheSiblingsBlock() async throws {
        // The block node-a claims first (where the search starts depends on the node's name).
        let probe = try await makeIPAM(pools: [("default", "10.65.0.0/24", 26)])
        let block = try await probe.assign(AssignmentRequest(handleID: "probe", node: "node-a"))[0].block

        let ipam = try await makeIPAM(pools: [("default", "10.65.0.0/24", 26)])
        // A sibling process has written its pending claim on that block, and finishes the claim
        // (block, then confirmed affinity) a little later.
        let key = IPAMKeys.affinity(node: "node-a", cidr: block)
        let pending = BlockAffinity(node: "node-a", cidr: block, state: .pending)
        let claim = try await ipam.store.create(key, value: JSONCoding.encode(pending))
        let sibling = Task {
            try await Task.sleep(for: .milliseconds(30))
            let record = AllocationBlock(cidr: block, affinity: "host:node-a", now: "2026-11-28T00:00:00Z")
            try await ipam.store.create(IPAMKeys.block(block), value: JSONCoding.encode(record))
            var confirmed = pending
            confirmed.state = .confirmed
            try await ipam.store.update(key, value: JSONCoding.encode(confirmed), expectedRevision: claim.modRevision)
        }
        let assigned = try await ipam.assign(AssignmentRequest(handleID: "h", node: "node-a"))
        try await sibling.value
        #expect(assigned.map(\.block) == [block])
        #expect(try await ipam.blocks().map(\.cidr) == [block])
    }
}
