import Testing

@testable import TabbyNftables

/// Element keys, intervals, matches and limits, without a kernel.
@Suite struct ValueTests {
    @Test(arguments: [
        ("10.0.0.0/8", [10, 0, 0, 0], [11, 0, 0, 0] as [UInt8]?),
        ("10.1.2.3/32", [10, 1, 2, 3], [10, 1, 2, 4]),
        ("10.1.2.3/24", [10, 1, 2, 0], [10, 1, 3, 0]),
        ("255.255.255.0/24", [255, 255, 255, 0], nil),
        ("0.0.0.0/0", [0, 0, 0, 0], nil),
    ])
    func intervalElementsAreStartAndExclusiveEnd(cidr: String, start: [UInt8], end: [UInt8]?) throws {
        let prefix = try #require(NftPrefix(cidr))
        #expect(prefix.address == start)
        #expect(prefix.endExclusive == end)
        let set = NftSet(table: "t", name: "s", keyType: [.ipv4Addr], isInterval: true)
        let (encodedStart, encodedEnd) = try NftElementEncoding.range(.prefix(prefix), set: set, what: "test")
        #expect(encodedStart == start && encodedEnd == end)
        // Read back, the start/end pair becomes the same prefix again.
        let raw =
            [NftDecoding.RawElement(key: start, isIntervalEnd: false)]
            + (end.map { [NftDecoding.RawElement(key: $0, isIntervalEnd: true)] } ?? [])
        #expect(NftDecoding.elements(raw.reversed(), of: set) == [NftSetElement(.prefix(prefix))])
    }

    @Test func ipv6PrefixRoundTrips() throws {
        let prefix = try #require(NftPrefix("fd00:1::/64"))
        #expect(prefix.description == "fd00:1:0:0:0:0:0:0/64")
        #expect(prefix.endExclusive == NftPrefix("fd00:1:0:1::")!.address)
    }

    @Test func portRangesInIntervalSets() throws {
        let set = NftSet(table: "t", name: "ports", keyType: [.inetService], isInterval: true)
        let (start, end) = try NftElementEncoding.range(.serviceRange(80...90), set: set, what: "test")
        #expect(start == [0, 80] && end == [0, 91])
        let raw = [
            NftDecoding.RawElement(key: [0, 80], isIntervalEnd: false),
            NftDecoding.RawElement(key: [0, 91], isIntervalEnd: true),
        ]
        #expect(NftDecoding.elements(raw, of: set) == [NftSetElement(.serviceRange(80...90))])
    }

    @Test func concatenatedKeysPadEachFieldToFourBytes() throws {
        let set = NftSet(table: "t", name: "named-ports", keyType: [.ipv4Addr, .inetProto, .inetService])
        #expect(set.keyLength == 12)
        #expect(set.keyTypeNumber == (7 << 12 | 12 << 6 | 13))
        let key = NftSetKey.concat([.address([10, 0, 0, 1]), .inetProto(6), .inetService(443)])
        let bytes = try NftElementEncoding.keyBytes(key, set: set, what: "test")
        #expect(bytes == [10, 0, 0, 1, 6, 0, 0, 0, 1, 187, 0, 0])
        #expect(NftDecoding.key(from: bytes, of: set) == key)
    }

    @Test func mismatchedElementsAreRejectedBeforeSending() {
        let map = NftSet(table: "t", name: "m", keyType: [.ifname], dataType: .verdict)
        var batch = NftBatch()
        batch.addElements([NftSetElement(.ifname("cali1"))], to: map)
        #expect(throws: Nft.Error.self) { try batch.encode(sequence: 1) }
        var tooLong = NftBatch()
        tooLong.addElements([NftSetElement.ifname("a-name-that-is-too-long", .accept)], to: map)
        #expect(throws: Nft.Error.self) { try tooLong.encode(sequence: 1) }
        var concatInterval = NftBatch()
        concatInterval.add(NftSet(table: "t", name: "x", keyType: [.ipv4Addr, .inetService], isInterval: true))
        #expect(throws: Nft.Error.self) { try concatInterval.encode(sequence: 1) }
    }

    @Test func tenThousandElementsAreChunkedUnderTheNestLimit() throws {
        let set = NftSet(table: "t", name: "big", keyType: [.ipv4Addr], isInterval: true)
        var batch = NftBatch()
        let elements = (0..<10_000).map {
            NftSetElement(.prefix(NftPrefix(address: [10, UInt8($0 >> 8), UInt8($0 & 0xff), 0], length: 24)!))
        }
        batch.addElements(elements, to: set)
        let encoded = try batch.encoded(sequence: 1)
        let headers = FakeNetfilterTransport.headers(in: encoded.bytes)
        #expect(headers.count > 3)
        for header in headers {
            let offset = encoded.bytes.offset(ofSequence: header.sequence)
            #expect(le32(encoded.bytes, offset) < 65_535)
        }
        #expect(encoded.messages.count == headers.count - 2)
        #expect(encoded.messages[0].description.hasSuffix("elements)}"))
    }

    @Test func commentsAreNftUserdata() {
        let userdata = RuleUserdata.encode(comment: "tabby:abc")
        #expect(userdata == [0, 10] + Array("tabby:abc".utf8) + [0])
        #expect(RuleUserdata.comment(in: userdata) == "tabby:abc")
        var batch = NftBatch()
        batch.add(NftRule(table: "t", chain: "c", expressions: [], comment: String(repeating: "x", count: 129)))
        #expect(throws: Nft.Error.self) { try batch.encode(sequence: 1) }
    }

    @Test(arguments: [
        (
            NftMatch.iifname("cali1"),
            ["[ meta load iifname => reg 1 ]", "[ cmp eq reg 1 0x63616c69310000000000000000000000 ]"]
        ),
        (
            .saddr(NftPrefix("10.65.0.0/16")!),
            [
                "[ meta load nfproto => reg 1 ]", "[ cmp eq reg 1 0x02 ]",
                "[ payload load 4b @ network header + 12 => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0xffff0000 ) ^ 0x00000000 ]", "[ cmp eq reg 1 0x0a410000 ]",
            ]
        ),
        (
            .dport(proto: 6, 8000...8080),
            [
                "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x06 ]",
                "[ payload load 2b @ transport header + 2 => reg 1 ]", "[ cmp gte reg 1 0x1f40 ]",
                "[ cmp lte reg 1 0x1f90 ]",
            ]
        ),
        (
            .ctStateInvalid,
            [
                "[ ct load state => reg 1 ]", "[ bitwise reg 1 = ( reg 1 & 0x01000000 ) ^ 0x00000000 ]",
                "[ cmp neq reg 1 0x00000000 ]",
            ]
        ),
    ])
    func matchesCompileToNftsExpressions(match: NftMatch, expected: [String]) {
        #expect(NftExpression.match(match).map(\.description) == expected)
    }

    @Test func ipFamilyTablesSkipTheNfprotoCheck() {
        let expressions = NftExpression.match(.daddrIn(set: "s"), family: .ip)
        #expect(
            expressions == [
                .payload(.network, offset: 16, length: 4, into: .r1),
                .lookup(set: "s", source: .r1, destination: nil, inverted: false),
            ])
    }
}
