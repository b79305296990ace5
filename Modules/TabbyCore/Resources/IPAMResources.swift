/// Encapsulation for a pool's traffic between nodes.
public enum EncapsulationMode: String, StringEnumeration {
    case never = "Never"
    case always = "Always"
    case crossSubnet = "CrossSubnet"
}

/// What addresses of a pool may be used for.
public enum IPPoolUse: String, StringEnumeration {
    case workload = "Workload"
    case tunnel = "Tunnel"
    case loadBalancer = "LoadBalancer"
}

/// A range of pod addresses, cut into per-node blocks.
public struct IPPoolSpec: ResourceSpec {
    public static var kind: ResourceKind { .ipPool }

    public enum AssignmentMode: String, StringEnumeration {
        case automatic = "Automatic"
        case manual = "Manual"
    }

    public static let defaultIPv4BlockSize = 26
    public static let defaultIPv6BlockSize = 122

    public var cidr: String
    public var blockSize: Int?
    public var vxlanMode: EncapsulationMode?
    public var ipipMode: EncapsulationMode?
    public var natOutgoing: Bool?
    public var disabled: Bool?
    public var disableBGPExport: Bool?
    public var nodeSelector: String?
    public var allowedUses: [IPPoolUse]?
    public var assignmentMode: AssignmentMode?

    public init() { cidr = "" }

    public init(cidr: String) { self.cidr = cidr }

    enum CodingKeys: String, CodingKey {
        case cidr, blockSize, vxlanMode, ipipMode, natOutgoing, disabled, disableBGPExport, nodeSelector, allowedUses
        case assignmentMode
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // A missing cidr is reported by validation with the pool's other problems.
        cidr = try container.decodeIfPresent(String.self, forKey: .cidr) ?? ""
        blockSize = try container.decodeIfPresent(Int.self, forKey: .blockSize)
        vxlanMode = try container.decodeIfPresent(EncapsulationMode.self, forKey: .vxlanMode)
        ipipMode = try container.decodeIfPresent(EncapsulationMode.self, forKey: .ipipMode)
        natOutgoing = try container.decodeIfPresent(Bool.self, forKey: .natOutgoing)
        disabled = try container.decodeIfPresent(Bool.self, forKey: .disabled)
        disableBGPExport = try container.decodeIfPresent(Bool.self, forKey: .disableBGPExport)
        nodeSelector = try container.decodeIfPresent(String.self, forKey: .nodeSelector)
        allowedUses = try container.decodeIfPresent([IPPoolUse].self, forKey: .allowedUses)
        assignmentMode = try container.decodeIfPresent(AssignmentMode.self, forKey: .assignmentMode)
    }

    public mutating func applyDefaults(metadata: ObjectMeta) {
        if blockSize == nil, let network = CIDR(cidr) {
            blockSize = network.family == .v4 ? Self.defaultIPv4BlockSize : Self.defaultIPv6BlockSize
        }
        if vxlanMode == nil { vxlanMode = .never }
        if ipipMode == nil { ipipMode = .never }
        if nodeSelector == nil || nodeSelector == "" { nodeSelector = "all()" }
        if allowedUses == nil || allowedUses == [] { allowedUses = [.workload, .tunnel] }
        if assignmentMode == nil { assignmentMode = .automatic }
    }

    /// Ranges a pool must never overlap: link-local (the 169.254.1.1 gateway lives there),
    /// loopback and multicast.
    static let forbiddenRanges: [(CIDR, String)] = [
        ("169.254.0.0/16", "link-local"), ("127.0.0.0/8", "loopback"), ("224.0.0.0/4", "multicast"),
        ("fe80::/10", "link-local"), ("::1/128", "loopback"), ("ff00::/8", "multicast"),
    ].map { (CIDR($0.0)!, $0.1) }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if cidr.isEmpty {
            validator.fail("cidr", "is required")
            return
        }
        // Report host bits, then go on with the masked network to find the pool's other problems.
        validator.validateCIDR(cidr, key: "cidr", strict: true)
        guard let network = CIDR(cidr) else { return }
        for (range, name) in Self.forbiddenRanges where network.overlaps(range) {
            validator.fail("cidr", "\(network) overlaps the \(name) range \(range)")
        }
        if let blockSize {
            let allowed = network.family == .v4 ? 20...32 : 116...128
            if !allowed.contains(blockSize) {
                validator.fail(
                    "blockSize",
                    "must be \(allowed.lowerBound)-\(allowed.upperBound) for an IPv\(network.family.rawValue) pool (got \(blockSize))"
                )
            } else if blockSize < network.prefixLength {
                validator.fail("blockSize", "the pool \(network) is smaller than one /\(blockSize) block")
            }
        }
        let vxlan = vxlanMode ?? .never
        let ipip = ipipMode ?? .never
        if vxlan != .never && ipip != .never {
            validator.fail(
                "ipipMode",
                "vxlanMode and ipipMode cannot both be enabled (vxlanMode: \(vxlan.rawValue), ipipMode: \(ipip.rawValue))"
            )
        }
        if ipip != .never && network.family == .v6 {
            validator.fail("ipipMode", "IPIP is not supported for IPv6 pools")
        }
        validator.validateSelector(nodeSelector, key: "nodeSelector")
        if let uses = allowedUses, uses.contains(.loadBalancer), uses.count > 1 {
            validator.fail("allowedUses", "LoadBalancer cannot be combined with other uses")
        }
    }
}

public typealias IPPool = Resource<IPPoolSpec>

/// Addresses IPAM must never hand out.
public struct IPReservationSpec: ResourceSpec {
    public static var kind: ResourceKind { .ipReservation }
    public var reservedCIDRs: [String]?
    public init() {}
    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        validator.validateCIDRs(reservedCIDRs, key: "reservedCIDRs")
    }
}

public typealias IPReservation = Resource<IPReservationSpec>

/// Cluster-wide IPAM knobs; the one resource is named `default`.
public struct IPAMConfigurationSpec: ResourceSpec {
    public static var kind: ResourceKind { .ipamConfiguration }
    public var strictAffinity: Bool?
    public var maxBlocksPerHost: Int?
    public var autoAllocateBlocks: Bool?
    public init() {}

    public mutating func applyDefaults(metadata: ObjectMeta) {
        if strictAffinity == nil { strictAffinity = false }
        if autoAllocateBlocks == nil { autoAllocateBlocks = true }
        if maxBlocksPerHost == nil { maxBlocksPerHost = 0 }
    }

    public func validate(_ validator: inout Validator, metadata: ObjectMeta) {
        if metadata.name != "default" && !metadata.name.isEmpty {
            validator.fail("IPAMConfiguration must be named \"default\" (got \"\(metadata.name)\")")
        }
        if let maximum = maxBlocksPerHost, maximum < 0 {
            validator.fail("maxBlocksPerHost", "must be 0 (no limit) or more")
        }
    }
}

public typealias IPAMConfiguration = Resource<IPAMConfigurationSpec>
