import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore

/// `tabby-ipam`: a CNI IPAM plugin over Tabby's block IPAM, usable by any CNI plugin (the
/// reference `bridge` plugin included). Calico-ipam's config keys: `assign_ipv4` (default true),
/// `assign_ipv6` (default false), `ipv4_pools`, `ipv6_pools`, `nodename`, datastore keys; plus
/// `prefix`: `host` (default: /32 and /128, as Calico) or `pool` (the pool's prefix length, for
/// plugins like `bridge` that put the address on a shared subnet).
public struct IPAMPlugin: Sendable {
    public let environment: CNIEnvironment
    public let config: NetworkConfig

    public init(environment: CNIEnvironment, config: NetworkConfig) {
        self.environment = environment
        self.config = config
    }

    /// The handle of one attachment: `<network>.<containerID>`, as Calico names it.
    static func handleID(network: String, containerID: String) -> String { "\(network).\(containerID)" }

    public func run() async throws(CNIError) -> Data? {
        switch environment.command {
        case .version: return nil  // answered by the dispatcher
        case .add: return try await add().json(cniVersion: config.cniVersion)
        case .del:
            try await del()
            return nil
        case .check:
            try await check()
            return nil
        case .gc:
            try await gc()
            return nil
        case .status:
            try await status()
            return nil
        }
    }

    func openIPAM() throws(CNIError) -> IPAM {
        let datastore = try config.datastore()
        do {
            return IPAM(store: try datastore.makeStore(shortLived: true))
        } catch {
            throw Self.map(error)
        }
    }

    func add() async throws(CNIError) -> CNIResult {
        let prefixMode = try config.string("prefix") ?? "host"
        guard ["host", "pool"].contains(prefixMode) else {
            throw .invalidConfig("prefix must be host or pool (got \"\(prefixMode)\")")
        }
        let assignments = try await assign(ipam: try openIPAM(), node: try config.nodeName())
        return CNIResult(
            ips: assignments.map { assignment in
                let length = prefixMode == "pool" ? assignment.pool.prefixLength : assignment.address.bitWidth
                return CNIResult.IPConfig(address: "\(assignment.address)/\(length)")
            }
        )
    }

    /// Assigns this attachment's addresses (shared with the `tabby` plugin, which runs IPAM in
    /// process). An attachment that already holds addresses is refused: the runtime must DEL first.
    func assign(ipam: IPAM, node: String) async throws(CNIError) -> [Assignment] {
        guard let containerID = environment.containerID else {
            throw .invalidEnvironment("CNI_CONTAINERID is required for ADD")
        }
        let assignV4 = try config.flag("assign_ipv4", default: true)
        let assignV6 = try config.flag("assign_ipv6", default: false)
        guard assignV4 || assignV6 else {
            throw .invalidConfig("assign_ipv4 and assign_ipv6 are both false: nothing to assign")
        }
        let request = AssignmentRequest(
            handleID: Self.handleID(network: config.name, containerID: containerID),
            node: node,
            ipv4Count: assignV4 ? 1 : 0,
            ipv6Count: assignV6 ? 1 : 0,
            ipv4Pools: try config.stringList("ipv4_pools"),
            ipv6Pools: try config.stringList("ipv6_pools"),
            namespace: environment.arguments["K8S_POD_NAMESPACE"],
            pod: environment.arguments["K8S_POD_NAME"],
            containerID: containerID
        )
        do {
            let existing = try await ipam.addresses(handleID: request.handleID)
            if !existing.isEmpty {
                throw CNIError.invalidConfig(
                    "container \(containerID) already has addresses \(existing.map(\.description).joined(separator: ", ")) on network \(config.name); DEL it first"
                )
            }
            return try await ipam.assign(request)
        } catch let error as CNIError {
            throw error
        } catch {
            throw Self.map(error)
        }
    }

    /// Idempotent: releases whatever the handle holds, nothing if it holds nothing.
    func del() async throws(CNIError) {
        guard let containerID = environment.containerID else {
            throw .invalidEnvironment("CNI_CONTAINERID is required for DEL")
        }
        let ipam = try openIPAM()
        do {
            try await ipam.release(handleID: Self.handleID(network: config.name, containerID: containerID))
        } catch {
            throw Self.map(error)
        }
    }

    /// The addresses prevResult lists must be the ones IPAM holds for this attachment.
    func check() async throws(CNIError) { try await check(ipam: try openIPAM()) }

    func check(ipam: IPAM) async throws(CNIError) {
        guard let containerID = environment.containerID else {
            throw .invalidEnvironment("CNI_CONTAINERID is required for CHECK")
        }
        guard let previous = try config.previousResult() else { throw .invalidConfig("CHECK needs prevResult") }
        let held: Set<IPAddress>
        do {
            held = Set(
                try await ipam.addresses(handleID: Self.handleID(network: config.name, containerID: containerID)))
        } catch {
            throw Self.map(error)
        }
        let fromResult = Set(
            previous.ips.compactMap { ip in ip.address.split(separator: "/").first.flatMap { IPAddress(String($0)) } })
        guard fromResult == held else {
            let missing = fromResult.subtracting(held).map(\.description).sorted()
            let extra = held.subtracting(fromResult).map(\.description).sorted()
            throw .checkFailed(
                "IPAM state of container \(containerID) does not match prevResult: not allocated \(missing), allocated but not in prevResult \(extra)"
            )
        }
    }

    /// Releases every handle of this network whose container is not a valid attachment.
    func gc() async throws(CNIError) {
        try await gc(ipam: try openIPAM(), valid: Set(try config.validAttachments().map(\.containerID)))
    }

    func gc(ipam: IPAM, valid containerIDs: Set<String>) async throws(CNIError) {
        let valid = Set(containerIDs.map { Self.handleID(network: config.name, containerID: $0) })
        do {
            let prefix = Self.handleID(network: config.name, containerID: "")
            for handle in try await ipam.handleIDs() where handle.hasPrefix(prefix) && !valid.contains(handle) {
                try await ipam.release(handleID: handle)
            }
        } catch {
            throw Self.map(error)
        }
    }

    /// Ready when the datastore answers and a pool this node may use has a free address.
    func status() async throws(CNIError) { try await status(ipam: try openIPAM()) }

    func status(ipam: IPAM) async throws(CNIError) {
        let node = try config.nodeName()
        do {
            let usage = try await ipam.usage()
            let usable = usage.filter { !$0.disabled && $0.size > UInt128($0.allocated) }
            if usage.isEmpty {
                throw CNIError.notAvailable("no IP pool exists; create one with tabbyctl apply -f pool.yaml")
            }
            if usable.isEmpty {
                throw CNIError.notAvailable("every IP pool is disabled or full", details: "node \(node)")
            }
        } catch let error as CNIError {
            throw error
        } catch {
            let mapped = Self.map(error)
            throw mapped.code == 11 ? .notAvailable(mapped.message, details: mapped.details) : mapped
        }
    }

    /// IPAM and datastore errors to CNI codes: transient ones are "try again later".
    static func map(_ error: any Error) -> CNIError {
        switch error {
        case let error as CNIError: return error
        case let error as IPAMError:
            switch error {
            case .exhausted, .noPools, .unavailableAddress: return .addressesExhausted(error.description)
            case .invalidRequest: return .invalidConfig(error.description)
            case .contention: return .tryAgainLater(error.description)
            case .corruptedRecord: return .ioFailure(error.description)
            case .store(let store): return map(store)
            }
        case let error as StoreError:
            switch error {
            case .unavailable, .retriesExhausted: return .tryAgainLater(error.description)
            case .invalidConfiguration: return .invalidConfig(error.description)
            default: return .ioFailure(error.description)
            }
        default:
            return .ioFailure("\(error)")
        }
    }
}
