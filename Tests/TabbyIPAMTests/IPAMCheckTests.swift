import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

@Suite("IPAM check and leak release")
struct IPAMCheckTests {
    static func endpoint(_ name: String, ip: String, node: String = "node-a") -> AnyResource {
        var spec = WorkloadEndpointSpec()
        spec.node = node
        spec.ipNetworks = ["\(ip)/32"]
        return AnyResource(WorkloadEndpoint(metadata: ObjectMeta(name: name, namespace: "x"), spec: spec))
    }

    @Test func findsLeaksDuplicatesAndOrphansThenReleasesOnlyLeaks() async throws {
        var ipam = try await makeIPAM(pools: [("p", "10.20.0.0/24", 26)])
        let client = ResourceClient(store: ipam.store)
        try await client.create(AnyResource(Node(metadata: ObjectMeta(name: "node-a"))))
        let used = try await ipam.assign(AssignmentRequest(handleID: "used", node: "node-a"))[0].address
        let leaked = try await ipam.assign(
            AssignmentRequest(handleID: "leak", node: "node-a", namespace: "x", pod: "gone"))[0].address
        try await client.create(Self.endpoint("a", ip: used.description))
        try await client.create(Self.endpoint("b", ip: used.description))  // a duplicate claim
        try await client.create(Self.endpoint("c", ip: "10.20.0.200"))  // never allocated
        _ = try await ipam.assign(AssignmentRequest(handleID: "ghost", node: "node-gone"))  // node that does not exist

        let fresh = try await ipam.check(gracePeriod: .seconds(600))
        #expect(fresh.leaked.isEmpty)
        #expect(Set(fresh.unusedWithinGracePeriod.map(\.handle)) == ["leak", "ghost"])

        let later = Date().addingTimeInterval(3600)
        ipam.now = { later }
        let report = try await ipam.check(gracePeriod: .seconds(600))
        #expect(report.allocatedAddresses == 3)
        #expect(Set(report.leaked.map(\.handle)) == ["leak", "ghost"])
        #expect(report.leaked.first { $0.handle == "leak" }?.pod == "gone")
        #expect(report.duplicates.map(\.ip) == [used.description])
        #expect(report.duplicates.first?.endpoints == ["x/a", "x/b"])
        #expect(report.inUseButNotAllocated.map { "\($0.ip) \($0.endpoint)" } == ["10.20.0.200 x/c"])
        #expect(report.orphanAffinities.map(\.node) == ["node-gone"])
        #expect(!report.isClean)

        // The report survives JSON, as ipam release --from-report reads it.
        let decoded = try JSONDecoder().decode(IPAMReport.self, from: JSONEncoder().encode(report))
        #expect(decoded == report)

        // One leak gets a workload before the release: it must not be freed.
        try await client.create(Self.endpoint("d", ip: leaked.description))
        let released = try await ipam.releaseLeaks(in: decoded)
        #expect(released.count == 1)
        #expect(!released.contains(leaked))
        #expect(try await ipam.addresses(handleID: "leak") == [leaked])
        #expect(try await ipam.addresses(handleID: "used") == [used])
    }

    @Test func usageCountsPoolsBlocksAndBorrowing() async throws {
        let ipam = try await makeIPAM(pools: [("p", "10.21.0.0/25", 26)], maxBlocksPerHost: 1)
        _ = try await ipam.assign(AssignmentRequest(handleID: "a", node: "node-a", ipv4Count: 64))
        _ = try await ipam.assign(AssignmentRequest(handleID: "b", node: "node-b", ipv4Count: 2))
        _ = try await ipam.assign(AssignmentRequest(handleID: "a2", node: "node-a", ipv4Count: 1))
        let usage = try await ipam.usage()
        #expect(usage.count == 1)
        #expect(usage[0].size == 128)
        #expect(usage[0].allocated == 67)
        #expect(
            usage[0].blocks.map(\.node) == ["node-a", "node-b"] || usage[0].blocks.map(\.node) == ["node-b", "node-a"])
        #expect(usage[0].blocks.flatMap(\.borrowed).count == 1)
        #expect(usage[0].blocks.flatMap(\.borrowed).first?.hasSuffix("(node-a)") == true)
    }
}
