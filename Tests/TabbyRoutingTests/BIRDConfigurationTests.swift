import Foundation
import TabbyCore
import TabbyRouting
import Testing

/// The cluster shapes the renderer must get right, shared by the pinned-text tests and the
/// `bird -p` test.
enum Shapes {
    static func node(
        _ name: String, _ address: String?, labels: [String: String] = [:], asNumber: UInt32? = nil,
        clusterID: String? = nil
    ) -> Node {
        var spec = NodeSpec()
        if let address {
            var bgp = NodeBGPSpec(ipv4Address: address)
            bgp.asNumber = asNumber.map(ASNumber.init)
            bgp.routeReflectorClusterID = clusterID
            spec.bgp = bgp
        }
        return Node(metadata: ObjectMeta(name: name, labels: labels.isEmpty ? nil : labels), spec: spec)
    }

    static func peer(
        _ name: String, node: String? = nil, nodeSelector: String? = nil, peerIP: String? = nil,
        asNumber: UInt32? = nil, peerSelector: String? = nil
    ) -> BGPPeer {
        var spec = BGPPeerSpec()
        spec.node = node
        spec.nodeSelector = nodeSelector
        spec.peerIP = peerIP
        spec.asNumber = asNumber.map(ASNumber.init)
        spec.peerSelector = peerSelector
        return BGPPeer(metadata: ObjectMeta(name: name), spec: spec)
    }

    static let three = [
        node("node-1", "10.10.0.11/24"), node("node-2", "10.10.0.12/24"), node("node-3", "10.10.0.13/24"),
    ]
    static let pools = [
        BIRDConfiguration.Pool(name: "default-ipv4-ippool", cidr: CIDR("10.65.0.0/16")!, vxlan: false, disabled: false)
    ]
    static let blocks = [CIDR("10.65.1.0/26")!, CIDR("10.65.7.192/26")!]

    static func render(
        _ node: String = "node-1", configuration: BGPConfigurationSpec? = nil, nodes: [Node] = three,
        peers: [BGPPeer] = [], pools: [BIRDConfiguration.Pool] = pools, blocks: [CIDR] = blocks
    ) throws -> String {
        let topology = try BGPTopology(
            .init(nodeName: node, configuration: configuration, nodes: nodes, peers: peers))
        return BIRDConfiguration.render(topology: topology, pools: pools, blocks: blocks)
    }

    /// The `protocol bgp` sections only.
    static func sessions(_ text: String) -> String {
        guard let start = text.range(of: "# node-to-node mesh peers") else { return "" }
        return String(text[start.lowerBound...])
    }

    static var reflector: (BGPConfigurationSpec, [Node], [BGPPeer]) {
        var configuration = BGPConfigurationSpec()
        configuration.nodeToNodeMeshEnabled = false
        let nodes = [
            node("node-1", "10.10.0.11/24", labels: ["route-reflector": "true"], clusterID: "224.0.0.1"),
            node("node-2", "10.10.0.12/24"), node("node-3", "10.10.0.13/24"),
        ]
        return (configuration, nodes, [peer("peer-with-reflectors", peerSelector: "route-reflector == 'true'")])
    }

    static var custom: BGPConfigurationSpec {
        var configuration = BGPConfigurationSpec()
        configuration.asNumber = ASNumber(65010)
        configuration.listenPort = 1790
        return configuration
    }

    /// Every shape, by name, for `bird -p`.
    static func all() throws -> [(String, String)] {
        let (rrConfiguration, rrNodes, rrPeers) = reflector
        return [
            ("mesh of 3", try render()),
            ("reflector", try render("node-1", configuration: rrConfiguration, nodes: rrNodes, peers: rrPeers)),
            ("reflector client", try render("node-2", configuration: rrConfiguration, nodes: rrNodes, peers: rrPeers)),
            ("global peer", try render(peers: [peer("tor", peerIP: "10.10.0.100", asNumber: 64600)])),
            (
                "node peer by selector",
                try render(
                    nodes: [node("node-1", "10.10.0.11/24", labels: ["rack": "a"])] + three.dropFirst(),
                    peers: [peer("rack-a", nodeSelector: "rack == 'a'", peerIP: "10.10.0.200:1791", asNumber: 64700)])
            ),
            ("custom AS and port", try render(configuration: custom)),
            ("no blocks yet, no pools", try render(pools: [], blocks: [])),
            (
                "VXLAN and disabled pools",
                try render(pools: [
                    .init(name: "bgp", cidr: CIDR("10.65.0.0/16")!, vxlan: false, disabled: false),
                    .init(name: "vxlan", cidr: CIDR("10.66.0.0/16")!, vxlan: true, disabled: false),
                    .init(name: "old", cidr: CIDR("10.67.0.0/16")!, vxlan: false, disabled: true),
                ])
            ),
        ]
    }
}

@Suite("BIRD configuration")
struct BIRDConfigurationTests {
    @Test func fullMeshOfThree() throws {
        #expect(
            try Shapes.render() == #"""
                # BIRD 2 configuration of node node-1, rendered by tabbyd from the BGPConfiguration,
                # BGPPeer, Node and IPPool resources and this node's IPAM blocks. tabbyd rewrites it and
                # reloads BIRD when they change: do not edit.

                log stderr all;
                router id 10.10.0.11;

                # This node's blocks: exported whole, and blackholes in the kernel (its pods' /32s are more specific).
                protocol static tabby_blocks {
                  ipv4;
                  route 10.65.1.0/26 blackhole;
                  route 10.65.7.192/26 blackhole;
                }

                # Export a block of this node whole, never a route inside it.
                function tabby_own_blocks()
                {
                  if ( net = 10.65.1.0/26 ) then accept;
                  if ( net ~ 10.65.1.0/26 ) then reject;
                  if ( net = 10.65.7.192/26 ) then accept;
                  if ( net ~ 10.65.7.192/26 ) then reject;
                }

                # Routes of the enabled pools leave the node; nothing else does.
                function tabby_export_pools()
                {
                  tabby_own_blocks();
                  if ( net ~ 10.65.0.0/16 ) then accept; # pool default-ipv4-ippool
                }

                filter tabby_export_to_bgp_peers
                {
                  tabby_export_pools();
                  reject;
                }

                # A mesh peer gets only routes this node originates, never one learned from another peer.
                filter tabby_export_to_mesh_peers
                {
                  if ( source = RTS_BGP ) then reject;
                  tabby_export_pools();
                  reject;
                }

                filter tabby_import_from_bgp_peers
                {
                  if ( net = 10.65.1.0/26 ) then reject; # this node's own block
                  if ( net = 10.65.7.192/26 ) then reject; # this node's own block
                  accept;
                }

                # Into the kernel: routes learned over BGP (VXLAN pools excepted: tabbyd programs those) and
                # this node's block blackholes.
                filter tabby_kernel_programming
                {
                  if ( proto = "tabby_blocks" ) then accept;
                  if ( source != RTS_BGP ) then reject;
                  accept;
                }

                # From the kernel: the CNI plugin's routes to this node's pods, inside the pools.
                filter tabby_kernel_learning
                {
                  if ( ifname !~ "cali*" ) then reject;
                  if ( net ~ 10.65.0.0/16 ) then accept;
                  reject;
                }

                protocol kernel tabby_kernel {
                  ipv4 {
                    import filter tabby_kernel_learning;
                    export filter tabby_kernel_programming;
                  };
                  learn;         # the CNI plugin's pod routes (Tabby's protocol 85)
                  persist;       # a stopped BIRD leaves its routes
                  scan time 2;
                  graceful restart;
                }

                protocol device {
                  scan time 2;
                }

                # Interface routes, to resolve the peers' next hops; never exported.
                protocol direct {
                  ipv4;
                  interface -"cali*", "*";
                }

                template bgp tabby_bgp_peer {
                  debug { states };
                  local as 64512;
                  multihop;
                  graceful restart;
                  connect delay time 1;
                  connect retry time 3;
                  error wait time 5, 60;
                  ipv4 {
                    gateway recursive;
                    import filter tabby_import_from_bgp_peers;
                    export filter tabby_export_to_bgp_peers;
                  };
                }

                # node-to-node mesh peers
                protocol bgp Mesh_10_10_0_12 from tabby_bgp_peer {
                  description "node-to-node mesh: node-2";
                  neighbor 10.10.0.12 as 64512;
                  source address 10.10.0.11;
                  passive on;    # one-way mesh: the peer connects to us
                  ipv4 {
                    export filter tabby_export_to_mesh_peers;
                  };
                }
                protocol bgp Mesh_10_10_0_13 from tabby_bgp_peer {
                  description "node-to-node mesh: node-3";
                  neighbor 10.10.0.13 as 64512;
                  source address 10.10.0.11;
                  passive on;    # one-way mesh: the peer connects to us
                  ipv4 {
                    export filter tabby_export_to_mesh_peers;
                  };
                }

                # global peers

                # node specific peers

                """#)
    }

    /// The middle node of the mesh waits for node-3 (higher address) and connects to node-1.
    @Test func theMeshIsOneWay() throws {
        let text = try Shapes.render("node-2")
        #expect(
            text.contains(
                "protocol bgp Mesh_10_10_0_11 from tabby_bgp_peer {\n  description \"node-to-node mesh: node-1\";\n  neighbor 10.10.0.11 as 64512;\n  source address 10.10.0.12;\n  ipv4"
            ))
        #expect(text.contains("neighbor 10.10.0.13 as 64512;\n  source address 10.10.0.12;\n  passive on;"))
        #expect(!text.contains("Mesh_10_10_0_12"))
    }

    @Test func meshOffWithAReflector() throws {
        let (configuration, nodes, peers) = Shapes.reflector
        let reflector = try Shapes.render("node-1", configuration: configuration, nodes: nodes, peers: peers)
        #expect(
            Shapes.sessions(reflector) == """
                # node-to-node mesh peers
                # none: this node is a route reflector (cluster ID 224.0.0.1)

                # global peers

                # node specific peers
                protocol bgp Node_10_10_0_12 from tabby_bgp_peer {
                  description "node specific: node-2";
                  neighbor 10.10.0.12 as 64512;
                  source address 10.10.0.11;
                  rr client;
                  rr cluster id 224.0.0.1;
                }
                protocol bgp Node_10_10_0_13 from tabby_bgp_peer {
                  description "node specific: node-3";
                  neighbor 10.10.0.13 as 64512;
                  source address 10.10.0.11;
                  rr client;
                  rr cluster id 224.0.0.1;
                }

                """)
        let client = try Shapes.render("node-2", configuration: configuration, nodes: nodes, peers: peers)
        #expect(
            Shapes.sessions(client) == """
                # node-to-node mesh peers

                # global peers

                # node specific peers
                protocol bgp Node_10_10_0_11 from tabby_bgp_peer {
                  description "node specific: node-1";
                  neighbor 10.10.0.11 as 64512;
                  source address 10.10.0.12;
                }

                """)
    }

    /// With the mesh on, the reflector is left out of it and the other nodes still mesh.
    @Test func aReflectorIsNeverAMeshPeer() throws {
        let (_, nodes, _) = Shapes.reflector
        let text = try Shapes.render("node-2", nodes: nodes)
        #expect(!text.contains("Mesh_10_10_0_11"))
        #expect(text.contains("protocol bgp Mesh_10_10_0_13"))
    }

    @Test func aGlobalPeer() throws {
        let text = try Shapes.render(peers: [Shapes.peer("tor", peerIP: "10.10.0.100", asNumber: 64600)])
        #expect(
            Shapes.sessions(text).hasSuffix(
                """
                # global peers
                protocol bgp Global_10_10_0_100 from tabby_bgp_peer {
                  description "global: tor";
                  neighbor 10.10.0.100 as 64600;
                  source address 10.10.0.11;
                }

                # node specific peers

                """))
        // The peer's sessions use the export filter that passes learned routes on (to an eBGP router).
        #expect(
            !text.contains(
                "Global_10_10_0_100 from tabby_bgp_peer {\n  description \"global: tor\";\n  neighbor 10.10.0.100 as 64600;\n  source address 10.10.0.11;\n  ipv4"
            ))
    }

    @Test func aNodePeerBySelectorAppliesOnlyToTheNodesItSelects() throws {
        let nodes = [Shapes.node("node-1", "10.10.0.11/24", labels: ["rack": "a"])] + Shapes.three.dropFirst()
        let peers = [Shapes.peer("rack-a", nodeSelector: "rack == 'a'", peerIP: "10.10.0.200:1791", asNumber: 64700)]
        let selected = try Shapes.render("node-1", nodes: nodes, peers: peers)
        #expect(
            Shapes.sessions(selected).hasSuffix(
                """
                # node specific peers
                protocol bgp Node_10_10_0_200_port_1791 from tabby_bgp_peer {
                  description "node specific: rack-a";
                  neighbor 10.10.0.200 port 1791 as 64700;
                  source address 10.10.0.11;
                }

                """))
        let other = try Shapes.render("node-2", nodes: nodes, peers: peers)
        #expect(!other.contains("10.10.0.200"))
        // `node:` names one node.
        let byName = [Shapes.peer("one", node: "node-3", peerIP: "10.10.0.201", asNumber: 64701)]
        #expect(try Shapes.render("node-3", peers: byName).contains("protocol bgp Node_10_10_0_201 "))
        #expect(try !Shapes.render("node-1", peers: byName).contains("10.10.0.201"))
    }

    @Test func customASAndListenPort() throws {
        var nodes = Shapes.three
        nodes[2].spec.bgp?.asNumber = ASNumber(65099)
        let text = try Shapes.render(configuration: Shapes.custom, nodes: nodes)
        #expect(text.contains("  local port 1790 as 65010;\n"))
        #expect(text.contains("  neighbor 10.10.0.12 port 1790 as 65010;\n"))
        #expect(text.contains("  neighbor 10.10.0.13 port 1790 as 65099;\n"))
        #expect(text.contains("protocol bgp Mesh_10_10_0_12_port_1790 "))
        // The node's own AS wins over the cluster's.
        #expect(
            try Shapes.render("node-3", configuration: Shapes.custom, nodes: nodes).contains(
                "local port 1790 as 65099;"))
    }

    @Test func vxlanAndDisabledPools() throws {
        let text = try Shapes.all().first { $0.0 == "VXLAN and disabled pools" }!.1
        // Exported: both enabled pools. Kernel: not the VXLAN pool. Imported: never the disabled one.
        #expect(
            text.contains(
                "  if ( net ~ 10.65.0.0/16 ) then accept; # pool bgp\n  if ( net ~ 10.66.0.0/16 ) then accept; # pool vxlan\n}"
            ))
        #expect(
            text.contains(
                "  if ( source != RTS_BGP ) then reject;\n  if ( net ~ 10.66.0.0/16 ) then reject; # VXLAN pool vxlan\n  accept;"
            ))
        #expect(text.contains("  if ( net ~ 10.67.0.0/16 ) then reject; # disabled pool old\n"))
        #expect(!text.contains("10.67.0.0/16 ) then accept"))
    }

    @Test func aNodeWithoutAnAddressIsAnError() throws {
        #expect(throws: RoutingError.noIPv4Address("node-1")) {
            try Shapes.render(nodes: [Shapes.node("node-1", nil)])
        }
        #expect(throws: RoutingError.nodeNotRegistered("node-9")) { try Shapes.render("node-9") }
    }

    @Test(arguments: [
        ("Mesh_10_10_0_12", BGPSession.Kind.mesh, "10.10.0.12"),
        ("Global_10_0_0_1_port_1790", .global, "10.0.0.1:1790"),
        ("Node_192_168_1_1", .nodeSpecific, "192.168.1.1"),
    ])
    func protocolNamesReadBack(name: String, kind: BGPSession.Kind, address: String) {
        let parsed = BGPSession.parse(protocolName: name)
        #expect(parsed?.kind == kind && parsed?.address == address)
    }

    @Test func otherProtocolsAreNotSessions() {
        #expect(BGPSession.parse(protocolName: "tabby_kernel") == nil)
        #expect(BGPSession.parse(protocolName: "Mesh_not_an_address") == nil)
    }

    /// BIRD itself accepts every shape (`bird -p`: parse only, no socket, no kernel).
    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/bird"), "bird2 is not installed"))
    func birdParsesEveryShape() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-bird-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, text) in try Shapes.all() {
            let file = directory.appendingPathComponent("bird.conf")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/bird")
            process.arguments = ["-p", "-c", file.path]
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(name): \(message)\n\(text)")
        }
    }
}
