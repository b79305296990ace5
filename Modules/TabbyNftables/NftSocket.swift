import TabbyNetlink
import CMNL
import CNFTNL
import Glibc
import Synchronization

/// An nf_tables session on one transport: commits batches and reads objects back.
///
/// A netlink socket is bound to the network namespace it was created in, forever: an NftSocket made
/// inside a namespace (`open(inNamespaceAt:)`) keeps programming that namespace from any thread.
/// Commits require CAP_NET_ADMIN in that namespace.
///
/// `@unchecked Sendable`: the lock is `exchangeLock`, a `Mutex` holding the next sequence number; it
/// is held across each request and all of its replies, so callers never interleave on `transport`.
public final class NftSocket: @unchecked Sendable {
    /// How many times a dump is tried when the kernel marks it UInt16(NLM_F_DUMP)INTR (ruleset changed).
    static let dumpAttempts = 4

    private let transport: any NetfilterTransport
    private let exchangeLock: Mutex<UInt32>

    /// A session on `transport`; sequence numbers start at `firstSequence`.
    public init(transport: any NetfilterTransport, firstSequence: UInt32 = 1) {
        self.transport = transport
        self.exchangeLock = Mutex(firstSequence)
    }

    /// A session on a new NETLINK_NETFILTER socket in the calling thread's network namespace.
    public convenience init() throws(Nft.Error) {
        self.init(transport: try MNLNetfilterTransport())
    }

    /// Creates the socket inside the network namespace at `path` (`/run/netns/NAME`) on a dedicated
    /// thread that joined it and then exits; the socket keeps working in that namespace from any thread.
    /// Requires CAP_SYS_ADMIN.
    public static func open(inNamespaceAt path: String) throws -> NftSocket {
        try NetworkNamespace.run(path: path) { try NftSocket() }
    }

    // MARK: - Commit

    /// Sends `batch` as one transaction and reads one reply per object message. If the kernel rejects
    /// any message, nothing of the batch is applied and the error names the first failed object
    /// (`Nft.Error.kernel(errno:request:)`). An empty batch sends nothing.
    public func commit(_ batch: NftBatch) throws(Nft.Error) {
        guard !batch.isEmpty else { return }
        try exchangeLock.withLock { (sequence: inout UInt32) throws(Nft.Error) in
            let encoded = try batch.encoded(sequence: sequence)
            sequence = encoded.nextSequence
            try transport.prepare(sendBytes: encoded.bytes.count, acknowledgements: encoded.messages.count)
            try transport.send(encoded.bytes)
            try Self.collectAcknowledgements(for: encoded, from: transport)
        }
    }

    /// Reads replies until every object message of `batch` has its ACK or error, then throws the first
    /// error by sequence. The batch-begin message (sequence before the first object) only ever gets an
    /// error when the kernel refused the batch as a whole (EPERM, ENOMEM); then nothing else follows.
    static func collectAcknowledgements(for batch: EncodedBatch, from transport: any NetfilterTransport)
        throws(Nft.Error)
    {
        guard let first = batch.messages.first?.sequence else { return }
        let beginSequence = first &- 1
        var pending = Set(batch.messages.map(\.sequence))
        var failures: [(sequence: UInt32, errno: Int32)] = []
        while !pending.isEmpty {
            let datagram = try transport.receive()
            for message in try NetlinkMessage.split(datagram) where message.type == NetlinkMessage.error {
                let code = try message.errorCode()
                if message.sequence == beginSequence && code != 0 {
                    throw .kernel(errno: -code, request: "NFNL_MSG_BATCH_BEGIN (the whole batch)")
                }
                guard pending.remove(message.sequence) != nil else { continue }  // stale reply
                if code != 0 { failures.append((message.sequence, -code)) }
            }
        }
        if let failure = failures.min(by: { ($0.sequence &- first) < ($1.sequence &- first) }) {
            var request = batch.description(ofSequence: failure.sequence) ?? "sequence \(failure.sequence)"
            if failures.count > 1 { request += " (and \(failures.count - 1) more failed messages)" }
            throw .kernel(errno: failure.errno, request: request)
        }
    }

    // MARK: - Reads

    /// Every table in every family (`nft list tables`).
    public func tables() throws(Nft.Error) -> [NftTable] {
        try dump(
            .getTable, family: nil, describedAs: "all tables", request: { _ in },
            decode: { header in
                let object = nftnl_table_alloc()!
                defer { nftnl_table_free(object) }
                guard nftnl_table_nlmsg_parse(header, object) >= 0 else { return nil }
                return NftDecoding.table(object)
            })
    }

    /// The chains of one table.
    public func chains(family: Nft.Family = .inet, table: String) throws(Nft.Error) -> [NftChain] {
        let request = nftnl_chain_alloc()!
        defer { nftnl_chain_free(request) }
        nftnl_chain_set_str(request, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
        let all: [NftChain] = try dump(
            .getChain, family: family, describedAs: "\(family) \(table) chains",
            request: { nftnl_chain_nlmsg_build_payload($0, request) },
            decode: { header in
                let object = nftnl_chain_alloc()!
                defer { nftnl_chain_free(object) }
                guard nftnl_chain_nlmsg_parse(header, object) >= 0 else { return nil }
                return NftDecoding.chain(object)
            }
        )
        return all.filter { $0.table == table }
    }

    /// The named sets and maps of one table (anonymous sets, which belong to rules, are skipped).
    public func sets(family: Nft.Family = .inet, table: String) throws(Nft.Error) -> [NftSet] {
        let request = NftnlObjects.table(family: family, name: table, flags: [])
        defer { nftnl_table_free(request) }
        let all: [NftSet] = try dump(
            .getSet, family: family, describedAs: "\(family) \(table) sets",
            request: { nftnl_table_nlmsg_build_payload($0, request) },
            decode: { header in
                let object = nftnl_set_alloc()!
                defer { nftnl_set_free(object) }
                guard nftnl_set_nlmsg_parse(header, object) >= 0 else { return nil }
                return NftDecoding.set(object)
            }
        )
        return all.filter { $0.table == table }
    }

    /// The elements of `set` (its family, table, name, key type and interval flag are used to decode
    /// them): ranges of interval sets come back as `.prefix` where they are one, else as ranges.
    public func elements(of set: NftSet) throws(Nft.Error) -> [NftSetElement] {
        let request = NftnlObjects.elementList(of: set, id: nil)
        defer { nftnl_set_free(request) }
        let batches: [[NftDecoding.RawElement]] = try dump(
            .getSetElem, family: set.family, describedAs: "\(set.reference) elements",
            request: { nftnl_set_elems_nlmsg_build_payload($0, request) },
            decode: { header in
                let object = nftnl_set_alloc()!
                defer { nftnl_set_free(object) }
                guard nftnl_set_elems_nlmsg_parse(header, object) >= 0 else { return nil }
                return NftDecoding.rawElements(object)
            }
        )
        return NftDecoding.elements(batches.flatMap { $0 }, of: set)
    }

    /// The rules of one chain, in order, with handles and comments.
    public func rules(family: Nft.Family = .inet, table: String, chain: String) throws(Nft.Error) -> [NftRule] {
        let request = nftnl_rule_alloc()!
        defer { nftnl_rule_free(request) }
        nftnl_rule_set_str(request, UInt16(NFTNL_RULE_TABLE.rawValue), table)
        nftnl_rule_set_str(request, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
        let all: [NftRule] = try dump(
            .getRule, family: family, describedAs: "\(family) \(table) \(chain) rules",
            request: { nftnl_rule_nlmsg_build_payload($0, request) },
            decode: { header in
                let object = nftnl_rule_alloc()!
                defer { nftnl_rule_free(object) }
                guard nftnl_rule_nlmsg_parse(header, object) >= 0 else { return nil }
                return NftDecoding.rule(object)
            }
        )
        return all.filter { $0.table == table && $0.chain == chain }
    }

    /// Sends a GET request with NLM_F_DUMP and decodes every data message up to NLMSG_DONE. A dump the
    /// kernel flags NLM_F_DUMP_INTR is read to its end, discarded and retried.
    private func dump<T: Sendable>(
        _ type: NftMessageType, family: Nft.Family?, describedAs what: String,
        request: (UnsafeMutablePointer<nlmsghdr>) -> Void,
        decode: (UnsafePointer<nlmsghdr>) -> T?
    ) throws(Nft.Error) -> [T] {
        let description = "\(type.kernelName) \(what)"
        return try exchangeLock.withLock { (sequence: inout UInt32) throws(Nft.Error) -> [T] in
            for _ in 0..<Self.dumpAttempts {
                let seq = sequence
                sequence &+= 1
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4_096, alignment: 16)
                memset(buffer, 0, 4_096)  // libmnl 1.0.4 leaves attribute padding as it finds it
                defer { buffer.deallocate() }
                let header = nftnl_nlmsg_build_hdr(
                    buffer.assumingMemoryBound(to: CChar.self), type.rawValue, UInt16(family?.rawValue ?? 0),
                    UInt16(NLM_F_DUMP), seq)!
                request(header)
                try transport.send(Array(UnsafeRawBufferPointer(start: buffer, count: Int(header.pointee.nlmsg_len))))
                var results: [T] = []
                var interrupted = false
                var done = false
                while !done {
                    let datagram = try transport.receive()
                    for message in try NetlinkMessage.split(datagram) where message.sequence == seq {
                        if message.flags & NetlinkMessage.dumpInterrupted != 0 { interrupted = true }
                        switch message.type {
                        case NetlinkMessage.done:
                            done = true
                        case NetlinkMessage.error:
                            let code = try message.errorCode()
                            if code != 0 { throw .kernel(errno: -code, request: description) }
                            done = true
                        default:
                            let decoded = datagram.withUnsafeBytes { raw in
                                decode(
                                    (raw.baseAddress! + message.offset).assumingMemoryBound(to: nlmsghdr.self))
                            }
                            guard let decoded else {
                                throw .malformed(what: description, reason: "libnftnl could not parse a reply")
                            }
                            results.append(decoded)
                        }
                    }
                }
                if !interrupted { return results }
            }
            throw .kernel(errno: EINTR, request: "\(description): dump interrupted \(Self.dumpAttempts) times")
        }
    }
}

/// One netlink message inside a received datagram.
struct NetlinkMessage {
    static let error: UInt16 = 2  // NLMSG_ERROR
    static let done: UInt16 = 3  // NLMSG_DONE
    static let dumpInterrupted: UInt16 = 0x10  // UInt16(NLM_F_DUMP)INTR
    static let headerLength = 16

    let datagram: [UInt8]
    let offset: Int
    let length: Int
    let type: UInt16
    let flags: UInt16
    let sequence: UInt32

    /// The messages of a datagram (each nlmsg_len long, 4-byte aligned).
    static func split(_ datagram: [UInt8]) throws(Nft.Error) -> [NetlinkMessage] {
        var result: [NetlinkMessage] = []
        var offset = 0
        while offset + headerLength <= datagram.count {
            let length = Int(datagram.load32(at: offset))
            guard length >= headerLength, offset + length <= datagram.count else {
                throw .malformed(what: "netlink reply", reason: "message length \(length) at offset \(offset)")
            }
            result.append(
                NetlinkMessage(
                    datagram: datagram, offset: offset, length: length, type: datagram.load16(at: offset + 4),
                    flags: datagram.load16(at: offset + 6), sequence: datagram.load32(at: offset + 8)))
            offset += (length + 3) & ~3
        }
        return result
    }

    /// The (negative errno or 0) code of an NLMSG_ERROR message.
    func errorCode() throws(Nft.Error) -> Int32 {
        guard length >= Self.headerLength + 4 else {
            throw .malformed(what: "netlink reply", reason: "NLMSG_ERROR too short")
        }
        return Int32(bitPattern: datagram.load32(at: offset + Self.headerLength))
    }
}

extension [UInt8] {
    func load32(at offset: Int) -> UInt32 {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    func load16(at offset: Int) -> UInt16 {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }
}
