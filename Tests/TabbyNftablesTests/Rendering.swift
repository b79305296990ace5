import CMNL
import CNFTNL
import TabbyNftables

/// Renders every message of an encoded batch as libnftnl prints it after parsing the bytes back: an
/// independent reading of what we built (libnftnl's parser, not our encoder), one block per message.
func render(_ bytes: [UInt8]) -> [String] {
    var result: [String] = []
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
    defer { buffer.deallocate() }
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    var text = [CChar](repeating: 0, count: 8_192)
    for header in FakeNetfilterTransport.headers(in: bytes) {
        let offset = header.bytes.withUnsafeBytes { _ in 0 } + bytes.offset(ofSequence: header.sequence)
        let message = (buffer + offset).assumingMemoryBound(to: nlmsghdr.self)
        let type = header.type & 0xff
        let prefix = "\(name(header.type)) seq=\(header.sequence) flags=0x\(String(header.flags, radix: 16))"
        var body = ""
        switch header.type >> 8 == 10 ? type : 0xffff {
        case UInt16(NFT_MSG_NEWTABLE.rawValue), UInt16(NFT_MSG_DELTABLE.rawValue):
            let object = nftnl_table_alloc()!
            nftnl_table_nlmsg_parse(message, object)
            nftnl_table_snprintf(&text, text.count, object, 0, 0)
            nftnl_table_free(object)
            body = String(cString: text)
        case UInt16(NFT_MSG_NEWCHAIN.rawValue), UInt16(NFT_MSG_DELCHAIN.rawValue):
            let object = nftnl_chain_alloc()!
            nftnl_chain_nlmsg_parse(message, object)
            nftnl_chain_snprintf(&text, text.count, object, 0, 0)
            nftnl_chain_free(object)
            body = String(cString: text)
        case UInt16(NFT_MSG_NEWSET.rawValue):
            let object = nftnl_set_alloc()!
            nftnl_set_nlmsg_parse(message, object)
            nftnl_set_snprintf(&text, text.count, object, 0, 0)
            let flags = nftnl_set_get_u32(object, UInt16(NFTNL_SET_FLAGS.rawValue))
            let keyType = nftnl_set_get_u32(object, UInt16(NFTNL_SET_KEY_TYPE.rawValue))
            let keyLength = nftnl_set_get_u32(object, UInt16(NFTNL_SET_KEY_LEN.rawValue))
            let dataType = nftnl_set_get_u32(object, UInt16(NFTNL_SET_DATA_TYPE.rawValue))
            let id = nftnl_set_get_u32(object, UInt16(NFTNL_SET_ID.rawValue))
            nftnl_set_free(object)
            body =
                String(cString: text)
                + " [flags 0x\(String(flags, radix: 16)) key type \(keyType) len \(keyLength) data type 0x\(String(dataType, radix: 16)) id \(id)]"
        case UInt16(NFT_MSG_NEWSETELEM.rawValue), UInt16(NFT_MSG_DELSETELEM.rawValue):
            body = elementLines(Array(bytes[offset..<offset + Int(le32(bytes, offset))]))
        case UInt16(NFT_MSG_NEWRULE.rawValue), UInt16(NFT_MSG_DELRULE.rawValue):
            let object = nftnl_rule_alloc()!
            nftnl_rule_nlmsg_parse(message, object)
            nftnl_rule_snprintf(&text, text.count, object, 0, 0)
            body = String(cString: text) + lookupSetIDs(object)
            nftnl_rule_free(object)
        default:
            body = ""
        }
        result.append(body.isEmpty ? prefix : prefix + "\n" + body)
    }
    return result
}

/// Set element messages, walked attribute by attribute. (libnftnl's own parser stops after the first
/// element of a message it built: its builder numbers the element nests 1, 2, 3... while its parser
/// accepts only NFTA_LIST_ELEM (1); the kernel ignores nest types.)
private func elementLines(_ message: [UInt8]) -> String {
    let top = attributes(message, from: 20)
    var lines = [
        "set \(string(top[2]?.first)) table \(string(top[1]?.first))" + (top[4].map { " id \(be32($0[0]))" } ?? "")
    ]
    for list in top[3] ?? [] {
        for element in orderedAttributes(list).map(\.payload) {
            let fields = attributes(element, from: 0)
            let key = attributes(fields[1]![0], from: 0)[1]![0]
            var line = "  element \(key.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())"
            if let flags = fields[3]?.first { line += " flags \(be32(flags))" }
            if let data = fields[2]?.first, let verdict = attributes(data, from: 0)[2]?.first {
                let parts = attributes(verdict, from: 0)
                line += " verdict \(Int32(bitPattern: be32(parts[1]![0])))"
                if let chain = parts[2]?.first { line += " chain \(string(chain))" }
            }
            lines.append(line)
        }
    }
    return lines.joined(separator: "\n")
}

/// Netlink attributes in order.
private func orderedAttributes(_ bytes: [UInt8]) -> [(type: UInt16, payload: [UInt8])] {
    var result: [(type: UInt16, payload: [UInt8])] = []
    var offset = 0
    while offset + 4 <= bytes.count {
        let length = Int(le16(bytes, offset))
        guard length >= 4, offset + length <= bytes.count else { break }
        result.append((le16(bytes, offset + 2) & 0x3fff, Array(bytes[offset + 4..<offset + length])))
        offset += (length + 3) & ~3
    }
    return result
}

/// Netlink attributes from `start`, by type (nested flag masked off), in order.
private func attributes(_ bytes: [UInt8], from start: Int) -> [UInt16: [[UInt8]]] {
    var result: [UInt16: [[UInt8]]] = [:]
    var offset = start
    while offset + 4 <= bytes.count {
        let length = Int(le16(bytes, offset))
        guard length >= 4, offset + length <= bytes.count else { break }
        result[le16(bytes, offset + 2) & 0x3fff, default: []].append(Array(bytes[offset + 4..<offset + length]))
        offset += (length + 3) & ~3
    }
    return result
}

private func be32(_ bytes: [UInt8]) -> UInt32 {
    bytes.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
}

private func string(_ bytes: [UInt8]?) -> String {
    String(decoding: (bytes ?? []).prefix { $0 != 0 }, as: UTF8.self)
}

/// libnftnl's rule printer omits lookup set IDs; they matter (same-batch sets), so list them.
private func lookupSetIDs(_ rule: OpaquePointer) -> String {
    var text = ""
    let iterator = nftnl_expr_iter_create(rule)!
    defer { nftnl_expr_iter_destroy(iterator) }
    while let expression = nftnl_expr_iter_next(iterator) {
        if String(cString: nftnl_expr_get_str(expression, UInt16(NFTNL_EXPR_NAME))) == "lookup",
            nftnl_expr_is_set(expression, UInt16(NFTNL_EXPR_LOOKUP_SET_ID))
        {
            text += "\n  lookup set id \(nftnl_expr_get_u32(expression, UInt16(NFTNL_EXPR_LOOKUP_SET_ID)))"
        }
    }
    return text
}

private func name(_ type: UInt16) -> String {
    switch type {
    case 0x10: return "BATCH_BEGIN"
    case 0x11: return "BATCH_END"
    default:
        let names = [
            "NEWTABLE", "GETTABLE", "DELTABLE", "NEWCHAIN", "GETCHAIN", "DELCHAIN", "NEWRULE", "GETRULE", "DELRULE",
            "NEWSET", "GETSET", "DELSET", "NEWSETELEM", "GETSETELEM", "DELSETELEM",
        ]
        let index = Int(type & 0xff)
        return type >> 8 == 10 && index < names.count ? names[index] : "type \(type)"
    }
}

extension [UInt8] {
    /// Byte offset of the message with this sequence number.
    func offset(ofSequence sequence: UInt32) -> Int {
        var offset = 0
        while offset + 16 <= count {
            if le32(self, offset + 8) == sequence { return offset }
            offset += (Int(le32(self, offset)) + 3) & ~3
        }
        return -1
    }
}
