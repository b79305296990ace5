import CMNL
import TabbyCore
import Glibc

/// One netlink request under construction, built with libmnl into a byte buffer so a transport
/// (real or fake) sees exactly the bytes the kernel gets.
struct MessageBuilder {
    /// Room for any request this library builds (the largest, a veth with a peer, is about 120 bytes).
    private static let capacity = 4096
    private var buffer = [UInt8](repeating: 0, count: MessageBuilder.capacity)

    init(type: UInt16, flags: Int32, sequence: UInt32) {
        withHeader { header in
            _ = mnl_nlmsg_put_header(header)
            header.pointee.nlmsg_type = type
            header.pointee.nlmsg_flags = UInt16(flags)
            header.pointee.nlmsg_seq = sequence
        }
    }

    /// The finished message.
    var bytes: [UInt8] {
        let length = buffer.withUnsafeBytes { Int($0.load(as: UInt32.self)) }
        return Array(buffer.prefix(length))
    }

    /// Appends a fixed family header (ifinfomsg, rtmsg, ...), padded to 4 bytes.
    mutating func putFixedHeader<Header>(_ value: Header) {
        withHeader { header in
            let destination = mnl_nlmsg_put_extra_header(header, MemoryLayout<Header>.size)!
            withUnsafeBytes(of: value) { source in
                destination.copyMemory(from: source.baseAddress!, byteCount: source.count)
            }
        }
    }

    mutating func put(_ type: some BinaryInteger, bytes: [UInt8]) {
        withHeader { header in
            let fits = bytes.withUnsafeBytes {
                mnl_attr_put_check(
                    header, MessageBuilder.capacity, UInt16(truncatingIfNeeded: type), $0.count, $0.baseAddress)
            }
            precondition(fits, "netlink request exceeds \(MessageBuilder.capacity) bytes")
        }
    }

    mutating func put(_ type: some BinaryInteger, u8 value: UInt8) { put(type, bytes: [value]) }
    mutating func put(_ type: some BinaryInteger, u16 value: UInt16) {
        put(type, bytes: withUnsafeBytes(of: value) { Array($0) })
    }
    mutating func put(_ type: some BinaryInteger, u32 value: UInt32) {
        put(type, bytes: withUnsafeBytes(of: value) { Array($0) })
    }
    /// A 16-bit value in network byte order (ports).
    mutating func put(_ type: some BinaryInteger, be16 value: UInt16) { put(type, u16: value.bigEndian) }
    /// A NUL-terminated string (names, kinds), as the kernel's NLA_STRING/NLA_NUL_STRING policies expect.
    mutating func put(_ type: some BinaryInteger, string: String) { put(type, bytes: Array(string.utf8) + [0]) }

    /// Opens a nested attribute; returns a token for `endNest`.
    mutating func beginNest(_ type: some BinaryInteger) -> Int {
        withHeader { header in
            let start = mnl_attr_nest_start_check(header, MessageBuilder.capacity, UInt16(truncatingIfNeeded: type))
            precondition(start != nil, "netlink request exceeds \(MessageBuilder.capacity) bytes")
            return UnsafeRawPointer(start!) - UnsafeRawPointer(header)
        }
    }

    mutating func endNest(_ token: Int) {
        withHeader { header in
            let start = (UnsafeMutableRawPointer(header) + token).assumingMemoryBound(to: nlattr.self)
            mnl_attr_nest_end(header, start)
        }
    }

    private mutating func withHeader<Result>(_ body: (UnsafeMutablePointer<nlmsghdr>) -> Result) -> Result {
        buffer.withUnsafeMutableBytes { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self))
        }
    }
}

/// The attributes of one message or nest, by type (last one wins), parsed with libmnl.
struct Attributes {
    private(set) var values: [UInt16: [UInt8]] = [:]

    /// Parses the attributes that follow a message's fixed header of `headerSize` bytes.
    init(message: [UInt8], headerSize: Int) {
        let box = Collector()
        message.withUnsafeBytes { raw in
            let header = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            _ = mnl_attr_parse(header, UInt32(headerSize), Attributes.collect, Unmanaged.passUnretained(box).toOpaque())
        }
        values = box.values
    }

    /// Parses a nested attribute's payload.
    init(payload: [UInt8]) {
        let box = Collector()
        payload.withUnsafeBytes { raw in
            _ = mnl_attr_parse_payload(
                raw.baseAddress, raw.count, Attributes.collect, Unmanaged.passUnretained(box).toOpaque())
        }
        values = box.values
    }

    subscript(_ type: some BinaryInteger) -> [UInt8]? { values[UInt16(truncatingIfNeeded: type)] }

    func u8(_ type: some BinaryInteger) -> UInt8? { self[type].flatMap { $0.count >= 1 ? $0[0] : nil } }

    func u32(_ type: some BinaryInteger) -> UInt32? {
        guard let value = self[type], value.count >= 4 else { return nil }
        return value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    func u16(_ type: some BinaryInteger) -> UInt16? {
        guard let value = self[type], value.count >= 2 else { return nil }
        return value.withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
    }

    func string(_ type: some BinaryInteger) -> String? {
        self[type].map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    func nested(_ type: some BinaryInteger) -> Attributes? { self[type].map { Attributes(payload: $0) } }

    private final class Collector {
        var values: [UInt16: [UInt8]] = [:]
    }

    private static let collect: mnl_attr_cb_t = { attribute, context in
        guard let attribute, let context else { return MNL_CB_ERROR }
        let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
        let length = Int(mnl_attr_get_payload_len(attribute))
        let payload = UnsafeRawBufferPointer(start: mnl_attr_get_payload(attribute), count: length)
        collector.values[mnl_attr_get_type(attribute)] = Array(payload)
        return MNL_CB_OK
    }
}

/// Reads a family header (ifinfomsg, rtmsg, ...) from the start of a message's payload.
func fixedHeader<Header>(of message: [UInt8], as type: Header.Type) -> Header? {
    let offset = MemoryLayout<nlmsghdr>.size
    guard message.count >= offset + MemoryLayout<Header>.size else { return nil }
    return message.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Header.self) }
}
