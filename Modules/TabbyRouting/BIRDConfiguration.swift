import TabbyCore

/// BIRD 2 configuration for one node (what Calico's confd renders for its BIRD, in BIRD 2's
/// syntax): the node's blocks and borrowed addresses go out to its peers, other nodes' routes
/// come into the kernel.
///
/// - **Export.** This node's blocks (confirmed affinities) are static blackhole routes, exported
///   whole; routes inside them (its pods' /32s) never are. The kernel protocol learns the CNI
///   plugin's pod routes (`learn`, interfaces with the workload prefix only), so a pod whose
///   address is borrowed from another node's block is exported as a /32, which beats that node's
///   block everywhere. Only routes inside enabled pools leave the node.
/// - **iBGP.** A mesh peer gets only what this node originates (`source != RTS_BGP`): a route
///   learned from one peer is never passed to a mesh peer, so no node relays another node's
///   routes. Other peers get the pool routes this node knows (BIRD's own iBGP rule still applies;
///   a route reflector reflects to its clients with `rr client`).
/// - **Kernel.** Routes learned over BGP go into the kernel (BIRD's route protocol, `proto bird`,
///   12: BIRD owns them and withdraws them itself), except those in VXLAN pools, which tabbyd
///   programs as tunnels (as Felix does beside Calico's BIRD); this node's blocks go in as
///   blackholes so an unallocated address in them never leaves the node. `persist`: a BIRD that
///   stops leaves its routes, so a restart (or a crash tabbyd recovers from) does not cut traffic.
public enum BIRDConfiguration {
    /// The IPv4 pools, with what BIRD does for each.
    public struct Pool: Hashable, Sendable {
        public var name: String
        public var cidr: CIDR
        /// VXLAN pools are exported to peers but never programmed into the kernel by BIRD.
        public var vxlan: Bool
        public var disabled: Bool

        public init(name: String, cidr: CIDR, vxlan: Bool, disabled: Bool) {
            self.name = name
            self.cidr = cidr
            self.vxlan = vxlan
            self.disabled = disabled
        }

        /// The IPv4 pools among `pools`.
        public static func from(_ pools: [IPPool]) -> [Pool] {
            pools.compactMap { pool in
                guard let cidr = CIDR(pool.spec.cidr), cidr.family == .v4 else { return nil }
                return Pool(
                    name: pool.metadata.name, cidr: cidr, vxlan: (pool.spec.vxlanMode ?? .never) != .never,
                    disabled: pool.spec.disabled == true)
            }.sorted { $0.cidr < $1.cidr }
        }
    }

    /// Renders the configuration. `blocks` are this node's confirmed blocks; `workloadInterfacePrefix`
    /// names the pod interfaces whose routes are learned (Felix's `interfacePrefix`, `cali`).
    public static func render(
        topology: BGPTopology, pools: [Pool], blocks: [CIDR], workloadInterfacePrefix: String = "cali"
    ) -> String {
        let blocks = blocks.filter { $0.family == .v4 }.sorted()
        let enabled = pools.filter { !$0.disabled }
        var out: [String] = []
        func line(_ text: String = "") { out.append(text) }

        line("# BIRD 2 configuration of node \(topology.nodeName), rendered by tabbyd from the BGPConfiguration,")
        line("# BGPPeer, Node and IPPool resources and this node's IPAM blocks. tabbyd rewrites it and")
        line("# reloads BIRD when they change: do not edit.")
        line()
        line("log stderr all;")
        line("router id \(topology.routerID);")
        line()
        line("# This node's blocks: exported whole, and blackholes in the kernel (its pods' /32s are more specific).")
        line("protocol static tabby_blocks {")
        line("  ipv4;")
        for block in blocks { line("  route \(block) blackhole;") }
        line("}")
        line()
        line("# Export a block of this node whole, never a route inside it.")
        line("function tabby_own_blocks()")
        line("{")
        for block in blocks {
            line("  if ( net = \(block) ) then accept;")
            line("  if ( net ~ \(block) ) then reject;")
        }
        line("}")
        line()
        line("# Routes of the enabled pools leave the node; nothing else does.")
        line("function tabby_export_pools()")
        line("{")
        line("  tabby_own_blocks();")
        for pool in enabled { line("  if ( net ~ \(pool.cidr) ) then accept; # pool \(pool.name)") }
        line("}")
        line()
        line("filter tabby_export_to_bgp_peers")
        line("{")
        line("  tabby_export_pools();")
        line("  reject;")
        line("}")
        line()
        line("# A mesh peer gets only routes this node originates, never one learned from another peer.")
        line("filter tabby_export_to_mesh_peers")
        line("{")
        line("  if ( source = RTS_BGP ) then reject;")
        line("  tabby_export_pools();")
        line("  reject;")
        line("}")
        line()
        line("filter tabby_import_from_bgp_peers")
        line("{")
        for pool in pools where pool.disabled {
            line("  if ( net ~ \(pool.cidr) ) then reject; # disabled pool \(pool.name)")
        }
        for block in blocks { line("  if ( net = \(block) ) then reject; # this node's own block") }
        line("  accept;")
        line("}")
        line()
        line("# Into the kernel: routes learned over BGP (VXLAN pools excepted: tabbyd programs those) and")
        line("# this node's block blackholes.")
        line("filter tabby_kernel_programming")
        line("{")
        line("  if ( proto = \"tabby_blocks\" ) then accept;")
        line("  if ( source != RTS_BGP ) then reject;")
        for pool in enabled where pool.vxlan {
            line("  if ( net ~ \(pool.cidr) ) then reject; # VXLAN pool \(pool.name)")
        }
        line("  accept;")
        line("}")
        line()
        line("# From the kernel: the CNI plugin's routes to this node's pods, inside the pools.")
        line("filter tabby_kernel_learning")
        line("{")
        line("  if ( ifname !~ \"\(workloadInterfacePrefix)*\" ) then reject;")
        for pool in enabled { line("  if ( net ~ \(pool.cidr) ) then accept;") }
        line("  reject;")
        line("}")
        line()
        line("protocol kernel tabby_kernel {")
        line("  ipv4 {")
        line("    import filter tabby_kernel_learning;")
        line("    export filter tabby_kernel_programming;")
        line("  };")
        line("  learn;         # the CNI plugin's pod routes (Tabby's protocol 85)")
        line("  persist;       # a stopped BIRD leaves its routes")
        line("  scan time 2;")
        line("  graceful restart;")
        line("}")
        line()
        line("protocol device {")
        line("  scan time 2;")
        line("}")
        line()
        line("# Interface routes, to resolve the peers' next hops; never exported.")
        line("protocol direct {")
        line("  ipv4;")
        line("  interface -\"\(workloadInterfacePrefix)*\", \"*\";")
        line("}")
        line()
        line("template bgp tabby_bgp_peer {")
        line("  debug { states };")
        line("  local\(topology.listenPort.map { " port \($0)" } ?? "") as \(topology.asNumber);")
        line("  multihop;")
        line("  graceful restart;")
        line("  connect delay time 1;")
        line("  connect retry time 3;")
        line("  error wait time 5, 60;")
        line("  ipv4 {")
        line("    gateway recursive;")
        line("    import filter tabby_import_from_bgp_peers;")
        line("    export filter tabby_export_to_bgp_peers;")
        line("  };")
        line("}")
        for kind in BGPSession.Kind.allCases {
            line()
            line("# \(kind.rawValue) peers")
            if kind == .mesh, let clusterID = topology.routeReflectorClusterID {
                line("# none: this node is a route reflector (cluster ID \(clusterID))")
            }
            for session in topology.sessions where session.kind == kind {
                line("protocol bgp \(session.name) from tabby_bgp_peer {")
                line("  description \"\(kind.rawValue): \(session.peerName)\";")
                line(
                    "  neighbor \(session.address)\(session.port.map { " port \($0)" } ?? "") as \(session.asNumber);"
                )
                if let source = session.sourceAddress { line("  source address \(source);") }
                if session.passive { line("  passive on;    # one-way mesh: the peer connects to us") }
                if let clusterID = session.routeReflectorClusterID {
                    line("  rr client;")
                    line("  rr cluster id \(clusterID);")
                }
                if kind == .mesh {
                    line("  ipv4 {")
                    line("    export filter tabby_export_to_mesh_peers;")
                    line("  };")
                }
                line("}")
            }
        }
        return out.joined(separator: "\n") + "\n"
    }
}
