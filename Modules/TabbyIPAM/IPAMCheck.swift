import Foundation
import TabbyCore
import TabbyStore

/// What `tabbyctl ipam check` finds; also the JSON report `ipam release --from-report` reads.
public struct IPAMReport: Codable, Sendable, Hashable {
    public struct Allocation: Codable, Sendable, Hashable {
        public var ip: String
        public var block: String
        public var handle: String
        public var node: String?
        public var namespace: String?
        public var pod: String?
        public var containerID: String?
        public var allocatedAt: String?
        public var reason: String
    }

    public struct Duplicate: Codable, Sendable, Hashable {
        public var ip: String
        /// The workload endpoints that all claim the address.
        public var endpoints: [String]
    }

    public struct UnallocatedInUse: Codable, Sendable, Hashable {
        public var ip: String
        public var endpoint: String
    }

    public struct OrphanBlock: Codable, Sendable, Hashable {
        public var cidr: String
        public var affinity: String?
        public var reason: String
    }

    public struct OrphanAffinity: Codable, Sendable, Hashable {
        public var node: String
        public var cidr: String
        public var state: String
        public var reason: String
    }

    public var generatedAt: String
    public var gracePeriodSeconds: Int64
    public var allocatedAddresses: Int
    /// Allocations no workload endpoint (or node tunnel) uses, older than the grace period.
    public var leaked: [Allocation]
    /// Unused allocations still within the grace period (a pod being set up): not released.
    public var unusedWithinGracePeriod: [Allocation]
    /// Addresses that several workload endpoints claim.
    public var duplicates: [Duplicate]
    /// Addresses endpoints use that IPAM does not have allocated.
    public var inUseButNotAllocated: [UnallocatedInUse]
    public var orphanBlocks: [OrphanBlock]
    public var orphanAffinities: [OrphanAffinity]

    public var isClean: Bool {
        leaked.isEmpty && duplicates.isEmpty && inUseButNotAllocated.isEmpty && orphanBlocks.isEmpty
            && orphanAffinities.isEmpty
    }
}

extension IPAM {
    /// Compares IPAM's records with the workload endpoints and nodes in the datastore.
    /// Read-only; the agent runs it on a timer and `tabbyctl ipam check` on demand.
    public func check(gracePeriod: Duration = .seconds(15 * 60)) async throws(IPAMError) -> IPAMReport {
        let endpoints: [WorkloadEndpoint]
        let nodes: Set<String>
        do {
            endpoints = try await resources.list(WorkloadEndpoint.self)
            nodes = Set(try await resources.list(Node.self).map(\.metadata.name))
        } catch .store(let error) {
            throw .store(error)
        } catch {
            throw .corruptedRecord(key: ResourceClient.keyPrefix, reason: "\(error)")
        }
        var users: [IPAddress: [String]] = [:]
        for endpoint in endpoints {
            let name = "\(endpoint.metadata.namespace ?? "default")/\(endpoint.metadata.name)"
            for network in endpoint.spec.ipNetworks ?? [] {
                if let cidr = CIDR(network) { users[cidr.network, default: []].append(name) }
            }
        }
        let blocks = try await blocks()
        let affinities = try await allAffinities()
        let cutoff = now().addingTimeInterval(-Double(gracePeriod.components.seconds))

        var report = IPAMReport(
            generatedAt: timestamp(),
            gracePeriodSeconds: gracePeriod.components.seconds,
            allocatedAddresses: 0,
            leaked: [],
            unusedWithinGracePeriod: [],
            duplicates: [],
            inUseButNotAllocated: [],
            orphanBlocks: [],
            orphanAffinities: []
        )
        var allocated: Set<IPAddress> = []
        for block in blocks {
            for (address, attributes) in block.allocated {
                allocated.insert(address)
                report.allocatedAddresses += 1
                if users[address] != nil { continue }
                if attributes.type != nil, let node = attributes.node, nodes.contains(node) { continue }
                var entry = IPAMReport.Allocation(
                    ip: address.description,
                    block: block.cidr.description,
                    handle: attributes.handleID,
                    node: attributes.node,
                    namespace: attributes.namespace,
                    pod: attributes.pod,
                    containerID: attributes.containerID,
                    allocatedAt: attributes.allocatedAt,
                    reason: attributes.type.map { "\($0) of a node that no longer exists" }
                        ?? "no workload endpoint uses it"
                )
                let allocatedAt = attributes.allocatedAt.flatMap(parseTimestamp) ?? .distantPast
                if allocatedAt < cutoff {
                    report.leaked.append(entry)
                } else {
                    entry.reason += " yet (within the grace period)"
                    report.unusedWithinGracePeriod.append(entry)
                }
            }
            let affinity = block.affinityNode.flatMap { node in
                affinities.first { $0.node == node && $0.cidr == block.cidr }
            }
            if block.affinityNode == nil {
                report.orphanBlocks.append(
                    .init(
                        cidr: block.cidr.description, affinity: block.affinity, reason: "the block has no owning node"))
            } else if affinity == nil {
                report.orphanBlocks.append(
                    .init(
                        cidr: block.cidr.description, affinity: block.affinity,
                        reason: "no affinity record for its node")
                )
            }
        }
        for (address, names) in users.sorted(by: { $0.key < $1.key }) {
            if names.count > 1 { report.duplicates.append(.init(ip: address.description, endpoints: names.sorted())) }
            if !allocated.contains(address) {
                for name in names { report.inUseButNotAllocated.append(.init(ip: address.description, endpoint: name)) }
            }
        }
        let blockCIDRs = Set(blocks.map(\.cidr))
        for affinity in affinities {
            if !nodes.contains(affinity.node) {
                report.orphanAffinities.append(
                    .init(
                        node: affinity.node, cidr: affinity.cidr.description, state: affinity.state.rawValue,
                        reason: "node \(affinity.node) does not exist")
                )
            } else if !blockCIDRs.contains(affinity.cidr) {
                let reason =
                    affinity.state == .pending
                    ? "a claim that never created its block (a crashed allocator, or one in progress)"
                    : "the block does not exist"
                report.orphanAffinities.append(
                    .init(
                        node: affinity.node, cidr: affinity.cidr.description, state: affinity.state.rawValue,
                        reason: reason)
                )
            }
        }
        report.leaked.sort { $0.ip < $1.ip }
        report.unusedWithinGracePeriod.sort { $0.ip < $1.ip }
        return report
    }

    /// Releases the leaked addresses of a report, each only if it is still held by the same
    /// handle and still unused (a report can be old). Returns what was released.
    public func releaseLeaks(in report: IPAMReport) async throws(IPAMError) -> [IPAddress] {
        let fresh = try await check(gracePeriod: .seconds(report.gracePeriodSeconds))
        let stillLeaked = Set(fresh.leaked.map { "\($0.ip) \($0.handle)" })
        let addresses = report.leaked.filter { stillLeaked.contains("\($0.ip) \($0.handle)") }.compactMap {
            IPAddress($0.ip)
        }
        return try await release(addresses: addresses)
    }
}

/// Usage of one pool, for `tabbyctl ipam show`.
public struct PoolUsage: Sendable, Hashable {
    public struct BlockUsage: Sendable, Hashable {
        public var cidr: CIDR
        public var node: String?
        public var allocated: Int
        public var size: Int
        /// Addresses of this block allocated for other nodes: (address, node).
        public var borrowed: [String]
    }

    public var name: String
    public var cidr: CIDR
    public var size: UInt128
    public var allocated: Int
    public var disabled: Bool
    public var blocks: [BlockUsage]
}

extension IPAM {
    public func usage() async throws(IPAMError) -> [PoolUsage] {
        let context = try await loadContext(node: "")
        let blocks = try await blocks()
        return context.pools.map { pool in
            let inside = blocks.filter { pool.cidr.contains($0.cidr) }.sorted { $0.cidr < $1.cidr }
            let usage = inside.map { block in
                PoolUsage.BlockUsage(
                    cidr: block.cidr,
                    node: block.affinityNode,
                    allocated: block.allocatedCount,
                    size: block.allocations.count,
                    borrowed: block.allocated.compactMap { address, attributes in
                        guard let node = attributes.node, node != block.affinityNode else { return nil }
                        return "\(address) (\(node))"
                    }
                )
            }
            return PoolUsage(
                name: pool.name,
                cidr: pool.cidr,
                size: pool.cidr.size,
                allocated: usage.reduce(0) { $0 + $1.allocated },
                disabled: pool.spec.disabled ?? false,
                blocks: usage
            )
        }.sorted { $0.cidr < $1.cidr }
    }
}
