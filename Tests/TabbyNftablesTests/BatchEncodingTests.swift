import Testing

@testable import TabbyNftables

/// The sample batch, pinned two ways: the exact bytes of every message, and what libnftnl's own parser
/// (not our encoder) reads back from them, in the notation of nftables' tests/py/*.payload files.
@Suite struct BatchEncodingTests {
    /// One hex string per netlink message (little-endian host, as on x86_64 and arm64). Header layout:
    /// nlmsg_len u32, nlmsg_type u16 (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*), nlmsg_flags u16
    /// (REQUEST|ACK|CREATE = 0x405, rules also APPEND = 0xc05), nlmsg_seq u32, nlmsg_pid u32 (0), then
    /// nfgenmsg {family u8 (1 = inet), version u8, res_id be16}, then attributes {len u16, type u16, value}.
    /// Example, the table: 20000000 000a 0504 65000000 00000000 | 01 00 0000 | 0a00 0100 "tabby\0" pad.
    static let sampleBatchHex = [
        // NFNL_MSG_BATCH_BEGIN seq 100 (res_id NFNL_SUBSYS_NFTABLES)
        "140000001000010064000000000000000000000a",
        // NEWTABLE inet tabby
        "20000000000a05046500000000000000010000000a0001007461626279000000",
        // NEWCHAIN forward (hook forward, prio 0, policy accept, type filter)
        "54000000030a05046600000000000000010000000a00010074616262790000000c000300666f72776172640014000480"
            + "0800010000000002080002000000000008000500000000010b00070066696c7465720000",
        // NEWCHAIN from-a
        "2c000000030a05046700000000000000010000000a00010074616262790000000b00030066726f6d2d610000",
        // NEWSET cidrs (interval, ipv4_addr, id 1, userdata)
        "58000000090a05046800000000000000010000000a00010074616262790000000a000200636964727300000008000300"
            + "000000040800040000000007080005000000000408000a00000000010a000d000004020000000000",
        // NEWSETELEM cidrs: 10.1.0.0, 10.2.0.0 end, 192.168.5.0, 192.168.6.0 end
        "880000000c0a05046900000000000000010000000a000200636964727300000008000400000000010a00010074616262"
            + "7900000054000380100001800c000180080001000a0100001800028008000300000000010c000180080001000a020000"
            + "100003800c00018008000100c0a805001800048008000300000000010c00018008000100c0a80600",
        // NEWSET dispatch (map ifname : verdict, id 2)
        "68000000090a05046a00000000000000010000000a00010074616262790000000d000200646973706174636800000000"
            + "08000300000000080800040000000029080005000000001008000600ffffff0008000a000000000210000d0000040100"
            + "0000010400000000",
        // NEWSETELEM dispatch: "veth-a" : jump from-a
        "740000000c0a05046b00000000000000010000000d00020064697370617463680000000008000400000000020a000100"
            + "74616262790000003c000380380001801800018014000100766574682d61000000000000000000001c00028018000280"
            + "08000100fffffffd0b00020066726f6d2d610000",
        // NEWRULE forward: ct state established,related accept
        "00010000060a050c6c00000000000000010000000a00010074616262790000000c000200666f72776172640010000700"
            + "000a74616262793a65737400c40004802000018007000100637400001400028008000200000000000800010000000001"
            + "440001800c0001006269747769736500340002800800010000000001080002000000000108000300000000040c000480"
            + "08000100060000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200"
            + "000000010c0003800800010000000000300001800e000100696d6d6564696174650000001c0002800800010000000000"
            + "100002800c0002800800010000000001",
        // NEWRULE forward: iifname vmap @dispatch
        "a8000000060a050c6d00000000000000010000000a00010074616262790000000c000200666f72776172640015000700"
            + "000f74616262793a6469737061746368000000006400048024000180090001006d657461000000001400028008000200"
            + "0000000608000100000000013c0001800b0001006c6f6f6b757000002c00028008000200000000010800030000000000"
            + "0d0001006469737061746368000000000800040000000002",
        // NEWRULE from-a: ip saddr @cidrs tcp dport 80 accept
        "d4010000060a050c6e00000000000000010000000a00010074616262790000000b00020066726f6d2d61000010000700"
            + "000a74616262793a776562009801048024000180090001006d6574610000000014000280080002000000000f08000100"
            + "000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010002000000"
            + "340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c08000400"
            + "00000004300001800b0001006c6f6f6b757000002000028008000200000000010a000100636964727300000008000400"
            + "0000000124000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100"
            + "636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c"
            + "6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100"
            + "636d700020000280080001000000000108000200000000000c0003800600010000500000300001800e000100696d6d65"
            + "64696174650000001c0002800800010000000000100002800c0002800800010000000001",
        // NFNL_MSG_BATCH_END seq 111
        "14000000110001006f000000000000000000000a",
    ]

    @Test func sampleBatchBytesArePinned() throws {
        let bytes = try SampleRuleset.batch.encode(sequence: 100)
        let messages = FakeNetfilterTransport.headers(in: bytes).map { header -> String in
            let offset = bytes.offset(ofSequence: header.sequence)
            return bytes[offset..<offset + Int(le32(bytes, offset))].map {
                ($0 < 16 ? "0" : "") + String($0, radix: 16)
            }
            .joined()
        }
        #expect(messages.count == Self.sampleBatchHex.count)
        for (index, (actual, expected)) in zip(messages, Self.sampleBatchHex).enumerated() {
            #expect(actual == expected, "message \(index)")
        }
        #expect(bytes.count == 1_536)
    }

    @Test func sampleBatchAsLibnftnlReadsIt() throws {
        let rendered = render(try SampleRuleset.batch.encode(sequence: 100)).joined(separator: "\n--\n")
        let expected = #"""
            BATCH_BEGIN seq=100 flags=0x1
            --
            NEWTABLE seq=101 flags=0x405
            table tabby inet flags 0 use 0 handle 0
            --
            NEWCHAIN seq=102 flags=0x405
            inet tabby forward use 0 type filter hook forward prio 0 policy accept packets 0 bytes 0
            --
            NEWCHAIN seq=103 flags=0x405
            inet tabby from-a use 0
            --
            NEWSET seq=104 flags=0x405
            cidrs tabby 4 [flags 0x4 key type 7 len 4 data type 0x0 id 1]
            --
            NEWSETELEM seq=105 flags=0x405
            set cidrs table tabby id 1
              element 0a010000
              element 0a020000 flags 1
              element c0a80500
              element c0a80600 flags 1
            --
            NEWSET seq=106 flags=0x405
            dispatch tabby 8 [flags 0x8 key type 41 len 16 data type 0xffffff00 id 2]
            --
            NEWSETELEM seq=107 flags=0x405
            set dispatch table tabby id 2
              element 766574682d6100000000000000000000 verdict -3 chain from-a
            --
            NEWRULE seq=108 flags=0xc05
            inet tabby forward
              [ ct load state => reg 1 ]
              [ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]
              [ cmp neq reg 1 0x00000000 ]
              [ immediate reg 0 accept ]
              userdata = { \x00\x0atabby:est\x00 }
            --
            NEWRULE seq=109 flags=0xc05
            inet tabby forward
              [ meta load iifname => reg 1 ]
              [ lookup reg 1 set dispatch dreg 0 ]
              userdata = { \x00\x0ftabby:dispatch\x00 }
              lookup set id 2
            --
            NEWRULE seq=110 flags=0xc05
            inet tabby from-a
              [ meta load nfproto => reg 1 ]
              [ cmp eq reg 1 0x00000002 ]
              [ payload load 4b @ network header + 12 => reg 1 ]
              [ lookup reg 1 set cidrs ]
              [ meta load l4proto => reg 1 ]
              [ cmp eq reg 1 0x00000006 ]
              [ payload load 2b @ transport header + 2 => reg 1 ]
              [ cmp eq reg 1 0x00005000 ]
              [ immediate reg 0 accept ]
              userdata = { \x00\x0atabby:web\x00 }
              lookup set id 1
            --
            BATCH_END seq=111 flags=0x1
            """#
        #expect(rendered == expected)
    }
}
