import TabbyCore
import Glibc
import TabbyNetlink
import Testing

/// Calico's datapath built with TabbyNetlink alone: two pods (namespaces) with a /32 and a default
/// route via 169.254.1.1 onlink, one "host" namespace holding the cali veths with proxy_arp and a /32
/// route per pod, forwarding on. The pods must ping each other.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs CAP_NET_ADMIN to create network namespaces"))
struct CalicoDatapathTests {
    struct Pod {
        let path: String
        let address: String
        let hostVeth: String
    }

    @Test func podsPingEachOtherThroughTheHostNamespace() throws {
        try withNamespaces(3) { paths in
            let hostPath = paths[0]
            let pods = [
                Pod(path: paths[1], address: "10.99.0.2", hostVeth: "cali0000000000a"),
                Pod(path: paths[2], address: "10.99.0.3", hostVeth: "cali0000000000b"),
            ]
            let host = try RouteSocket.open(inNamespaceAt: hostPath)
            try setUpHost(host, hostPath: hostPath)
            for pod in pods {
                try wire(pod, host: host, hostPath: hostPath)
            }

            let there = try runInNamespace(pods[0].path, ["ping", "-c1", "-W2", pods[1].address])
            #expect(there.status == 0, "\(there.output)")
            let back = try runInNamespace(pods[1].path, ["ping", "-c1", "-W2", pods[0].address])
            #expect(back.status == 0, "\(back.output)")
            // Control: an address no pod has is not answered (the ping above proved the route, not luck).
            let nowhere = try runInNamespace(pods[0].path, ["ping", "-c1", "-W1", "10.99.0.99"])
            #expect(nowhere.status != 0)
        }
    }

    /// The host namespace: forwarding on, and an "uplink" with a default route. Proxy ARP answers only
    /// for addresses routed out of another interface, so without a route to 169.254.1.1 (a real node has
    /// its default route) the pods' ARP for their gateway goes unanswered.
    private func setUpHost(_ host: RouteSocket, hostPath: String) throws {
        try NetworkNamespace.run(path: hostPath) {
            try Sysctl.set("net.ipv4.ip_forward", "1")
        }
        try host.createBridge(name: "uplink0", mtu: nil)
        let uplink = try host.requireLink("uplink0").index
        try host.setLink(index: uplink, up: true)
        try host.addRoute(Route(destination: CIDR("0.0.0.0/0")!, outputIndex: uplink), replace: false)
    }

    private func wire(_ pod: Pod, host: RouteSocket, hostPath: String) throws {
        try withNamespaceFD(pod.path) { fd in
            try host.createVeth(name: pod.hostVeth, peerName: "eth0", peerNamespaceFD: fd, mtu: 1500)
        }
        let hostVeth = try host.requireLink(pod.hostVeth).index
        try host.setLink(index: hostVeth, up: true)
        let podCIDR = CIDR("\(pod.address)/32")!
        try host.addRoute(Route(destination: podCIDR, outputIndex: hostVeth), replace: false)
        let hostVethName = pod.hostVeth
        try NetworkNamespace.run(path: hostPath) {
            try Sysctl.set("net.ipv4.conf.\(hostVethName).proxy_arp", "1")
            // Calico sets this too: otherwise the kernel delays proxy ARP replies up to 0.8 s.
            try Sysctl.set("net.ipv4.neigh.\(hostVethName).proxy_delay", "0")
        }

        let inside = try RouteSocket.open(inNamespaceAt: pod.path)
        try inside.setLink(index: try inside.requireLink("lo").index, up: true)
        let eth0 = try inside.requireLink("eth0").index
        try inside.setLink(index: eth0, up: true)
        try inside.addAddress(InterfaceAddress(podCIDR.network, prefixLength: 32), index: eth0, replace: false)
        try inside.addRoute(
            Route(
                destination: CIDR("0.0.0.0/0")!, gateway: IPAddress("169.254.1.1")!, outputIndex: eth0, onLink: true),
            replace: false)
    }
}
