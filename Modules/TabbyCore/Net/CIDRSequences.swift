/// The equal-sized blocks that tile a parent CIDR, in address order. Elements are computed on demand,
/// so even a split into billions of blocks costs constant memory.
public struct CIDRSubnets: Sequence, Sendable, Hashable {
    /// The network being split.
    public let parent: CIDR
    /// The prefix length of every produced block.
    public let subnetPrefixLength: Int

    init(parent: CIDR, subnetPrefixLength: Int) {
        self.parent = parent
        self.subnetPrefixLength = subnetPrefixLength
    }

    /// Number of blocks: 2^(subnetPrefixLength - parent.prefixLength), saturating to `UInt128.max` at 2^128.
    public var count: UInt128 {
        CIDR.blockSize(hostBits: subnetPrefixLength - parent.prefixLength)
    }

    /// The first block; always present because a split yields at least one block.
    public var first: CIDR {
        CIDR(network: parent.network, prefixLength: subnetPrefixLength)
    }

    /// The last block, which ends at the parent's last address.
    public var last: CIDR {
        CIDR(network: parent.lastAddress, prefixLength: subnetPrefixLength)
    }

    /// The block at `index` in address order, or nil if `index >= count`.
    public func subnet(at index: UInt128) -> CIDR? {
        let indexBits = subnetPrefixLength - parent.prefixLength
        guard indexBits >= 128 || index < count else { return nil }
        let subnetHostBits = parent.network.bitWidth - subnetPrefixLength
        // indexBits + subnetHostBits never exceeds 128, so this shift cannot lose set bits of a valid index.
        let offset = subnetHostBits >= 128 ? 0 : index << UInt128(subnetHostBits)
        guard let network = parent.address(at: offset) else { return nil }
        return CIDR(network: network, prefixLength: subnetPrefixLength)
    }

    public var underestimatedCount: Int {
        Int(clamping: count)
    }

    public func makeIterator() -> Iterator {
        Iterator(subnets: self)
    }

    /// Walks the blocks by stepping the network address; stops after the block holding the parent's last address.
    public struct Iterator: IteratorProtocol, Sendable {
        private var nextNetwork: UInt128?
        private let lastNetwork: UInt128
        private let step: UInt128
        private let family: IPFamily
        private let prefixLength: Int

        init(subnets: CIDRSubnets) {
            nextNetwork = subnets.first.network.integerValue
            lastNetwork = subnets.last.network.integerValue
            let subnetHostBits = subnets.parent.network.bitWidth - subnets.subnetPrefixLength
            // A /0 IPv6 "split" into /0 is a single block; its step is never used.
            step = subnetHostBits >= 128 ? 0 : 1 << UInt128(subnetHostBits)
            family = subnets.parent.family
            prefixLength = subnets.subnetPrefixLength
        }

        public mutating func next() -> CIDR? {
            guard let current = nextNetwork else { return nil }
            nextNetwork = current == lastNetwork ? nil : current + step
            return CIDR(network: IPAddress(family: family, integerValue: current), prefixLength: prefixLength)
        }
    }
}

/// Every address of a CIDR block in ascending order, computed on demand.
public struct CIDRAddresses: Sequence, Sendable, Hashable {
    /// The block whose addresses are produced.
    public let cidr: CIDR

    init(cidr: CIDR) {
        self.cidr = cidr
    }

    /// Number of addresses; the same as `cidr.size` (saturating to `UInt128.max` for `::/0`).
    public var count: UInt128 {
        cidr.size
    }

    public var underestimatedCount: Int {
        Int(clamping: count)
    }

    public func makeIterator() -> Iterator {
        Iterator(cidr: cidr)
    }

    /// Counts from the network address up to and including the last address.
    public struct Iterator: IteratorProtocol, Sendable {
        private var nextValue: UInt128?
        private let lastValue: UInt128
        private let family: IPFamily

        init(cidr: CIDR) {
            nextValue = cidr.network.integerValue
            lastValue = cidr.lastAddress.integerValue
            family = cidr.family
        }

        public mutating func next() -> IPAddress? {
            guard let current = nextValue else { return nil }
            nextValue = current == lastValue ? nil : current + 1
            return IPAddress(family: family, integerValue: current)
        }
    }
}
