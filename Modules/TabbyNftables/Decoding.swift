import CNFTNL

/// Turns libnftnl objects parsed from kernel replies back into Swift values.
enum NftDecoding {
    static func string(_ pointer: UnsafePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }

    static func table(_ object: OpaquePointer) -> NftTable? {
        guard let family = Nft.Family(rawValue: UInt8(nftnl_table_get_u32(object, UInt16(NFTNL_TABLE_FAMILY.rawValue))))
        else { return nil }
        return NftTable(
            family: family, name: string(nftnl_table_get_str(object, UInt16(NFTNL_TABLE_NAME.rawValue))),
            flags: NftTable.Flags(rawValue: nftnl_table_get_u32(object, UInt16(NFTNL_TABLE_FLAGS.rawValue))),
            handle: nftnl_table_get_u64(object, UInt16(NFTNL_TABLE_HANDLE.rawValue)))
    }

    static func chain(_ object: OpaquePointer) -> NftChain? {
        func isSet(_ attribute: nftnl_chain_attr) -> Bool { nftnl_chain_is_set(object, UInt16(attribute.rawValue)) }
        guard let family = Nft.Family(rawValue: UInt8(nftnl_chain_get_u32(object, UInt16(NFTNL_CHAIN_FAMILY.rawValue))))
        else { return nil }
        var chain = NftChain(
            family: family, table: string(nftnl_chain_get_str(object, UInt16(NFTNL_CHAIN_TABLE.rawValue))),
            name: string(nftnl_chain_get_str(object, UInt16(NFTNL_CHAIN_NAME.rawValue))),
            handle: nftnl_chain_get_u64(object, UInt16(NFTNL_CHAIN_HANDLE.rawValue)))
        if isSet(NFTNL_CHAIN_HOOKNUM) {
            chain.hook = NftChain.Hook(rawValue: nftnl_chain_get_u32(object, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue)))
            chain.priority = nftnl_chain_get_s32(object, UInt16(NFTNL_CHAIN_PRIO.rawValue))
            chain.type = NftChain.ChainType(
                rawValue: string(nftnl_chain_get_str(object, UInt16(NFTNL_CHAIN_TYPE.rawValue))))
            if isSet(NFTNL_CHAIN_POLICY) {
                chain.policy = NftChain.Policy(
                    rawValue: nftnl_chain_get_u32(object, UInt16(NFTNL_CHAIN_POLICY.rawValue)))
            }
        }
        return chain
    }

    static func set(_ object: OpaquePointer) -> NftSet? {
        func u32(_ attribute: nftnl_set_attr) -> UInt32 { nftnl_set_get_u32(object, UInt16(attribute.rawValue)) }
        guard let family = Nft.Family(rawValue: UInt8(u32(NFTNL_SET_FAMILY))) else { return nil }
        let flags = u32(NFTNL_SET_FLAGS)
        if flags & NFT_SET_ANONYMOUS.rawValue != 0 { return nil }
        // Concatenated key types are packed 6 bits per field, first field highest.
        var number = u32(NFTNL_SET_KEY_TYPE)
        var types: [NftKeyType] = []
        while number != 0 {
            guard let type = NftKeyType(rawValue: number & 0x3f) else { return nil }
            types.insert(type, at: 0)
            number >>= NftKeyType.concatBits
        }
        let isMap = flags & NFT_SET_MAP.rawValue != 0
        return NftSet(
            family: family, table: string(nftnl_set_get_str(object, UInt16(NFTNL_SET_TABLE.rawValue))),
            name: string(nftnl_set_get_str(object, UInt16(NFTNL_SET_NAME.rawValue))), keyType: types,
            isInterval: flags & NFT_SET_INTERVAL.rawValue != 0, isConstant: flags & NFT_SET_CONSTANT.rawValue != 0,
            dataType: isMap && u32(NFTNL_SET_DATA_TYPE) == NFT_DATA_VERDICT.rawValue ? .verdict : nil,
            handle: nftnl_set_get_u64(object, UInt16(NFTNL_SET_HANDLE.rawValue)))
    }

    /// One element entry as the kernel stores it (interval sets: start and end entries).
    struct RawElement: Sendable {
        var key: [UInt8]
        var isIntervalEnd: Bool
        var verdict: NftVerdict?
    }

    static func rawElements(_ object: OpaquePointer) -> [RawElement] {
        var result: [RawElement] = []
        guard let iterator = nftnl_set_elems_iter_create(object) else { return result }
        defer { nftnl_set_elems_iter_destroy(iterator) }
        while let element = nftnl_set_elems_iter_next(iterator) {
            var length: UInt32 = 0
            let key = nftnl_set_elem_get(element, UInt16(NFTNL_SET_ELEM_KEY), &length)
            let bytes = key.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(length))) } ?? []
            // nftnl_set_elem_get_u32 dereferences NULL for an attribute that is not set: check first.
            let flags =
                nftnl_set_elem_is_set(element, UInt16(NFTNL_SET_ELEM_FLAGS))
                ? nftnl_set_elem_get_u32(element, UInt16(NFTNL_SET_ELEM_FLAGS)) : 0
            var verdict: NftVerdict?
            if nftnl_set_elem_is_set(element, UInt16(NFTNL_SET_ELEM_VERDICT)) {
                let code = Int32(bitPattern: nftnl_set_elem_get_u32(element, UInt16(NFTNL_SET_ELEM_VERDICT)))
                let chain =
                    nftnl_set_elem_is_set(element, UInt16(NFTNL_SET_ELEM_CHAIN))
                    ? string(nftnl_set_elem_get_str(element, UInt16(NFTNL_SET_ELEM_CHAIN))) : nil
                verdict = NftVerdict(code: code, chain: chain)
            }
            result.append(
                RawElement(
                    key: bytes, isIntervalEnd: flags & NFT_SET_ELEM_INTERVAL_END.rawValue != 0, verdict: verdict))
        }
        return result
    }

    /// Typed elements. Interval sets: entries sorted by key, each start paired with the end entry that
    /// follows it (no end entry: the range reaches the top of the key space).
    static func elements(_ raw: [RawElement], of set: NftSet) -> [NftSetElement] {
        guard set.isInterval else {
            return raw.map { NftSetElement(key(from: $0.key, of: set), verdict: $0.verdict) }
        }
        let sorted = raw.sorted {
            $0.key.lexicographicallyPrecedes($1.key) || ($0.key == $1.key && $0.isIntervalEnd && !$1.isIntervalEnd)
        }
        var result: [NftSetElement] = []
        var index = 0
        while index < sorted.count {
            let start = sorted[index]
            index += 1
            if start.isIntervalEnd { continue }  // e.g. a leading "0.0.0.0 interval end" written by nft
            var end: [UInt8]?
            if index < sorted.count && sorted[index].isIntervalEnd {
                end = sorted[index].key
                index += 1
            }
            result.append(NftSetElement(rangeKey(start: start.key, endExclusive: end, of: set), verdict: start.verdict))
        }
        return result
    }

    static func rangeKey(start: [UInt8], endExclusive: [UInt8]?, of set: NftSet) -> NftSetKey {
        if set.keyType == [.ipv4Addr] || set.keyType == [.ipv6Addr],
            let prefix = NftPrefix.exact(start: start, endExclusive: endExclusive)
        {
            return .prefix(prefix)
        }
        let last = endExclusive.flatMap(NftPrefix.decrement) ?? [UInt8](repeating: 0xff, count: start.count)
        if set.keyType == [.inetService], start.count == 2 {
            let low = UInt16(start[0]) << 8 | UInt16(start[1])
            let high = UInt16(last[0]) << 8 | UInt16(last[1])
            return .serviceRange(low...high)
        }
        return .range(from: start, to: last)
    }

    static func key(from bytes: [UInt8], of set: NftSet) -> NftSetKey {
        guard set.keyType.count > 1 else { return field(bytes, type: set.keyType.first) }
        var fields: [NftSetKey] = []
        var offset = 0
        for type in set.keyType {
            let padded = (type.length + 3) / 4 * 4
            guard offset + padded <= bytes.count else { return .raw(bytes) }
            fields.append(field(Array(bytes[offset..<offset + type.length]), type: type))
            offset += padded
        }
        return .concat(fields)
    }

    static func field(_ bytes: [UInt8], type: NftKeyType?) -> NftSetKey {
        switch type {
        case .ipv4Addr? where bytes.count == 4: .address(bytes)
        case .ipv6Addr? where bytes.count == 16: .address(bytes)
        case .inetProto? where bytes.count >= 1: .inetProto(bytes[0])
        case .inetService? where bytes.count >= 2: .inetService(UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        case .ifname?: .ifname(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
        default: .raw(bytes)
        }
    }

    static func rule(_ object: OpaquePointer) -> NftRule? {
        guard let family = Nft.Family(rawValue: UInt8(nftnl_rule_get_u32(object, UInt16(NFTNL_RULE_FAMILY.rawValue))))
        else { return nil }
        var comment: String?
        if nftnl_rule_is_set(object, UInt16(NFTNL_RULE_USERDATA.rawValue)) {
            var length: UInt32 = 0
            if let data = nftnl_rule_get_data(object, UInt16(NFTNL_RULE_USERDATA.rawValue), &length) {
                comment = RuleUserdata.comment(in: Array(UnsafeRawBufferPointer(start: data, count: Int(length))))
            }
        }
        var expressions: [NftExpression] = []
        if let iterator = nftnl_expr_iter_create(object) {
            defer { nftnl_expr_iter_destroy(iterator) }
            while let expression = nftnl_expr_iter_next(iterator) {
                expressions.append(Self.expression(expression))
            }
        }
        return NftRule(
            family: family, table: string(nftnl_rule_get_str(object, UInt16(NFTNL_RULE_TABLE.rawValue))),
            chain: string(nftnl_rule_get_str(object, UInt16(NFTNL_RULE_CHAIN.rawValue))), expressions: expressions,
            comment: comment, handle: nftnl_rule_get_u64(object, UInt16(NFTNL_RULE_HANDLE.rawValue)))
    }

    static func expression(_ object: OpaquePointer) -> NftExpression {
        func u32(_ attribute: Int) -> UInt32 { nftnl_expr_get_u32(object, UInt16(attribute)) }
        func isSet(_ attribute: Int) -> Bool { nftnl_expr_is_set(object, UInt16(attribute)) }
        func register(_ attribute: Int) -> NftRegister { NftRegister(rawValue: u32(attribute)) }
        func data(_ attribute: Int) -> [UInt8] {
            var length: UInt32 = 0
            guard let pointer = nftnl_expr_get(object, UInt16(attribute), &length) else { return [] }
            return Array(UnsafeRawBufferPointer(start: pointer, count: Int(length)))
        }
        let name = string(nftnl_expr_get_str(object, UInt16(NFTNL_EXPR_NAME)))
        switch name {
        case "meta":
            guard let key = NftMetaKey(rawValue: u32(NFTNL_EXPR_META_KEY)) else {
                return .unsupported("meta key \(u32(NFTNL_EXPR_META_KEY))")
            }
            return isSet(NFTNL_EXPR_META_DREG)
                ? .meta(key, into: register(NFTNL_EXPR_META_DREG)) : .metaSet(key, from: register(NFTNL_EXPR_META_SREG))
        case "payload":
            guard let base = NftPayloadBase(rawValue: u32(NFTNL_EXPR_PAYLOAD_BASE)), isSet(NFTNL_EXPR_PAYLOAD_DREG)
            else { return .unsupported("payload write or unknown base") }
            return .payload(
                base, offset: u32(NFTNL_EXPR_PAYLOAD_OFFSET), length: u32(NFTNL_EXPR_PAYLOAD_LEN),
                into: register(NFTNL_EXPR_PAYLOAD_DREG))
        case "cmp":
            guard let op = NftCmpOp(rawValue: u32(NFTNL_EXPR_CMP_OP)) else { return .unsupported("cmp op") }
            return .cmp(op, register(NFTNL_EXPR_CMP_SREG), data(NFTNL_EXPR_CMP_DATA))
        case "bitwise":
            return .bitwise(
                source: register(NFTNL_EXPR_BITWISE_SREG), destination: register(NFTNL_EXPR_BITWISE_DREG),
                mask: data(NFTNL_EXPR_BITWISE_MASK), xor: data(NFTNL_EXPR_BITWISE_XOR))
        case "lookup":
            return .lookup(
                set: string(nftnl_expr_get_str(object, UInt16(NFTNL_EXPR_LOOKUP_SET))),
                source: register(NFTNL_EXPR_LOOKUP_SREG),
                destination: isSet(NFTNL_EXPR_LOOKUP_DREG) ? register(NFTNL_EXPR_LOOKUP_DREG) : nil,
                inverted: isSet(NFTNL_EXPR_LOOKUP_FLAGS)
                    && u32(NFTNL_EXPR_LOOKUP_FLAGS) & NFT_LOOKUP_F_INV.rawValue != 0)
        case "range":
            guard let op = NftRangeOp(rawValue: u32(NFTNL_EXPR_RANGE_OP)) else { return .unsupported("range op") }
            return .range(
                op, register(NFTNL_EXPR_RANGE_SREG), from: data(NFTNL_EXPR_RANGE_FROM_DATA),
                to: data(NFTNL_EXPR_RANGE_TO_DATA))
        case "ct":
            guard let key = NftCtKey(rawValue: u32(NFTNL_EXPR_CT_KEY)), isSet(NFTNL_EXPR_CT_DREG) else {
                return .unsupported("ct key \(u32(NFTNL_EXPR_CT_KEY))")
            }
            return .ct(key, into: register(NFTNL_EXPR_CT_DREG))
        case "immediate":
            let destination = register(NFTNL_EXPR_IMM_DREG)
            guard destination == .verdict else { return .immediate(data(NFTNL_EXPR_IMM_DATA), into: destination) }
            let chain =
                isSet(NFTNL_EXPR_IMM_CHAIN) ? string(nftnl_expr_get_str(object, UInt16(NFTNL_EXPR_IMM_CHAIN))) : nil
            guard let verdict = NftVerdict(code: Int32(bitPattern: u32(NFTNL_EXPR_IMM_VERDICT)), chain: chain) else {
                return .unsupported("verdict \(Int32(bitPattern: u32(NFTNL_EXPR_IMM_VERDICT)))")
            }
            return .verdict(verdict)
        case "counter":
            return .counter
        case "masq":
            return .masquerade
        case "log":
            return .log(
                prefix: isSet(NFTNL_EXPR_LOG_PREFIX)
                    ? string(nftnl_expr_get_str(object, UInt16(NFTNL_EXPR_LOG_PREFIX))) : nil)
        default:
            return .unsupported(name)
        }
    }
}
