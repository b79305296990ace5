import Testing
import TabbyRouting

@testable import TabbyCommands

/// `tabbyctl node status` from BIRD's protocol rows (as BIRD 2.0.12 prints them).
@Suite("tabbyctl node status")
struct NodeStatusTests {
    static let rows = [
        BIRDProtocolStatus(
            name: "device1", proto: "Device", table: "---", state: "up", since: "13:20:40.993", info: ""),
        BIRDProtocolStatus(
            name: "tabby_kernel", proto: "Kernel", table: "master4", state: "up", since: "13:20:40.993", info: ""),
        BIRDProtocolStatus(
            name: "Mesh_10_10_0_12", proto: "BGP", table: "---", state: "up", since: "13:25:07.064",
            info: "Established"),
        BIRDProtocolStatus(
            name: "Global_10_10_0_100_port_1790", proto: "BGP", table: "---", state: "start",
            since: "13:25:07.087", info: "Active Socket: Connection refused"),
    ]

    @Test func onlyBGPSessionsWithTheirPeerAndType() {
        let peers = NodeCommand.Status.peers(Self.rows)
        #expect(peers.map(\.peerAddress) == ["10.10.0.12", "10.10.0.100:1790"])
        #expect(peers.map(\.peerType) == ["node-to-node mesh", "global"])
    }

    @Test func calicoctlsTable() {
        #expect(
            NodeCommand.Status.table(NodeCommand.Status.peers(Self.rows)) == """
                IPv4 BGP status
                +------------------+-------------------+-------+--------------+-----------------------------------+
                | PEER ADDRESS     | PEER TYPE         | STATE | SINCE        | INFO                              |
                +------------------+-------------------+-------+--------------+-----------------------------------+
                | 10.10.0.12       | node-to-node mesh | up    | 13:25:07.064 | Established                       |
                | 10.10.0.100:1790 | global            | start | 13:25:07.087 | Active Socket: Connection refused |
                +------------------+-------------------+-------+--------------+-----------------------------------+

                IPv6 BGP status
                No IPv6 peers found.

                """)
    }

    @Test func theSocketFlagAndJSON() throws {
        let command = try #require(
            try Tabbyctl.parseAsRoot(["node", "status", "--bird-socket", "/tmp/b.ctl", "-o", "json"])
                as? NodeCommand.Status)
        #expect(command.birdSocket == "/tmp/b.ctl" && command.output == .json)
        let defaults = try #require(try Tabbyctl.parseAsRoot(["node", "status"]) as? NodeCommand.Status)
        #expect(defaults.birdSocket == "/run/tabby/bird/bird.ctl")
    }
}
