import Testing

@testable import TabbyNftables

/// Commit over a fake transport: ACK collection and naming the object that failed.
@Suite struct CommitTests {
    @Test func successfulCommitReadsOneAckPerObjectMessage() throws {
        let transport = FakeNetfilterTransport()
        let socket = NftSocket(transport: transport, firstSequence: 100)
        try socket.commit(SampleRuleset.batch)
        #expect(transport.sent.count == 1)
        #expect(transport.sent.first == (try SampleRuleset.batch.encode(sequence: 100)))
        // Batch begin 100, objects 101...110, end 111: the next batch starts at 112.
        try socket.commit(SampleRuleset.batch)
        #expect(FakeNetfilterTransport.headers(in: transport.sent[1]).first?.sequence == 112)
    }

    /// Each object message's sequence number, and the object the error must name.
    @Test(arguments: [
        (UInt32(101), "NFT_MSG_NEWTABLE inet tabby"),
        (103, "NFT_MSG_NEWCHAIN inet tabby from-a"),
        (104, "NFT_MSG_NEWSET inet tabby cidrs"),
        (105, "NFT_MSG_NEWSETELEM inet tabby cidrs {10.1.0.0/16, 192.168.5.0/24}"),
        (107, "NFT_MSG_NEWSETELEM inet tabby dispatch {\"veth-a\" : jump from-a}"),
        (109, "NFT_MSG_NEWRULE inet tabby forward \"tabby:dispatch\" (@dispatch)"),
        (110, "NFT_MSG_NEWRULE inet tabby from-a \"tabby:web\" (@cidrs, accept)"),
    ])
    func kernelErrorNamesTheObjectSentWithThatSequence(sequence: UInt32, request: String) throws {
        let transport = FakeNetfilterTransport(failures: [sequence: 2])  // ENOENT
        let socket = NftSocket(transport: transport, firstSequence: 100)
        #expect(throws: Nft.Error.kernel(errno: 2, request: request)) {
            try socket.commit(SampleRuleset.batch)
        }
    }

    @Test func severalFailuresReportTheFirstAndCountTheRest() throws {
        let transport = FakeNetfilterTransport(failures: [110: 22, 104: 17])
        let socket = NftSocket(transport: transport, firstSequence: 100)
        #expect(
            throws: Nft.Error.kernel(errno: 17, request: "NFT_MSG_NEWSET inet tabby cidrs (and 1 more failed messages)")
        ) {
            try socket.commit(SampleRuleset.batch)
        }
    }

    @Test func refusedBatchIsReportedAsAWhole() throws {
        let transport = FakeNetfilterTransport(failWholeBatch: 1)  // EPERM
        let socket = NftSocket(transport: transport)
        #expect(throws: Nft.Error.kernel(errno: 1, request: "NFNL_MSG_BATCH_BEGIN (the whole batch)")) {
            try socket.commit(SampleRuleset.batch)
        }
    }

    @Test func errorDescriptionIsReadable() {
        let error = Nft.Error.kernel(errno: 2, request: "NFT_MSG_NEWRULE inet tabby forward (jump missing)")
        #expect(
            error.description
                == "NFT_MSG_NEWRULE inet tabby forward (jump missing): No such file or directory (errno 2)")
    }

    @Test func emptyBatchSendsNothing() throws {
        let transport = FakeNetfilterTransport()
        try NftSocket(transport: transport).commit(NftBatch())
        #expect(transport.sent.isEmpty)
    }
}
