/// One nftables transaction: everything in it is applied atomically by the kernel, or nothing is.
///
/// A value: operations are recorded in order and turned into netlink bytes by `encode`. Adds use
/// NLM_F_CREATE without NLM_F_EXCL, so re-adding an existing table, chain, set or element with the
/// same definition is not an error (idempotent); rules always append (or insert/replace as asked).
public struct NftBatch: Sendable {
    /// Where a new rule goes in its chain.
    public enum RulePosition: Hashable, Sendable {
        /// At the end of the chain (`nft add rule`).
        case append
        /// At the start of the chain (`nft insert rule`).
        case prepend
        /// After the rule with this handle.
        case after(handle: UInt64)
        /// Before the rule with this handle.
        case before(handle: UInt64)
        /// In place of the rule with this handle (`nft replace rule`), keeping its position.
        case replacing(handle: UInt64)
    }

    enum Operation: Sendable {
        case addTable(NftTable)
        case deleteTable(family: Nft.Family, name: String, ifExists: Bool)
        case addChain(NftChain)
        case deleteChain(family: Nft.Family, table: String, name: String, ifExists: Bool)
        case flushChain(family: Nft.Family, table: String, name: String)
        case addSet(NftSet)
        case deleteSet(family: Nft.Family, table: String, name: String, ifExists: Bool)
        case addElements(NftSet, [NftSetElement])
        case deleteElements(NftSet, [NftSetElement])
        case flushSet(NftSet)
        case addRule(NftRule, RulePosition)
        case deleteRule(family: Nft.Family, table: String, chain: String, handle: UInt64)
    }

    private(set) var operations: [Operation] = []

    public init() {}

    public var isEmpty: Bool { operations.isEmpty }

    /// `nft add table`.
    public mutating func add(_ table: NftTable) { operations.append(.addTable(table)) }
    /// `nft add chain`: base chain when `chain.hook` is set.
    public mutating func add(_ chain: NftChain) { operations.append(.addChain(chain)) }
    /// `nft add set` / `nft add map`. Rules later in the same batch that look the set up refer to it
    /// by its batch-local set ID as well as by name.
    public mutating func add(_ set: NftSet) { operations.append(.addSet(set)) }
    /// `nft add element`. Interval sets get a start and an end element per range.
    public mutating func addElements(_ elements: [NftSetElement], to set: NftSet) {
        guard !elements.isEmpty else { return }
        operations.append(.addElements(set, elements))
    }
    /// `nft delete element`: fails the batch (ENOENT) if an element is missing.
    public mutating func deleteElements(_ elements: [NftSetElement], from set: NftSet) {
        guard !elements.isEmpty else { return }
        operations.append(.deleteElements(set, elements))
    }
    /// `nft flush set`: removes every element.
    public mutating func flush(set: NftSet) { operations.append(.flushSet(set)) }
    /// `nft add rule` (or insert/replace, see `RulePosition`).
    public mutating func add(_ rule: NftRule, at position: RulePosition = .append) {
        operations.append(.addRule(rule, position))
    }
    /// `nft replace rule ... handle N`: `rule.handle` must be set.
    public mutating func replace(_ rule: NftRule) {
        operations.append(.addRule(rule, .replacing(handle: rule.handle ?? 0)))
    }
    /// `nft delete rule ... handle N`.
    public mutating func deleteRule(family: Nft.Family = .inet, table: String, chain: String, handle: UInt64) {
        operations.append(.deleteRule(family: family, table: table, chain: chain, handle: handle))
    }
    /// `nft flush chain`: removes every rule of the chain, keeps the chain.
    public mutating func flush(chain: NftChain) {
        operations.append(.flushChain(family: chain.family, table: chain.table, name: chain.name))
    }
    /// `nft delete chain` (`ifExists`: `nft destroy chain`, kernel >= 6.3). The chain must not be
    /// referenced by jumps; its rules go with it.
    public mutating func delete(chain: NftChain, ifExists: Bool = false) {
        operations.append(.deleteChain(family: chain.family, table: chain.table, name: chain.name, ifExists: ifExists))
    }
    /// `nft delete set` (`ifExists`: `nft destroy set`, kernel >= 6.3). Fails if a rule uses it.
    public mutating func delete(set: NftSet, ifExists: Bool = false) {
        operations.append(.deleteSet(family: set.family, table: set.table, name: set.name, ifExists: ifExists))
    }
    /// `nft delete table` (`ifExists`: `nft destroy table`, kernel >= 6.3): everything in it goes.
    public mutating func delete(table: NftTable, ifExists: Bool = false) {
        operations.append(.deleteTable(family: table.family, name: table.name, ifExists: ifExists))
    }

    /// The batch as netlink bytes: NFNL_MSG_BATCH_BEGIN (seq `start`), one message per object
    /// (seq `start+1`...), NFNL_MSG_BATCH_END. Every object message carries NLM_F_ACK.
    public func encode(sequence start: UInt32) throws(Nft.Error) -> [UInt8] {
        try encoded(sequence: start).bytes
    }

    /// The bytes plus what each sequence number carries, for naming a failed object.
    public func encoded(sequence start: UInt32) throws(Nft.Error) -> EncodedBatch {
        var encoder = BatchEncoder(firstSequence: start)
        try encoder.encode(operations)
        return encoder.finish()
    }
}

/// An encoded batch: the bytes to send and, for each object message, its sequence number and a
/// description such as `NFT_MSG_NEWSET inet tabby s-1a2b`.
public struct EncodedBatch: Sendable {
    public var bytes: [UInt8]
    /// In order; batch begin/end are not included (the kernel does not acknowledge them).
    public var messages: [(sequence: UInt32, description: String)]
    /// The sequence number the next request may use.
    public var nextSequence: UInt32

    public func description(ofSequence sequence: UInt32) -> String? {
        // Sequence numbers are consecutive from the first message.
        guard let first = messages.first?.sequence else { return nil }
        let index = Int(sequence &- first)
        guard index >= 0, index < messages.count, messages[index].sequence == sequence else {
            return messages.first { $0.sequence == sequence }?.description
        }
        return messages[index].description
    }
}
