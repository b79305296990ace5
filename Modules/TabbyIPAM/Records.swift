import Foundation
import TabbyCore
import TabbyStore

/// What is recorded with each allocated address: whose it is and when it was handed out.
public struct AllocationAttributes: Codable, Hashable, Sendable {
    /// The handle that owns the address (`<network>.<containerID>` for pods).
    public var handleID: String
    public var namespace: String?
    public var pod: String?
    public var node: String?
    public var containerID: String?
    /// What the address is for when it is not a pod's (e.g. `vxlanTunnelAddress`).
    public var type: String?
    /// When it was allocated (ISO 8601), for leak detection's grace period.
    public var allocatedAt: String?

    public init(
        handleID: String,
        namespace: String? = nil,
        pod: String? = nil,
        node: String? = nil,
        containerID: String? = nil,
        type: String? = nil,
        allocatedAt: String? = nil
    ) {
        self.handleID = handleID
        self.namespace = namespace
        self.pod = pod
        self.node = node
        self.containerID = containerID
        self.type = type
        self.allocatedAt = allocatedAt
    }
}

/// A block of a pool: every address of it, free or allocated. One datastore key per block, so
/// every change to a block is one compare-and-swap.
public struct AllocationBlock: Codable, Hashable, Sendable {
    public var cidr: CIDR
    /// `host:<node>` for the node whose block this is; nil for an orphan.
    public var affinity: String?
    /// Per address ordinal: the index into `attributes` of its owner, nil when free.
    public var allocations: [Int?]
    /// Free ordinals in the order they will be handed out; released addresses go to the back,
    /// so an address is not reused at once (stale conntrack entries and ARP caches).
    public var unallocated: [Int]
    public var attributes: [AllocationAttributes]
    /// When the block last became empty (ISO 8601), for the empty-block grace period.
    public var emptySince: String?

    public init(cidr: CIDR, affinity: String?, now: String) {
        let size = Int(cidr.size)
        self.cidr = cidr
        self.affinity = affinity
        self.allocations = Array(repeating: nil, count: size)
        self.unallocated = Array(0..<size)
        self.attributes = []
        self.emptySince = now
    }

    public var affinityNode: String? {
        guard let affinity, affinity.hasPrefix("host:") else { return nil }
        return String(affinity.dropFirst(5))
    }

    public var allocatedCount: Int { allocations.count - unallocated.count }
    public var isEmpty: Bool { unallocated.count == allocations.count }

    public func address(ordinal: Int) -> IPAddress { cidr.address(at: UInt128(ordinal))! }

    public func ordinal(of address: IPAddress) -> Int? { cidr.offset(of: address).map { Int($0) } }

    /// Every allocated address with its attributes.
    public var allocated: [(address: IPAddress, attributes: AllocationAttributes)] {
        allocations.enumerated().compactMap { ordinal, index in
            index.map { (address(ordinal: ordinal), attributes[$0]) }
        }
    }

    /// Takes up to `count` free addresses not in `reserved`, for `owner`.
    mutating func assign(count: Int, owner: AllocationAttributes, reserved: [CIDR], now: String) -> [IPAddress] {
        var taken: [IPAddress] = []
        var kept: [Int] = []
        let attributeIndex: Int
        if let existing = attributes.firstIndex(of: owner) {
            attributeIndex = existing
        } else {
            attributes.append(owner)
            attributeIndex = attributes.count - 1
        }
        for ordinal in unallocated {
            let address = address(ordinal: ordinal)
            if taken.count < count && !reserved.contains(where: { $0.contains(address) }) {
                allocations[ordinal] = attributeIndex
                taken.append(address)
            } else {
                kept.append(ordinal)
            }
        }
        unallocated = kept
        if !taken.isEmpty { emptySince = nil }
        compactAttributes()
        return taken
    }

    /// Frees the given addresses (those allocated in this block) and, when `handleID` is given,
    /// only those it owns. Returns what was freed.
    mutating func release(_ addresses: [IPAddress]?, handleID: String?, now: String) -> [IPAddress] {
        var freed: [IPAddress] = []
        for (ordinal, index) in allocations.enumerated() {
            guard let index else { continue }
            let address = address(ordinal: ordinal)
            if let addresses, !addresses.contains(address) { continue }
            if let handleID, attributes[index].handleID != handleID { continue }
            allocations[ordinal] = nil
            unallocated.append(ordinal)
            freed.append(address)
        }
        if isEmpty && emptySince == nil { emptySince = now }
        compactAttributes()
        return freed
    }

    /// Drops attributes no address refers to, renumbering the rest.
    private mutating func compactAttributes() {
        var used = Set(allocations.compactMap { $0 })
        guard used.count != attributes.count else { return }
        var mapping: [Int: Int] = [:]
        var kept: [AllocationAttributes] = []
        for (index, attribute) in attributes.enumerated() where used.contains(index) {
            mapping[index] = kept.count
            kept.append(attribute)
        }
        used.removeAll()
        attributes = kept
        allocations = allocations.map { $0.flatMap { mapping[$0] } }
    }
}

/// A node's claim on a block. `pending` while the block is being created, `confirmed` once it
/// exists, `pendingDeletion` while an empty block is being given up.
public struct BlockAffinity: Codable, Hashable, Sendable {
    public enum State: String, Codable, Sendable {
        case pending, confirmed, pendingDeletion
    }

    public var node: String
    public var cidr: CIDR
    public var state: State
}

/// The blocks a handle may hold addresses in, written before any address is assigned so that
/// release by handle always finds them.
public struct IPAMHandle: Codable, Hashable, Sendable {
    public var handleID: String
    public var blocks: [CIDR]
}

/// Where IPAM keeps its records in the datastore.
public enum IPAMKeys {
    public static let root = "/tabby/ipam/v2/"

    static func family(_ family: IPFamily) -> String { family == .v4 ? "ipv4" : "ipv6" }

    static func encode(_ cidr: CIDR) -> String { String(cidr.description.map { $0 == "/" ? "-" : $0 }) }

    public static func blocks(_ family: IPFamily) -> String { root + "blocks/\(Self.family(family))/" }
    public static func block(_ cidr: CIDR) -> String { blocks(cidr.family) + encode(cidr) }
    public static let allBlocks = root + "blocks/"

    public static func affinities(node: String, family: IPFamily) -> String {
        root + "affinities/\(node)/\(Self.family(family))/"
    }
    public static func affinity(node: String, cidr: CIDR) -> String {
        affinities(node: node, family: cidr.family) + encode(cidr)
    }
    public static let allAffinities = root + "affinities/"

    public static let handles = root + "handles/"
    public static func handle(_ id: String) -> String { handles + id }
}

enum JSONCoding {
    static func encode(_ value: some JSONRecord) -> Data { Data(value.json.serialized().utf8) }

    static func decode<T: JSONRecord>(_ type: T.Type, _ kv: KeyValue) throws(IPAMError) -> T {
        do {
            return try T(json: try JSONValue.parse(kv.value))
        } catch let error as JSONParseError {
            throw .corruptedRecord(key: kv.key, reason: error.description)
        } catch {
            throw .corruptedRecord(key: kv.key, reason: "\(error)")
        }
    }
}
