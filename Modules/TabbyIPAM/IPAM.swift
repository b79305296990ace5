import Foundation
import TabbyCore
import TabbyStore

/// What a caller asks IPAM for: addresses of each family for one handle on one node.
public struct AssignmentRequest: Sendable {
    public var handleID: String
    public var node: String
    public var ipv4Count: Int
    public var ipv6Count: Int
    /// Restrict to these pools (the CNI config's `ipv4_pools`/`ipv6_pools`, by CIDR or pool name).
    public var ipv4Pools: [String]?
    public var ipv6Pools: [String]?
    public var attributes: AllocationAttributes

    public init(
        handleID: String,
        node: String,
        ipv4Count: Int = 1,
        ipv6Count: Int = 0,
        ipv4Pools: [String]? = nil,
        ipv6Pools: [String]? = nil,
        namespace: String? = nil,
        pod: String? = nil,
        containerID: String? = nil,
        type: String? = nil
    ) {
        self.handleID = handleID
        self.node = node
        self.ipv4Count = ipv4Count
        self.ipv6Count = ipv6Count
        self.ipv4Pools = ipv4Pools
        self.ipv6Pools = ipv6Pools
        self.attributes = AllocationAttributes(
            handleID: handleID,
            namespace: namespace,
            pod: pod,
            node: node,
            containerID: containerID,
            type: type
        )
    }
}

/// An assigned address with the pool and block it came from.
public struct Assignment: Sendable, Hashable {
    public var address: IPAddress
    public var pool: CIDR
    public var block: CIDR
}

/// Calico-style block IPAM on a `KeyValueStore`.
///
/// Pools are cut into blocks; a node claims blocks through affinities and allocates from them
/// first, then claims a new block, then (unless `strictAffinity`) borrows from other nodes'
/// blocks. Every write is a compare-and-swap retried a bounded number of times, so concurrent
/// allocators (many CNI processes, several nodes) never hand out an address twice.
public struct IPAM: Sendable {
    public let store: any KeyValueStore
    let resources: ResourceClient
    /// Compare-and-swap attempts per record before giving up (Calico: 100).
    public var maxAttempts = 100
    /// Injected for tests: the current time.
    public var now: @Sendable () -> Date = { Date() }

    public init(store: any KeyValueStore) {
        self.store = store
        self.resources = ResourceClient(store: store)
    }

    // MARK: Assignment

    /// Assigns the requested addresses. On failure nothing stays assigned to the handle from this
    /// call: a partial assignment is released before the error is thrown.
    public func assign(_ request: AssignmentRequest) async throws(IPAMError) -> [Assignment] {
        guard request.ipv4Count >= 0, request.ipv6Count >= 0, request.ipv4Count + request.ipv6Count > 0 else {
            throw .invalidRequest(
                "ask for at least one address (ipv4Count \(request.ipv4Count), ipv6Count \(request.ipv6Count))")
        }
        guard !request.handleID.isEmpty, !request.handleID.contains("/") else {
            throw .invalidRequest("handle \"\(request.handleID)\" must be non-empty and contain no '/'")
        }
        let context = try await loadContext(node: request.node)
        var result: [Assignment] = []
        do {
            for (family, count, names) in [
                (IPFamily.v4, request.ipv4Count, request.ipv4Pools), (.v6, request.ipv6Count, request.ipv6Pools),
            ]
            where count > 0 {
                let pools = try context.pools(family: family, node: request.node, requested: names)
                result += try await assign(
                    count: count, family: family, pools: pools, request: request, context: context)
            }
        } catch {
            if !result.isEmpty { _ = try? await release(addresses: result.map(\.address)) }
            throw error
        }
        return result
    }

    /// Assigns one specific address (CNI's `ips` argument), in whatever block holds it.
    public func assign(address: IPAddress, request: AssignmentRequest) async throws(IPAMError) -> Assignment {
        let context = try await loadContext(node: request.node)
        guard let pool = context.enabledPools.first(where: { $0.cidr.contains(address) }) else {
            throw .unavailableAddress(address, reason: "it is in no enabled IP pool")
        }
        if context.reserved.contains(where: { $0.contains(address) }) {
            throw .unavailableAddress(address, reason: "it is reserved by an IPReservation")
        }
        let blockCIDR = CIDR(network: address, prefixLength: pool.blockSize)
        var owner = request.attributes
        owner.allocatedAt = timestamp()
        for _ in 0..<maxAttempts {
            let handle = try await handleWrite(request.handleID, block: blockCIDR)
            let existing = try await read(AllocationBlock.self, key: IPAMKeys.block(blockCIDR))
            var block = existing?.value ?? AllocationBlock(cidr: blockCIDR, affinity: nil, now: timestamp())
            guard let ordinal = block.ordinal(of: address), block.allocations[ordinal] == nil else {
                throw .unavailableAddress(address, reason: "it is already allocated")
            }
            block.unallocated.removeAll { $0 == ordinal }
            block.allocations[ordinal] = block.attributes.count
            block.attributes.append(owner)
            block.emptySince = nil
            let blockWrite = storeWrite(block, key: IPAMKeys.block(blockCIDR), revision: existing?.revision)
            if try await commit([handle, blockWrite].compactMap { $0 }) {
                return Assignment(address: address, pool: pool.cidr, block: blockCIDR)
            }
        }
        throw .contention(operation: "assigning \(address)", attempts: maxAttempts)
    }

    private func assign(count: Int, family: IPFamily, pools: [IPPoolSpec], request: AssignmentRequest, context: Context)
        async throws(IPAMError) -> [Assignment]
    {
        var assigned: [Assignment] = []
        var owner = request.attributes
        owner.allocatedAt = timestamp()
        let poolCIDRs = pools.map(\.network)
        func inPools(_ block: CIDR) -> IPPoolSpec? { pools.first { $0.network.contains(block) } }

        // 1. The node's own blocks.
        let affinities = try await affinities(node: request.node, family: family)
        var affineBlocks = affinities.filter { $0.state == .confirmed && inPools($0.cidr) != nil }.map(\.cidr).sorted()
        for block in affineBlocks where assigned.count < count {
            assigned += try await assign(
                count: count - assigned.count, in: block, owner: owner, pools: pools, context: context,
                onlyAffinity: request.node)
        }

        // 2. New blocks, within maxBlocksPerHost.
        var ownedBlocks = affinities.filter { $0.state != .pendingDeletion }.count
        var claimFailures = 0
        while assigned.count < count && context.configuration.autoAllocateBlocks {
            let limit = context.configuration.maxBlocksPerHost
            if limit > 0 && ownedBlocks >= limit { break }
            guard let claimed = try await claimBlock(node: request.node, pools: pools, context: context) else { break }
            guard let block = claimed else {
                claimFailures += 1  // lost a race for that block
                if claimFailures >= maxAttempts {
                    throw .contention(operation: "claiming a block", attempts: claimFailures)
                }
                // Most often a sibling process of this node (another CNI call) holds the claim,
                // and the block will have room for this call too once it is confirmed. Claiming
                // again at once only competes for the write lock the winner needs to finish (50
                // ADDs at once on the SQLite store lost 100 races in a row that way): wait a
                // little, then take from the node's blocks that appeared meanwhile.
                await Self.backOff(attempt: claimFailures)
                let fresh = try await self.affinities(node: request.node, family: family)
                ownedBlocks = max(ownedBlocks, fresh.filter { $0.state != .pendingDeletion }.count)
                for affinity in fresh
                where affinity.state == .confirmed && inPools(affinity.cidr) != nil
                    && !affineBlocks.contains(affinity.cidr)
                {
                    guard assigned.count < count else { break }
                    affineBlocks.append(affinity.cidr)
                    assigned += try await assign(
                        count: count - assigned.count, in: affinity.cidr, owner: owner, pools: pools,
                        context: context, onlyAffinity: request.node)
                }
                continue
            }
            ownedBlocks += 1
            affineBlocks.append(block)
            assigned += try await assign(
                count: count - assigned.count, in: block, owner: owner, pools: pools, context: context,
                onlyAffinity: request.node)
        }

        // 3. Before borrowing, look again at the node's own blocks: sibling processes (other CNI
        // calls on this node) may have claimed blocks since we read the affinities, and those
        // may have room. Blocks only fill up meanwhile, so after this pass every own block that
        // had room has been used, and borrowing takes only what the node really cannot hold.
        if assigned.count < count {
            let fresh = try await self.affinities(node: request.node, family: family)
            for affinity in fresh
            where affinity.state == .confirmed && inPools(affinity.cidr) != nil && !affineBlocks.contains(affinity.cidr)
            {
                guard assigned.count < count else { break }
                affineBlocks.append(affinity.cidr)
                assigned += try await assign(
                    count: count - assigned.count, in: affinity.cidr, owner: owner, pools: pools, context: context,
                    onlyAffinity: request.node)
            }
        }

        // 4. Borrow from other nodes' blocks.
        if assigned.count < count && !context.configuration.strictAffinity {
            let listing = try await list(prefix: IPAMKeys.blocks(family))
            for kv in listing {
                guard assigned.count < count else { break }
                let block = try JSONCoding.decode(AllocationBlock.self, kv)
                guard inPools(block.cidr) != nil, !affineBlocks.contains(block.cidr), !block.unallocated.isEmpty else {
                    continue
                }
                assigned += try await assign(
                    count: count - assigned.count, in: block.cidr, owner: owner, pools: pools, context: context,
                    onlyAffinity: nil)
            }
        }

        if assigned.count < count {
            var reasons: [String] = []
            if context.configuration.strictAffinity {
                reasons.append("strictAffinity forbids borrowing from other nodes' blocks")
            }
            if context.configuration.maxBlocksPerHost > 0 {
                reasons.append(
                    "node \(request.node) may hold at most \(context.configuration.maxBlocksPerHost) block(s) (maxBlocksPerHost)"
                )
            }
            if !context.configuration.autoAllocateBlocks { reasons.append("autoAllocateBlocks is off") }
            if reasons.isEmpty { reasons.append("every block is claimed and every address allocated or reserved") }
            let partial = assigned
            if !partial.isEmpty { _ = try? await release(addresses: partial.map(\.address)) }
            throw .exhausted(
                family: family, requested: count, assigned: partial.count, pools: poolCIDRs,
                reason: reasons.joined(separator: "; "))
        }
        return assigned
    }

    /// Takes up to `count` addresses from one block with compare-and-swap; with `onlyAffinity`,
    /// only while the block is still that node's.
    private func assign(
        count: Int, in cidr: CIDR, owner: AllocationAttributes, pools: [IPPoolSpec], context: Context,
        onlyAffinity: String?
    )
        async throws(IPAMError) -> [Assignment]
    {
        guard let pool = pools.first(where: { $0.network.contains(cidr) }) else { return [] }
        for _ in 0..<maxAttempts {
            // The handle's record names the block in the same commit that takes the addresses:
            // a crash never leaves an address its handle does not lead to.
            let handle = try await handleWrite(owner.handleID, block: cidr)
            guard let existing = try await read(AllocationBlock.self, key: IPAMKeys.block(cidr)) else { return [] }
            var block = existing.value
            if let node = onlyAffinity, block.affinityNode != node { return [] }
            let taken = block.assign(count: count, owner: owner, reserved: context.reserved, now: timestamp())
            if taken.isEmpty { return [] }
            let blockWrite = storeWrite(block, key: IPAMKeys.block(cidr), revision: existing.revision)
            if try await commit([handle, blockWrite].compactMap { $0 }) {
                return taken.map { Assignment(address: $0, pool: pool.network, block: cidr) }
            }
        }
        throw .contention(operation: "assigning from block \(cidr)", attempts: maxAttempts)
    }

    /// A random pause of up to 1, 2, 4 ... 16 ms after the `attempt`th lost claim, so that the
    /// losers of one race do not all come back together.
    private static func backOff(attempt: Int) async {
        let limit = 1 << min(attempt - 1, 4)
        try? await Task.sleep(for: .microseconds(Int.random(in: 100...limit * 1000)))
    }

    /// Claims a free block of one of `pools` for `node`: pending affinity, block, confirmed
    /// affinity. Returns nil when no block is free, `.some(nil)` when another node won the race.
    private func claimBlock(node: String, pools: [IPPoolSpec], context: Context) async throws(IPAMError) -> CIDR?? {
        let family = pools[0].network.family
        let existing = Set(
            try await list(prefix: IPAMKeys.blocks(family)).compactMap { kv in
                try? JSONCoding.decode(AllocationBlock.self, kv).cidr
            })
        // Start each node at a different place in the pool so nodes rarely race for one block.
        var hasher = Hasher.stable
        hasher.combine(node)
        for pool in pools {
            guard let subnets = try? pool.network.subnets(prefixLength: pool.blockSize ?? 26) else { continue }
            let total = subnets.count
            let start = UInt128(hasher.value) % max(total, 1)
            var index: UInt128 = 0
            while index < total {
                let candidate = subnets.subnet(at: (start + index) % total)!
                index += 1
                if existing.contains(candidate) { continue }
                if context.reserved.contains(where: { $0.contains(candidate) }) { continue }
                let affinityKey = IPAMKeys.affinity(node: node, cidr: candidate)
                let pending = BlockAffinity(node: node, cidr: candidate, state: .pending)
                let ours: Revision
                do {
                    ours = try await store.create(affinityKey, value: JSONCoding.encode(pending)).modRevision
                } catch .alreadyExists(_) {
                    // Another process of this node is claiming this very block (or a crashed
                    // claim left its pending affinity, which ipam check reports): never touch a
                    // claim that is not ours; look for another block.
                    return .some(nil)
                } catch {
                    throw .store(error)
                }
                let block = AllocationBlock(cidr: candidate, affinity: "host:\(node)", now: timestamp())
                do {
                    try await store.create(IPAMKeys.block(candidate), value: JSONCoding.encode(block))
                } catch .alreadyExists(_) {
                    // Another node won the block: withdraw our own pending claim, and only ours.
                    _ = try? await store.delete(affinityKey, expectedRevision: ours)
                    return .some(nil)
                } catch {
                    throw .store(error)
                }
                try await confirm(affinityKey, pending)
                return .some(candidate)
            }
        }
        return nil
    }

    private func confirm(_ key: String, _ affinity: BlockAffinity) async throws(IPAMError) {
        var confirmed = affinity
        confirmed.state = .confirmed
        for _ in 0..<maxAttempts {
            guard let current = try await read(BlockAffinity.self, key: key) else {
                _ = try await write(confirmed, key: key, revision: nil)
                return
            }
            if try await write(confirmed, key: key, revision: current.revision) { return }
        }
        throw .contention(operation: "confirming affinity \(key)", attempts: maxAttempts)
    }

    /// The write that adds `block` to the handle's record, nil when the record already names it.
    private func handleWrite(_ handleID: String, block: CIDR) async throws(IPAMError) -> StoreWrite? {
        let key = IPAMKeys.handle(handleID)
        let current = try await read(IPAMHandle.self, key: key)
        var handle = current?.value ?? IPAMHandle(handleID: handleID, blocks: [])
        if handle.blocks.contains(block) { return nil }
        handle.blocks.append(block)
        return storeWrite(handle, key: key, revision: current?.revision)
    }

    // MARK: Release

    /// Releases everything `handleID` holds; returns the addresses freed (none is not an error:
    /// release is idempotent, as CNI DEL must be).
    @discardableResult
    public func release(handleID: String) async throws(IPAMError) -> [IPAddress] {
        let key = IPAMKeys.handle(handleID)
        let handle = try await read(IPAMHandle.self, key: key)
        // Without a handle record (never written, or already released), scan every block: cheap,
        // and it guarantees nothing is left behind.
        let blocks: [CIDR]
        if let handle {
            blocks = handle.value.blocks
        } else {
            blocks = try await list(prefix: IPAMKeys.allBlocks).compactMap { kv in
                try? JSONCoding.decode(AllocationBlock.self, kv).cidr
            }
        }
        var freed: [IPAddress] = []
        for cidr in blocks {
            freed += try await releaseInBlock(cidr, addresses: nil, handleID: handleID)
        }
        if let handle {
            do {
                try await store.delete(key, expectedRevision: handle.revision)
            } catch .notFound(_) {
            } catch .conflict(_, _, _) {
                // Someone assigned to this handle meanwhile: keep the record.
            } catch {
                throw .store(error)
            }
        }
        return freed
    }

    /// Releases specific addresses, whoever holds them; returns those that were allocated.
    @discardableResult
    public func release(addresses: [IPAddress]) async throws(IPAMError) -> [IPAddress] {
        let blocks = try await list(prefix: IPAMKeys.allBlocks).compactMap { kv in
            try? JSONCoding.decode(AllocationBlock.self, kv).cidr
        }
        var freed: [IPAddress] = []
        for cidr in blocks {
            let inside = addresses.filter { cidr.contains($0) }
            if !inside.isEmpty { freed += try await releaseInBlock(cidr, addresses: inside, handleID: nil) }
        }
        return freed
    }

    private func releaseInBlock(_ cidr: CIDR, addresses: [IPAddress]?, handleID: String?) async throws(IPAMError)
        -> [IPAddress]
    {
        for _ in 0..<maxAttempts {
            guard let existing = try await read(AllocationBlock.self, key: IPAMKeys.block(cidr)) else { return [] }
            var block = existing.value
            let freed = block.release(addresses, handleID: handleID, now: timestamp())
            if freed.isEmpty { return [] }
            if try await write(block, key: IPAMKeys.block(cidr), revision: existing.revision) { return freed }
        }
        throw .contention(operation: "releasing in block \(cidr)", attempts: maxAttempts)
    }

    /// Gives up blocks that have been empty for longer than `gracePeriod`: affinity to
    /// pendingDeletion, block deleted (only if still empty: compare-and-swap), affinity deleted.
    /// Returns the blocks released.
    @discardableResult
    public func releaseEmptyBlocks(olderThan gracePeriod: Duration) async throws(IPAMError) -> [CIDR] {
        var released: [CIDR] = []
        let cutoff = now().addingTimeInterval(-Double(gracePeriod.components.seconds))
        for kv in try await list(prefix: IPAMKeys.allBlocks) {
            let block = try JSONCoding.decode(AllocationBlock.self, kv)
            guard block.isEmpty, let since = block.emptySince.flatMap(parseTimestamp), since < cutoff else { continue }
            if let node = block.affinityNode {
                let key = IPAMKeys.affinity(node: node, cidr: block.cidr)
                if let affinity = try await read(BlockAffinity.self, key: key) {
                    var deleting = affinity.value
                    deleting.state = .pendingDeletion
                    guard try await write(deleting, key: key, revision: affinity.revision) else { continue }
                }
            }
            do {
                try await store.delete(kv.key, expectedRevision: kv.modRevision)
            } catch .conflict(_, _, _) {
                // Allocated from meanwhile: it stays. Put the affinity back.
                if let node = block.affinityNode {
                    try await confirm(
                        IPAMKeys.affinity(node: node, cidr: block.cidr),
                        BlockAffinity(node: node, cidr: block.cidr, state: .confirmed))
                }
                continue
            } catch .notFound(_) {
            } catch {
                throw .store(error)
            }
            if let node = block.affinityNode {
                _ = try? await store.delete(IPAMKeys.affinity(node: node, cidr: block.cidr), expectedRevision: nil)
            }
            released.append(block.cidr)
        }
        return released
    }

    // MARK: Reads

    /// Every address a handle holds.
    /// Reads only the blocks the handle's record names (every ADD asks this, so no scan of the
    /// whole pool): the record is written before any address is assigned, so a handle without
    /// a record holds nothing.
    public func addresses(handleID: String) async throws(IPAMError) -> [IPAddress] {
        guard let handle = try await read(IPAMHandle.self, key: IPAMKeys.handle(handleID)) else { return [] }
        var found: [IPAddress] = []
        for cidr in handle.value.blocks {
            guard let block = try await read(AllocationBlock.self, key: IPAMKeys.block(cidr)) else { continue }
            found += block.value.allocated.filter { $0.attributes.handleID == handleID }.map(\.address)
        }
        return found
    }

    /// Every handle ID IPAM has a record of.
    public func handleIDs() async throws(IPAMError) -> [String] {
        try await list(prefix: IPAMKeys.handles).map { String($0.key.dropFirst(IPAMKeys.handles.count)) }
    }

    /// Every block, decoded.
    public func blocks() async throws(IPAMError) -> [AllocationBlock] {
        var blocks: [AllocationBlock] = []
        for kv in try await list(prefix: IPAMKeys.allBlocks) {
            blocks.append(try JSONCoding.decode(AllocationBlock.self, kv))
        }
        return blocks
    }

    /// Every affinity of every node.
    public func allAffinities() async throws(IPAMError) -> [BlockAffinity] {
        var affinities: [BlockAffinity] = []
        for kv in try await list(prefix: IPAMKeys.allAffinities) {
            affinities.append(try JSONCoding.decode(BlockAffinity.self, kv))
        }
        return affinities
    }

    func affinities(node: String, family: IPFamily) async throws(IPAMError) -> [BlockAffinity] {
        var affinities: [BlockAffinity] = []
        for kv in try await list(prefix: IPAMKeys.affinities(node: node, family: family)) {
            affinities.append(try JSONCoding.decode(BlockAffinity.self, kv))
        }
        return affinities
    }

    // MARK: Plumbing

    func read<T: JSONRecord>(_ type: T.Type, key: String) async throws(IPAMError) -> (value: T, revision: Revision)? {
        let kv: KeyValue?
        do { kv = try await store.get(key) } catch { throw .store(error) }
        guard let kv else { return nil }
        return (try JSONCoding.decode(T.self, kv), kv.modRevision)
    }

    /// Creates (revision nil) or compare-and-swaps; false when another writer got there first.
    func write(_ value: some JSONRecord, key: String, revision: Revision?) async throws(IPAMError) -> Bool {
        do {
            if let revision {
                try await store.update(key, value: JSONCoding.encode(value), expectedRevision: revision)
            } else {
                try await store.create(key, value: JSONCoding.encode(value))
            }
            return true
        } catch {
            switch error {
            case .conflict, .alreadyExists, .notFound: return false
            default: throw .store(error)
            }
        }
    }

    /// A create (revision nil) or a compare-and-swap, for `commit`.
    func storeWrite(_ value: some JSONRecord, key: String, revision: Revision?) -> StoreWrite {
        let data = JSONCoding.encode(value)
        guard let revision else { return .create(key: key, value: data) }
        return .update(key: key, value: data, expectedRevision: revision)
    }

    /// All of `writes` or none; false when another writer got to one of the keys first.
    func commit(_ writes: [StoreWrite]) async throws(IPAMError) -> Bool {
        do {
            try await store.commit(writes)
            return true
        } catch {
            switch error {
            case .conflict, .alreadyExists, .notFound: return false
            default: throw .store(error)
            }
        }
    }

    func list(prefix: String) async throws(IPAMError) -> [KeyValue] {
        do { return try await store.list(prefix: prefix).items } catch { throw .store(error) }
    }

    func timestamp() -> String { formatTimestamp(now()) }
}

func formatTimestamp(_ date: Date) -> String { Timestamp.format(date, milliseconds: true) }

func parseTimestamp(_ text: String) -> Date? { Timestamp.parse(text) }

/// A hash that is the same in every process (Swift's `Hasher` is seeded per process): FNV-1a.
struct StableHasher {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func combine(_ text: String) {
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01b3
        }
    }
}

extension Hasher {
    static var stable: StableHasher { StableHasher() }
}
