import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// A store with the given pools (and optional IPAM configuration and reservations).
func makeIPAM(
    pools: [(String, String, Int?)],
    strictAffinity: Bool? = nil,
    maxBlocksPerHost: Int? = nil,
    reserved: [String] = []
) async throws -> IPAM {
    let store = InMemoryStore()
    let client = ResourceClient(store: store)
    for (name, cidr, blockSize) in pools {
        var spec = IPPoolSpec(cidr: cidr)
        spec.blockSize = blockSize
        try await client.create(AnyResource(IPPool(metadata: ObjectMeta(name: name), spec: spec)))
    }
    if strictAffinity != nil || maxBlocksPerHost != nil {
        var spec = IPAMConfigurationSpec()
        spec.strictAffinity = strictAffinity
        spec.maxBlocksPerHost = maxBlocksPerHost
        try await client.create(AnyResource(IPAMConfiguration(metadata: ObjectMeta(name: "default"), spec: spec)))
    }
    if !reserved.isEmpty {
        var spec = IPReservationSpec()
        spec.reservedCIDRs = reserved
        try await client.create(AnyResource(IPReservation(metadata: ObjectMeta(name: "reserved"), spec: spec)))
    }
    return IPAM(store: store)
}

@Suite("Block IPAM")
struct IPAMTests {
    @Test func assignsFromTheNodesOwnBlock() async throws {
        let ipam = try await makeIPAM(pools: [("default", "10.65.0.0/16", 26)])
        let first = try await ipam.assign(
            AssignmentRequest(handleID: "net.c1", node: "node-a", namespace: "x", pod: "a"))
        let second = try await ipam.assign(AssignmentRequest(handleID: "net.c2", node: "node-a"))
        #expect(first.count == 1 && second.count == 1)
        #expect(first[0].block == second[0].block)
        #expect(first[0].pool == CIDR("10.65.0.0/16"))
        #expect(first[0].address != second[0].address)
        let affinities = try await ipam.allAffinities()
        #expect(affinities.map(\.state) == [.confirmed])
        #expect(affinities.first?.node == "node-a")
        // Another node gets its own block.
        let other = try await ipam.assign(AssignmentRequest(handleID: "net.c3", node: "node-b"))
        #expect(other[0].block != first[0].block)
        #expect(try await ipam.addresses(handleID: "net.c1") == [first[0].address])
    }

    @Test func dualStack() async throws {
        let ipam = try await makeIPAM(pools: [("v4", "10.65.0.0/16", nil), ("v6", "fd00:65::/48", nil)])
        let result = try await ipam.assign(AssignmentRequest(handleID: "h", node: "n", ipv4Count: 1, ipv6Count: 1))
        #expect(result.map(\.address.family) == [.v4, .v6])
        #expect(result[0].block.prefixLength == 26)
        #expect(result[1].block.prefixLength == 122)
    }

    @Test func releaseByHandleAndByAddressIsIdempotent() async throws {
        let ipam = try await makeIPAM(pools: [("default", "10.65.0.0/16", 26)])
        let a = try await ipam.assign(AssignmentRequest(handleID: "h1", node: "n", ipv4Count: 3))
        let b = try await ipam.assign(AssignmentRequest(handleID: "h2", node: "n"))
        #expect(Set(try await ipam.release(handleID: "h1")) == Set(a.map(\.address)))
        #expect(try await ipam.release(handleID: "h1") == [])
        #expect(try await ipam.addresses(handleID: "h2") == [b[0].address])
        #expect(try await ipam.release(addresses: [b[0].address]) == [b[0].address])
        #expect(try await ipam.release(addresses: [b[0].address]) == [])
        // Freed addresses go to the back of the queue: the next one is new.
        let c = try await ipam.assign(AssignmentRequest(handleID: "h3", node: "n"))
        #expect(!a.map(\.address).contains(c[0].address))
    }

    @Test func borrowsWhenTheNodeCannotClaimABlock() async throws {
        // One /24 pool of /26 blocks, two blocks per host at most: node-a claims two, node-b the
        // other two, then node-a borrows from node-b's blocks.
        let ipam = try await makeIPAM(pools: [("small", "10.1.0.0/24", 26)], maxBlocksPerHost: 2)
        let a = try await ipam.assign(AssignmentRequest(handleID: "a", node: "node-a", ipv4Count: 100))
        _ = try await ipam.assign(AssignmentRequest(handleID: "b", node: "node-b", ipv4Count: 70))
        // node-a has 28 addresses left in its own blocks; 60 needs 32 of node-b's.
        let borrowed = try await ipam.assign(AssignmentRequest(handleID: "a2", node: "node-a", ipv4Count: 60))
        let blocks = try await ipam.blocks()
        let nodeB = Set(blocks.filter { $0.affinityNode == "node-b" }.map(\.cidr))
        #expect(borrowed.contains { nodeB.contains($0.block) })
        let all = a.map(\.address) + borrowed.map(\.address)
        #expect(Set(all).count == all.count)
    }

    @Test func strictAffinityForbidsBorrowingAndSaysSo() async throws {
        let ipam = try await makeIPAM(pools: [("small", "10.1.0.0/25", 26)], strictAffinity: true)
        _ = try await ipam.assign(AssignmentRequest(handleID: "b", node: "node-b", ipv4Count: 1))
        _ = try await ipam.assign(AssignmentRequest(handleID: "a", node: "node-a", ipv4Count: 64))
        await #expect {
            try await ipam.assign(AssignmentRequest(handleID: "a2", node: "node-a", ipv4Count: 1))
        } throws: { error in
            let text = "\(error)"
            return text.contains("10.1.0.0/25") && text.contains("strictAffinity")
        }
    }

    @Test func exhaustionNamesThePoolsAndLeavesNothingBehind() async throws {
        let ipam = try await makeIPAM(pools: [("tiny", "10.2.0.0/26", 26)])
        _ = try await ipam.assign(AssignmentRequest(handleID: "fill", node: "n", ipv4Count: 60))
        await #expect(throws: IPAMError.self) {
            try await ipam.assign(AssignmentRequest(handleID: "big", node: "n", ipv4Count: 10))
        }
        // The 4 addresses found before running out were released again.
        #expect(try await ipam.addresses(handleID: "big") == [])
        let four = try await ipam.assign(AssignmentRequest(handleID: "rest", node: "n", ipv4Count: 4))
        #expect(four.count == 4)
        do {
            _ = try await ipam.assign(AssignmentRequest(handleID: "more", node: "n"))
            Issue.record("expected exhaustion")
        } catch {
            #expect("\(error)".hasPrefix("IPv4 pools exhausted: asked for 1 address(es), found 0 in 10.2.0.0/26"))
        }
    }

    @Test func reservationsAreNeverHandedOut() async throws {
        let ipam = try await makeIPAM(pools: [("p", "10.3.0.0/26", 26)], reserved: ["10.3.0.0/28", "10.3.0.63"])
        let all = try await ipam.assign(AssignmentRequest(handleID: "h", node: "n", ipv4Count: 47))
        let reserved = [CIDR("10.3.0.0/28")!, CIDR("10.3.0.63/32")!]
        #expect(!all.contains { address in reserved.contains { $0.contains(address.address) } })
        await #expect(throws: IPAMError.self) { try await ipam.assign(AssignmentRequest(handleID: "h2", node: "n")) }
    }

    @Test func poolFiltering() async throws {
        let ipam = try await makeIPAM(pools: [("a", "10.4.0.0/24", 26), ("b", "10.5.0.0/24", 26)])
        let fromB = try await ipam.assign(AssignmentRequest(handleID: "h", node: "n", ipv4Pools: ["10.5.0.0/24"]))
        #expect(fromB[0].pool == CIDR("10.5.0.0/24"))
        let byName = try await ipam.assign(AssignmentRequest(handleID: "h2", node: "n", ipv4Pools: ["a"]))
        #expect(byName[0].pool == CIDR("10.4.0.0/24"))
        await #expect {
            try await ipam.assign(AssignmentRequest(handleID: "h3", node: "n", ipv4Pools: ["10.9.0.0/24"]))
        } throws: { error in
            "\(error)".contains("the requested pool \"10.9.0.0/24\" does not exist")
        }
        await #expect {
            try await ipam.assign(AssignmentRequest(handleID: "h4", node: "n", ipv4Count: 0, ipv6Count: 1))
        } throws: { error in
            "\(error)".contains("there is no IPv6 IPPool")
        }
    }

    @Test func specificAddress() async throws {
        let ipam = try await makeIPAM(pools: [("p", "10.6.0.0/24", 26)])
        let request = AssignmentRequest(handleID: "h", node: "n")
        let one = try await ipam.assign(address: IPAddress("10.6.0.77")!, request: request)
        #expect(one.block == CIDR("10.6.0.64/26"))
        await #expect(throws: IPAMError.unavailableAddress(IPAddress("10.6.0.77")!, reason: "it is already allocated"))
        {
            try await ipam.assign(address: IPAddress("10.6.0.77")!, request: request)
        }
        await #expect(throws: IPAMError.self) {
            try await ipam.assign(address: IPAddress("10.7.0.1")!, request: request)
        }
    }

    @Test func emptyBlocksLoseTheirAffinityAfterTheGracePeriod() async throws {
        var ipam = try await makeIPAM(pools: [("p", "10.8.0.0/24", 26)])
        _ = try await ipam.assign(AssignmentRequest(handleID: "h", node: "n"))
        try await ipam.release(handleID: "h")
        #expect(try await ipam.releaseEmptyBlocks(olderThan: .seconds(60)) == [])
        let later = Date().addingTimeInterval(120)
        ipam.now = { later }
        let released = try await ipam.releaseEmptyBlocks(olderThan: .seconds(60))
        #expect(released.count == 1)
        #expect(released.first.map { CIDR("10.8.0.0/24")!.contains($0) } == true)
        #expect(try await ipam.blocks().isEmpty)
        #expect(try await ipam.allAffinities().isEmpty)
    }

    @Test func concurrentAssignmentsNeverDuplicate() async throws {
        let ipam = try await makeIPAM(pools: [("p", "10.9.0.0/24", 26)], maxBlocksPerHost: 2)
        let results = try await withThrowingTaskGroup(of: [IPAddress].self) { group in
            for task in 0..<8 {
                group.addTask {
                    var mine: [IPAddress] = []
                    for index in 0..<25 {
                        let node = task % 2 == 0 ? "node-a" : "node-b"
                        mine += try await ipam.assign(AssignmentRequest(handleID: "h-\(task)-\(index)", node: node))
                            .map(\.address)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(results.count == 200)
        #expect(Set(results).count == 200)
    }
}
