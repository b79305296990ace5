import CMNL
import CNFTNL
import Glibc

/// nf_tables message types this layer sends, with their kernel names. The DESTROY* types are
/// newer (kernel 6.3) than the installed UAPI header, so their numbers are spelled out here.
enum NftMessageType: UInt16, Sendable {
    case newTable = 0
    case getTable, delTable, newChain, getChain, delChain, newRule, getRule, delRule
    case newSet, getSet, delSet, newSetElem, getSetElem, delSetElem
    case destroyTable = 26
    case destroyChain = 27
    case destroyRule = 28
    case destroySet = 29
    case destroySetElem = 30

    var kernelName: String {
        switch self {
        case .newTable: "NFT_MSG_NEWTABLE"
        case .getTable: "NFT_MSG_GETTABLE"
        case .delTable: "NFT_MSG_DELTABLE"
        case .newChain: "NFT_MSG_NEWCHAIN"
        case .getChain: "NFT_MSG_GETCHAIN"
        case .delChain: "NFT_MSG_DELCHAIN"
        case .newRule: "NFT_MSG_NEWRULE"
        case .getRule: "NFT_MSG_GETRULE"
        case .delRule: "NFT_MSG_DELRULE"
        case .newSet: "NFT_MSG_NEWSET"
        case .getSet: "NFT_MSG_GETSET"
        case .delSet: "NFT_MSG_DELSET"
        case .newSetElem: "NFT_MSG_NEWSETELEM"
        case .getSetElem: "NFT_MSG_GETSETELEM"
        case .delSetElem: "NFT_MSG_DELSETELEM"
        case .destroyTable: "NFT_MSG_DESTROYTABLE"
        case .destroyChain: "NFT_MSG_DESTROYCHAIN"
        case .destroyRule: "NFT_MSG_DESTROYRULE"
        case .destroySet: "NFT_MSG_DESTROYSET"
        case .destroySetElem: "NFT_MSG_DESTROYSETELEM"
        }
    }
}

/// Builds netlink messages with libnftnl into a scratch buffer and appends them to `bytes`.
///
/// libnftnl writes attributes with libmnl, which does not check the buffer's end, so the scratch
/// buffer is sized well above the largest message this encoder produces (set elements are chunked to
/// stay below `elementChunkBytes`, because NFTA_SET_ELEM_LIST_ELEMENTS is a nest with a 16-bit length).
struct BatchEncoder {
    static let scratchSize = 1 << 18
    /// Estimated attribute bytes per NEWSETELEM message; well under the nest's 65,535 limit.
    static let elementChunkBytes = 32_768

    private(set) var bytes: [UInt8] = []
    private(set) var messages: [(sequence: UInt32, description: String)] = []
    private var sequence: UInt32
    private let scratch: UnsafeMutableRawPointer
    /// How much of `scratch` the last message used. libmnl 1.0.4 does not zero attribute padding, so
    /// the used part is cleared before each message to keep padding zero (and the bytes deterministic).
    private var dirtyBytes = Self.scratchSize
    private var nextSetID: UInt32 = 1
    /// Sets created earlier in this batch, by "family table name", with their batch-local IDs.
    private var setIDs: [String: UInt32] = [:]

    init(firstSequence: UInt32) {
        sequence = firstSequence
        scratch = UnsafeMutableRawPointer.allocate(byteCount: Self.scratchSize, alignment: 16)
    }

    mutating func encode(_ operations: [NftBatch.Operation]) throws(Nft.Error) {
        bytes.reserveCapacity(operations.count * 128)
        appendRaw { buffer, seq in nftnl_batch_begin(buffer, seq) }
        for operation in operations {
            try encode(operation)
        }
        appendRaw { buffer, seq in nftnl_batch_end(buffer, seq) }
    }

    /// Returns the result and frees the scratch buffer; the encoder must not be used afterwards.
    consuming func finish() -> EncodedBatch {
        scratch.deallocate()
        return EncodedBatch(bytes: bytes, messages: messages, nextSequence: sequence)
    }

    private func clearScratch() {
        memset(scratch, 0, dirtyBytes)
    }

    private mutating func takeSequence() -> UInt32 {
        let current = sequence
        sequence &+= 1
        return current
    }

    private mutating func appendRaw(
        _ build: (UnsafeMutablePointer<CChar>, UInt32) -> UnsafeMutablePointer<nlmsghdr>?
    ) {
        let seq = takeSequence()
        clearScratch()
        guard let header = build(scratch.assumingMemoryBound(to: CChar.self), seq) else { return }
        dirtyBytes = Int(header.pointee.nlmsg_len)
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: dirtyBytes))
    }

    /// One object message: header (with NLM_F_REQUEST|NLM_F_ACK) plus the payload `build` adds.
    private mutating func append(
        _ type: NftMessageType, family: Nft.Family, flags: UInt16, describedAs description: String,
        _ build: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) {
        let seq = takeSequence()
        clearScratch()
        let header = nftnl_nlmsg_build_hdr(
            scratch.assumingMemoryBound(to: CChar.self), type.rawValue, UInt16(family.rawValue),
            flags | UInt16(NLM_F_ACK), seq)!
        build(header)
        dirtyBytes = Int(header.pointee.nlmsg_len)
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: dirtyBytes))
        messages.append((seq, "\(type.kernelName) \(description)"))
    }

    private mutating func encode(_ operation: NftBatch.Operation) throws(Nft.Error) {
        switch operation {
        case .addTable(let table):
            try checkName(table.name, what: "table")
            let object = NftnlObjects.table(family: table.family, name: table.name, flags: table.flags)
            defer { nftnl_table_free(object) }
            append(
                .newTable, family: table.family, flags: UInt16(NLM_F_CREATE),
                describedAs: "\(table.family) \(table.name)"
            ) {
                nftnl_table_nlmsg_build_payload($0, object)
            }
        case .deleteTable(let family, let name, let ifExists):
            let object = NftnlObjects.table(family: family, name: name, flags: [])
            defer { nftnl_table_free(object) }
            append(ifExists ? .destroyTable : .delTable, family: family, flags: 0, describedAs: "\(family) \(name)") {
                nftnl_table_nlmsg_build_payload($0, object)
            }
        case .addChain(let chain):
            try checkName(chain.name, what: "chain")
            let object = NftnlObjects.chain(chain)
            defer { nftnl_chain_free(object) }
            append(
                .newChain, family: chain.family, flags: UInt16(NLM_F_CREATE),
                describedAs: "\(chain.family) \(chain.table) \(chain.name)"
            ) { nftnl_chain_nlmsg_build_payload($0, object) }
        case .deleteChain(let family, let table, let name, let ifExists):
            let object = NftnlObjects.chain(NftChain(family: family, table: table, name: name))
            defer { nftnl_chain_free(object) }
            append(
                ifExists ? .destroyChain : .delChain, family: family, flags: 0,
                describedAs: "\(family) \(table) \(name)"
            ) { nftnl_chain_nlmsg_build_payload($0, object) }
        case .flushChain(let family, let table, let name):
            let object = nftnl_rule_alloc()!
            defer { nftnl_rule_free(object) }
            nftnl_rule_set_str(object, UInt16(NFTNL_RULE_TABLE.rawValue), table)
            nftnl_rule_set_str(object, UInt16(NFTNL_RULE_CHAIN.rawValue), name)
            append(.delRule, family: family, flags: 0, describedAs: "\(family) \(table) \(name) (flush chain)") {
                nftnl_rule_nlmsg_build_payload($0, object)
            }
        case .addSet(let set):
            try checkName(set.name, what: "set")
            guard !set.keyType.isEmpty, set.keyType.count <= 5 else {
                throw .malformed(what: "set \(set.reference)", reason: "a key needs 1 to 5 types")
            }
            if set.isInterval && set.isConcatenation {
                throw .malformed(
                    what: "set \(set.reference)",
                    reason: "interval sets with concatenated keys (pipapo) are not supported yet")
            }
            let id = nextSetID
            nextSetID += 1
            setIDs[set.reference] = id
            let object = NftnlObjects.set(set, id: id)
            defer { nftnl_set_free(object) }
            append(.newSet, family: set.family, flags: UInt16(NLM_F_CREATE), describedAs: set.reference) {
                nftnl_set_nlmsg_build_payload($0, object)
            }
        case .deleteSet(let family, let table, let name, let ifExists):
            let object = nftnl_set_alloc()!
            defer { nftnl_set_free(object) }
            nftnl_set_set_str(object, UInt16(NFTNL_SET_TABLE.rawValue), table)
            nftnl_set_set_str(object, UInt16(NFTNL_SET_NAME.rawValue), name)
            append(
                ifExists ? .destroySet : .delSet, family: family, flags: 0, describedAs: "\(family) \(table) \(name)"
            ) { nftnl_set_nlmsg_build_payload($0, object) }
        case .addElements(let set, let elements):
            try encodeElements(elements, of: set, type: .newSetElem, flags: UInt16(NLM_F_CREATE))
        case .deleteElements(let set, let elements):
            try encodeElements(elements, of: set, type: .delSetElem, flags: 0)
        case .flushSet(let set):
            let object = NftnlObjects.elementList(of: set, id: setIDs[set.reference])
            defer { nftnl_set_free(object) }
            append(.delSetElem, family: set.family, flags: 0, describedAs: "\(set.reference) (flush set)") {
                nftnl_set_elems_nlmsg_build_payload($0, object)
            }
        case .addRule(let rule, let position):
            if let comment = rule.comment, comment.utf8.count > NftRule.maxCommentLength {
                throw .malformed(
                    what: "rule in \(rule.family) \(rule.table) \(rule.chain)",
                    reason: "comment longer than \(NftRule.maxCommentLength) bytes")
            }
            let object = try NftnlObjects.rule(rule, setIDs: setIDs)
            defer { nftnl_rule_free(object) }
            var flags = UInt16(NLM_F_CREATE)
            switch position {
            case .append: flags |= UInt16(NLM_F_APPEND)
            case .prepend: break
            case .after(let handle):
                flags |= UInt16(NLM_F_APPEND)
                nftnl_rule_set_u64(object, UInt16(NFTNL_RULE_POSITION.rawValue), handle)
            case .before(let handle):
                nftnl_rule_set_u64(object, UInt16(NFTNL_RULE_POSITION.rawValue), handle)
            case .replacing(let handle):
                flags = UInt16(NLM_F_REPLACE)
                nftnl_rule_set_u64(object, UInt16(NFTNL_RULE_HANDLE.rawValue), handle)
            }
            append(.newRule, family: rule.family, flags: flags, describedAs: Self.describe(rule)) {
                nftnl_rule_nlmsg_build_payload($0, object)
            }
        case .deleteRule(let family, let table, let chain, let handle):
            let object = nftnl_rule_alloc()!
            defer { nftnl_rule_free(object) }
            nftnl_rule_set_str(object, UInt16(NFTNL_RULE_TABLE.rawValue), table)
            nftnl_rule_set_str(object, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
            nftnl_rule_set_u64(object, UInt16(NFTNL_RULE_HANDLE.rawValue), handle)
            append(.delRule, family: family, flags: 0, describedAs: "\(family) \(table) \(chain) handle \(handle)") {
                nftnl_rule_nlmsg_build_payload($0, object)
            }
        }
    }

    /// Elements in chunks, each its own message, so no NFTA_SET_ELEM_LIST_ELEMENTS nest overflows.
    private mutating func encodeElements(
        _ elements: [NftSetElement], of set: NftSet, type: NftMessageType, flags: UInt16
    ) throws(Nft.Error) {
        var start = 0
        while start < elements.count {
            var end = start
            var estimate = 0
            while end < elements.count && (end == start || estimate < Self.elementChunkBytes) {
                let element = elements[end]
                // Two entries per range in interval sets; each entry carries key, flags and nest headers.
                estimate += (set.isInterval ? 2 : 1) * (set.keyLength + 48) + (element.verdict?.chain?.utf8.count ?? 0)
                end += 1
            }
            let chunk = elements[start..<end]
            let object = NftnlObjects.elementList(of: set, id: setIDs[set.reference])
            defer { nftnl_set_free(object) }
            for element in chunk {
                for entry in try NftElementEncoding.entries(for: element, in: set) {
                    nftnl_set_elem_add(object, entry)
                }
            }
            let summary = chunk.prefix(3).map(\.description).joined(separator: ", ")
            let more = chunk.count > 3 ? ", ... (\(chunk.count) elements)" : ""
            append(type, family: set.family, flags: flags, describedAs: "\(set.reference) {\(summary)\(more)}") {
                nftnl_set_elems_nlmsg_build_payload($0, object)
            }
            start = end
        }
    }

    private func checkName(_ name: String, what: String) throws(Nft.Error) {
        guard !name.isEmpty, name.utf8.count < Nft.nameMaxLength else {
            throw .malformed(what: "\(what) \"\(name)\"", reason: "names need 1 to \(Nft.nameMaxLength - 1) bytes")
        }
    }

    /// `inet tabby from-a "comment" (jump x)`: enough to find the rule that failed.
    static func describe(_ rule: NftRule) -> String {
        var text = "\(rule.family) \(rule.table) \(rule.chain)"
        if let comment = rule.comment { text += " \"\(comment)\"" }
        let targets = rule.expressions.compactMap { expression -> String? in
            switch expression {
            case .verdict(let verdict): verdict.description
            case .lookup(let set, _, _, _): "@\(set)"
            default: nil
            }
        }
        if !targets.isEmpty { text += " (\(targets.joined(separator: ", ")))" }
        return text
    }
}

/// Turns Swift values into libnftnl objects. Callers free what they get.
enum NftnlObjects {
    static func table(family: Nft.Family, name: String, flags: NftTable.Flags) -> OpaquePointer {
        let object = nftnl_table_alloc()!
        nftnl_table_set_str(object, UInt16(NFTNL_TABLE_NAME.rawValue), name)
        nftnl_table_set_u32(object, UInt16(NFTNL_TABLE_FAMILY.rawValue), UInt32(family.rawValue))
        if !flags.isEmpty {
            nftnl_table_set_u32(object, UInt16(NFTNL_TABLE_FLAGS.rawValue), flags.rawValue)
        }
        return object
    }

    static func chain(_ chain: NftChain) -> OpaquePointer {
        let object = nftnl_chain_alloc()!
        nftnl_chain_set_str(object, UInt16(NFTNL_CHAIN_TABLE.rawValue), chain.table)
        nftnl_chain_set_str(object, UInt16(NFTNL_CHAIN_NAME.rawValue), chain.name)
        if let hook = chain.hook {
            nftnl_chain_set_u32(object, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue), hook.rawValue)
            nftnl_chain_set_s32(object, UInt16(NFTNL_CHAIN_PRIO.rawValue), chain.priority ?? 0)
            nftnl_chain_set_str(object, UInt16(NFTNL_CHAIN_TYPE.rawValue), (chain.type ?? .filter).rawValue)
            if let policy = chain.policy {
                nftnl_chain_set_u32(object, UInt16(NFTNL_CHAIN_POLICY.rawValue), policy.rawValue)
            }
        }
        return object
    }

    static func set(_ set: NftSet, id: UInt32) -> OpaquePointer {
        let object = nftnl_set_alloc()!
        nftnl_set_set_str(object, UInt16(NFTNL_SET_TABLE.rawValue), set.table)
        nftnl_set_set_str(object, UInt16(NFTNL_SET_NAME.rawValue), set.name)
        nftnl_set_set_u32(object, UInt16(NFTNL_SET_FAMILY.rawValue), UInt32(set.family.rawValue))
        nftnl_set_set_u32(object, UInt16(NFTNL_SET_ID.rawValue), id)
        var flags: UInt32 = 0
        if set.isConstant { flags |= NFT_SET_CONSTANT.rawValue }
        if set.isInterval { flags |= NFT_SET_INTERVAL.rawValue }
        if set.isMap { flags |= NFT_SET_MAP.rawValue }
        // NFT_SET_CONCAT only matters to the kernel for interval concatenations (pipapo), which are not
        // supported yet; nft does not set it for plain concatenations either.
        nftnl_set_set_u32(object, UInt16(NFTNL_SET_FLAGS.rawValue), flags)
        nftnl_set_set_u32(object, UInt16(NFTNL_SET_KEY_TYPE.rawValue), set.keyTypeNumber)
        nftnl_set_set_u32(object, UInt16(NFTNL_SET_KEY_LEN.rawValue), UInt32(set.keyLength))
        if set.dataType == .verdict {
            // The kernel sizes verdict data itself (sizeof(struct nft_verdict)); no DATA_LEN needed.
            nftnl_set_set_u32(object, UInt16(NFTNL_SET_DATA_TYPE.rawValue), NFT_DATA_VERDICT.rawValue)
        }
        let userdata = SetUserdata.encode(set)
        userdata.withUnsafeBytes {
            _ = nftnl_set_set_data(object, UInt16(NFTNL_SET_USERDATA.rawValue), $0.baseAddress, UInt32($0.count))
        }
        return object
    }

    /// An nftnl_set carrying only what a NEWSETELEM/DELSETELEM message needs to name the set.
    static func elementList(of set: NftSet, id: UInt32?) -> OpaquePointer {
        let object = nftnl_set_alloc()!
        nftnl_set_set_str(object, UInt16(NFTNL_SET_TABLE.rawValue), set.table)
        nftnl_set_set_str(object, UInt16(NFTNL_SET_NAME.rawValue), set.name)
        if let id {
            nftnl_set_set_u32(object, UInt16(NFTNL_SET_ID.rawValue), id)
        }
        return object
    }

    static func rule(_ rule: NftRule, setIDs: [String: UInt32]) throws(Nft.Error) -> OpaquePointer {
        let object = nftnl_rule_alloc()!
        nftnl_rule_set_str(object, UInt16(NFTNL_RULE_TABLE.rawValue), rule.table)
        nftnl_rule_set_str(object, UInt16(NFTNL_RULE_CHAIN.rawValue), rule.chain)
        nftnl_rule_set_u32(object, UInt16(NFTNL_RULE_FAMILY.rawValue), UInt32(rule.family.rawValue))
        if let comment = rule.comment {
            let userdata = RuleUserdata.encode(comment: comment)
            userdata.withUnsafeBytes {
                _ = nftnl_rule_set_data(object, UInt16(NFTNL_RULE_USERDATA.rawValue), $0.baseAddress, UInt32($0.count))
            }
        }
        for expression in rule.expressions {
            let setID: UInt32? =
                if case .lookup(let set, _, _, _) = expression {
                    setIDs["\(rule.family) \(rule.table) \(set)"]
                } else { nil }
            do {
                nftnl_rule_add_expr(object, try Self.expression(expression, setID: setID))
            } catch {
                nftnl_rule_free(object)
                throw error
            }
        }
        return object
    }

    static func expression(_ expression: NftExpression, setID: UInt32?) throws(Nft.Error) -> OpaquePointer {
        func make(_ name: String) -> OpaquePointer { nftnl_expr_alloc(name)! }
        func u32(_ object: OpaquePointer, _ attribute: Int, _ value: UInt32) {
            nftnl_expr_set_u32(object, UInt16(attribute), value)
        }
        func data(_ object: OpaquePointer, _ attribute: Int, _ bytes: [UInt8]) {
            bytes.withUnsafeBytes { _ = nftnl_expr_set(object, UInt16(attribute), $0.baseAddress, UInt32($0.count)) }
        }
        func checkData(_ bytes: [UInt8]) throws(Nft.Error) {
            // NFT_DATA_VALUE_MAXLEN: one register's worth of concatenated fields (64 bytes).
            guard !bytes.isEmpty, bytes.count <= 64 else {
                throw .malformed(what: "expression \(expression)", reason: "data must be 1 to 64 bytes")
            }
        }
        switch expression {
        case .meta(let key, let register):
            let object = make("meta")
            u32(object, NFTNL_EXPR_META_KEY, key.rawValue)
            u32(object, NFTNL_EXPR_META_DREG, register.rawValue)
            return object
        case .metaSet(let key, let register):
            let object = make("meta")
            u32(object, NFTNL_EXPR_META_KEY, key.rawValue)
            u32(object, NFTNL_EXPR_META_SREG, register.rawValue)
            return object
        case .payload(let base, let offset, let length, let register):
            let object = make("payload")
            u32(object, NFTNL_EXPR_PAYLOAD_DREG, register.rawValue)
            u32(object, NFTNL_EXPR_PAYLOAD_BASE, base.rawValue)
            u32(object, NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            u32(object, NFTNL_EXPR_PAYLOAD_LEN, length)
            return object
        case .cmp(let op, let register, let bytes):
            try checkData(bytes)
            let object = make("cmp")
            u32(object, NFTNL_EXPR_CMP_SREG, register.rawValue)
            u32(object, NFTNL_EXPR_CMP_OP, op.rawValue)
            data(object, NFTNL_EXPR_CMP_DATA, bytes)
            return object
        case .bitwise(let source, let destination, let mask, let xor):
            try checkData(mask)
            guard mask.count == xor.count else {
                throw .malformed(what: "expression \(expression)", reason: "mask and xor differ in length")
            }
            let object = make("bitwise")
            u32(object, NFTNL_EXPR_BITWISE_SREG, source.rawValue)
            u32(object, NFTNL_EXPR_BITWISE_DREG, destination.rawValue)
            u32(object, NFTNL_EXPR_BITWISE_LEN, UInt32(mask.count))
            data(object, NFTNL_EXPR_BITWISE_MASK, mask)
            data(object, NFTNL_EXPR_BITWISE_XOR, xor)
            return object
        case .lookup(let set, let source, let destination, let inverted):
            let object = make("lookup")
            u32(object, NFTNL_EXPR_LOOKUP_SREG, source.rawValue)
            if let destination {
                u32(object, NFTNL_EXPR_LOOKUP_DREG, destination.rawValue)
            }
            nftnl_expr_set_str(object, UInt16(NFTNL_EXPR_LOOKUP_SET), set)
            if let setID {
                u32(object, NFTNL_EXPR_LOOKUP_SET_ID, setID)
            }
            if inverted {
                u32(object, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV.rawValue)
            }
            return object
        case .range(let op, let register, let from, let to):
            try checkData(from)
            try checkData(to)
            let object = make("range")
            u32(object, NFTNL_EXPR_RANGE_SREG, register.rawValue)
            u32(object, NFTNL_EXPR_RANGE_OP, op.rawValue)
            data(object, NFTNL_EXPR_RANGE_FROM_DATA, from)
            data(object, NFTNL_EXPR_RANGE_TO_DATA, to)
            return object
        case .ct(let key, let register):
            let object = make("ct")
            u32(object, NFTNL_EXPR_CT_KEY, key.rawValue)
            u32(object, NFTNL_EXPR_CT_DREG, register.rawValue)
            return object
        case .immediate(let bytes, let register):
            try checkData(bytes)
            let object = make("immediate")
            u32(object, NFTNL_EXPR_IMM_DREG, register.rawValue)
            data(object, NFTNL_EXPR_IMM_DATA, bytes)
            return object
        case .verdict(let verdict):
            let object = make("immediate")
            u32(object, NFTNL_EXPR_IMM_DREG, NftRegister.verdict.rawValue)
            u32(object, NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: verdict.code))
            if let chain = verdict.chain {
                nftnl_expr_set_str(object, UInt16(NFTNL_EXPR_IMM_CHAIN), chain)
            }
            return object
        case .counter:
            return make("counter")
        case .masquerade:
            return make("masq")
        case .log(let prefix):
            let object = make("log")
            if let prefix {
                nftnl_expr_set_str(object, UInt16(NFTNL_EXPR_LOG_PREFIX), prefix)
            }
            return object
        case .unsupported(let name):
            throw .malformed(what: "expression \(name)", reason: "cannot encode an expression read back as unsupported")
        }
    }
}

/// Rule userdata in nft's TLV format: `{type: u8, length: u8, value}`; the comment is type
/// NFTNL_UDATA_RULE_COMMENT (0), NUL-terminated, so `nft list ruleset` prints it.
enum RuleUserdata {
    static let commentType: UInt8 = 0

    static func encode(comment: String) -> [UInt8] {
        let value = Array(comment.utf8) + [0]
        return [commentType, UInt8(value.count)] + value
    }

    static func comment(in userdata: [UInt8]) -> String? {
        var index = 0
        while index + 2 <= userdata.count {
            let type = userdata[index]
            let length = Int(userdata[index + 1])
            let start = index + 2
            guard start + length <= userdata.count else { return nil }
            if type == commentType {
                let value = userdata[start..<start + length]
                return String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            }
            index = start + length
        }
        return nil
    }
}

/// Set userdata in nft's TLV format. The kernel ignores it, but `nft list` needs the key's byte order to
/// print elements: without it an `ifname` key (host byte order to nft) prints as "". Written as nft 1.0.6
/// writes it: NFTNL_UDATA_SET_KEYBYTEORDER (0), and NFTNL_UDATA_SET_DATABYTEORDER (1) for maps, each a
/// host-order u32 of nft's `enum byteorder` (0 invalid, 1 host, 2 big endian).
enum SetUserdata {
    static func encode(_ set: NftSet) -> [UInt8] {
        let keyOrder: UInt32
        if set.isConcatenation {
            keyOrder = 0  // nft describes each field by its own type
        } else {
            switch set.keyType[0] {
            case .ifname, .mark: keyOrder = 1
            case .ipv4Addr, .ipv6Addr, .inetProto, .inetService: keyOrder = 2
            }
        }
        var bytes: [UInt8] = [0, 4] + hostBytes(keyOrder)
        if set.isMap {
            bytes += [1, 4] + hostBytes(0)
        }
        return bytes
    }
}

/// Set element keys as the kernel wants them.
enum NftElementEncoding {
    /// The libnftnl element(s) for one element: one, or for interval sets a start element plus an end
    /// element (first value after the range, flagged NFT_SET_ELEM_INTERVAL_END) unless the range
    /// reaches the top of the key space.
    static func entries(for element: NftSetElement, in set: NftSet) throws(Nft.Error) -> [OpaquePointer] {
        let what = "element \(element) of set \(set.reference)"
        if set.isMap != (element.verdict != nil) {
            throw .malformed(what: what, reason: set.isMap ? "a map element needs a verdict" : "a set has no data")
        }
        let start: [UInt8]
        var endExclusive: [UInt8]?
        if set.isInterval {
            (start, endExclusive) = try range(element.key, set: set, what: what)
        } else {
            start = try keyBytes(element.key, set: set, what: what)
        }
        var result: [OpaquePointer] = []
        let first = nftnl_set_elem_alloc()!
        setKey(first, start)
        if let verdict = element.verdict {
            nftnl_set_elem_set_u32(first, UInt16(NFTNL_SET_ELEM_VERDICT), UInt32(bitPattern: verdict.code))
            if let chain = verdict.chain {
                nftnl_set_elem_set_str(first, UInt16(NFTNL_SET_ELEM_CHAIN), chain)
            }
        }
        result.append(first)
        if let endExclusive {
            let end = nftnl_set_elem_alloc()!
            setKey(end, endExclusive)
            nftnl_set_elem_set_u32(end, UInt16(NFTNL_SET_ELEM_FLAGS), NFT_SET_ELEM_INTERVAL_END.rawValue)
            result.append(end)
        }
        return result
    }

    private static func setKey(_ element: OpaquePointer, _ key: [UInt8]) {
        key.withUnsafeBytes {
            _ = nftnl_set_elem_set(element, UInt16(NFTNL_SET_ELEM_KEY), $0.baseAddress, UInt32($0.count))
        }
    }

    /// Start and exclusive end of an interval key.
    static func range(_ key: NftSetKey, set: NftSet, what: String) throws(Nft.Error) -> ([UInt8], [UInt8]?) {
        let length = set.keyLength
        switch key {
        case .prefix(let prefix):
            guard prefix.address.count == length else {
                throw .malformed(what: what, reason: "prefix length does not match the set's \(length)-byte key")
            }
            return (prefix.address, prefix.endExclusive)
        case .serviceRange(let ports):
            guard set.keyType == [.inetService] else {
                throw .malformed(what: what, reason: "a port range needs an inet_service set")
            }
            return (bigEndian16(ports.lowerBound), NftPrefix.increment(bigEndian16(ports.upperBound)))
        case .range(let from, let to):
            guard from.count == length, to.count == length, from.lexicographicallyPrecedes(to) || from == to else {
                throw .malformed(what: what, reason: "range ends must be \(length) bytes, low to high")
            }
            return (from, NftPrefix.increment(to))
        default:
            let bytes = try keyBytes(key, set: set, what: what)
            return (bytes, NftPrefix.increment(bytes))
        }
    }

    /// The exact key bytes for a non-interval key.
    static func keyBytes(_ key: NftSetKey, set: NftSet, what: String) throws(Nft.Error) -> [UInt8] {
        if case .concat(let fields) = key {
            guard fields.count == set.keyType.count, set.isConcatenation else {
                throw .malformed(what: what, reason: "the key has \(fields.count) fields, the set \(set.keyType.count)")
            }
            var bytes: [UInt8] = []
            for (field, type) in zip(fields, set.keyType) {
                var value = try fieldBytes(field, type: type, what: what)
                value += [UInt8](repeating: 0, count: (value.count + 3) / 4 * 4 - value.count)
                bytes += value
            }
            return bytes
        }
        if case .raw(let bytes) = key {
            guard bytes.count == set.keyLength else {
                throw .malformed(what: what, reason: "raw key must be \(set.keyLength) bytes")
            }
            return bytes
        }
        guard set.keyType.count == 1 else {
            throw .malformed(what: what, reason: "the set's key is a concatenation: use .concat")
        }
        return try fieldBytes(key, type: set.keyType[0], what: what)
    }

    private static func fieldBytes(_ key: NftSetKey, type: NftKeyType, what: String) throws(Nft.Error) -> [UInt8] {
        switch (key, type) {
        case (.address(let bytes), .ipv4Addr) where bytes.count == 4: return bytes
        case (.address(let bytes), .ipv6Addr) where bytes.count == 16: return bytes
        case (.prefix(let prefix), .ipv4Addr) where prefix.length == 32: return prefix.address
        case (.prefix(let prefix), .ipv6Addr) where prefix.length == 128: return prefix.address
        case (.inetProto(let proto), .inetProto): return [proto]
        case (.inetService(let port), .inetService): return bigEndian16(port)
        case (.ifname(let name), .ifname):
            guard name.utf8.count < Nft.interfaceNameSize else {
                throw .malformed(what: what, reason: "interface names have at most 15 bytes")
            }
            return interfaceNameBytes(name)
        case (.raw(let bytes), _) where bytes.count == type.length: return bytes
        default:
            throw .malformed(what: what, reason: "key \(key) does not fit type \(type)")
        }
    }
}
