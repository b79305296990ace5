import TabbyCore
import TabbyStore

/// Every error IPAM raises, each saying what was asked, what was tried and what to do.
public enum IPAMError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No enabled pool of the family matches the node (and the requested pool list).
    case noPools(family: IPFamily, node: String, reason: String)
    /// The pools tried have no free address for this node.
    case exhausted(family: IPFamily, requested: Int, assigned: Int, pools: [CIDR], reason: String)
    /// A specific address was asked for that cannot be had.
    case unavailableAddress(IPAddress, reason: String)
    case invalidRequest(String)
    /// A datastore record that does not decode: reported, never overwritten.
    case corruptedRecord(key: String, reason: String)
    /// Compare-and-swap kept losing to other writers.
    case contention(operation: String, attempts: Int)
    case store(StoreError)

    public var description: String {
        switch self {
        case .noPools(let family, let node, let reason):
            return "no IPv\(family.rawValue) pool can serve node \(node): \(reason)"
        case .exhausted(let family, let requested, let assigned, let pools, let reason):
            let names = pools.map(\.description).joined(separator: ", ")
            return
                "IPv\(family.rawValue) pools exhausted: asked for \(requested) address(es), found \(assigned) in \(names): \(reason)"
        case .unavailableAddress(let address, let reason): return "cannot assign \(address): \(reason)"
        case .invalidRequest(let reason): return "invalid IPAM request: \(reason)"
        case .corruptedRecord(let key, let reason): return "IPAM record \(key) cannot be read: \(reason)"
        case .contention(let operation, let attempts):
            return "\(operation) lost \(attempts) compare-and-swap races in a row; try again"
        case .store(let error): return error.description
        }
    }
}
