import TabbyCore
import Glibc
import Synchronization
import TabbyNetlink
import Testing

/// The real kernel, only ever inside namespaces these tests create and delete.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs CAP_NET_ADMIN to create network namespaces"))
struct NetlinkKernelTests {
    @Test func namespaceLifecycleIsIdempotentAndIsolated() throws {
        let name = "tabby-t-nl-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))-life"
        defer { try? NetworkNamespace.delete(named: name) }
        let path = try NetworkNamespace.create(named: name)
        #expect(path == "/run/netns/\(name)")
        #expect(throws: NetworkNamespace.Error.self) { try NetworkNamespace.create(named: name) }
        let socket = try RouteSocket.open(inNamespaceAt: path)
        #expect(try socket.links().map(\.name) == ["lo"])
        try NetworkNamespace.delete(named: name)
        try NetworkNamespace.delete(named: name)
        #expect(access(path, F_OK) != 0)
    }

    @Test func namespacesAreDeletedWhenATestFails() throws {
        struct Planned: Error {}
        var made: [String] = []
        #expect(throws: Planned.self) {
            try withNamespaces(2) { paths in
                made = paths
                throw Planned()
            }
        }
        #expect(made.count == 2)
        #expect(made.allSatisfy { access($0, F_OK) != 0 })
    }

    @Test func vethWithPeerInAnotherNamespace() throws {
        try withNamespaces(2) { paths in
            let a = try RouteSocket.open(inNamespaceAt: paths[0])
            let b = try RouteSocket.open(inNamespaceAt: paths[1])
            let mac = MACAddress("ee:ee:ee:ee:ee:01")!
            let peerMAC = MACAddress("ee:ee:ee:ee:ee:02")!
            try withNamespaceFD(paths[1]) { fd in
                try a.createVeth(
                    name: "cali0123456789a", peerName: "eth0", peerNamespaceFD: fd, mtu: 1400, mac: mac,
                    peerMAC: peerMAC)
            }
            let host = try a.requireLink("cali0123456789a")
            #expect(host.kind == "veth")
            #expect(host.mtu == 1400)
            #expect(host.mac == mac)
            #expect(!host.isUp)
            #expect(host.linkNetNSID != nil)
            let pod = try b.requireLink("eth0")
            #expect(pod.kind == "veth" && pod.mtu == 1400 && pod.mac == peerMAC)
            #expect(host.linkIndex == pod.index)
            #expect(try a.link(named: "eth0") == nil)

            // Creating it again fails with EEXIST, naming the request.
            #expect(throws: Netlink.Error.kernel(errno: EEXIST, request: "RTM_NEWLINK veth cali0123456789a")) {
                try a.createVeth(name: "cali0123456789a", peerName: "eth1")
            }

            let newMAC = MACAddress("ee:ee:ee:ee:ee:03")!
            try a.setLink(index: host.index, mtu: 1450, mac: newMAC, name: "caliRenamed")
            try a.setLink(index: host.index, up: true)
            try b.setLink(index: pod.index, up: true)
            let changed = try a.requireLink("caliRenamed")
            #expect(changed.index == host.index && changed.mtu == 1450 && changed.mac == newMAC && changed.isUp)
            #expect(try a.links().contains { $0.name == "caliRenamed" && $0.kind == "veth" })
            // Kernels since 6.2 rename links that are up (older ones refuse with EBUSY).
            try a.setLink(index: host.index, name: "caliRenamed2")
            try a.setLink(index: host.index, name: "caliRenamed")

            #expect(try a.deleteLink(named: "caliRenamed"))
            #expect(try !a.deleteLink(named: "caliRenamed"))
            #expect(try b.link(named: "eth0") == nil)  // the peer goes with it
        }
    }

    @Test func moveLinkBetweenNamespaces() throws {
        try withNamespaces(2) { paths in
            let a = try RouteSocket.open(inNamespaceAt: paths[0])
            let b = try RouteSocket.open(inNamespaceAt: paths[1])
            try a.createVeth(name: "tmove0", peerName: "tmove1")
            let link = try a.requireLink("tmove1")
            try withNamespaceFD(paths[1]) { fd in try a.moveLink(index: link.index, toNamespaceFD: fd) }
            #expect(try a.link(named: "tmove1") == nil)
            #expect(try b.link(named: "tmove1")?.kind == "veth")
            try a.deleteLink(index: try a.requireLink("tmove0").index)
            #expect(throws: Netlink.Error.kernel(errno: ENODEV, request: "RTM_DELLINK dev #\(link.index)")) {
                try a.deleteLink(index: link.index)
            }
        }
    }

    @Test func addressesAndRoutesCarryTabbysProtocol() throws {
        try withNamespaces(2) { paths in
            let pod = try RouteSocket.open(inNamespaceAt: paths[0])
            try withNamespaceFD(paths[1]) { fd in
                try pod.createVeth(name: "eth0", peerName: "caliPeer", peerNamespaceFD: fd)
            }
            let host = try RouteSocket.open(inNamespaceAt: paths[1])
            try host.setLink(index: try host.requireLink("caliPeer").index, up: true)
            let eth0 = try pod.requireLink("eth0").index
            try pod.setLink(index: eth0, up: true)

            let v4 = InterfaceAddress(IPAddress("10.99.0.2")!, prefixLength: 32)
            let v6 = InterfaceAddress(IPAddress("fd00:99::2")!, prefixLength: 128, noDAD: true)
            try pod.addAddress(v4, index: eth0, replace: false)
            try pod.addAddress(v6, index: eth0, replace: false)
            try pod.addAddress(v4, index: eth0, replace: true)  // idempotent with replace
            #expect(throws: Netlink.Error.kernel(errno: EEXIST, request: "RTM_NEWADDR 10.99.0.2/32 dev #\(eth0)")) {
                try pod.addAddress(v4, index: eth0, replace: false)
            }
            let v4Found = try pod.addresses(index: eth0, family: .ipv4)
            #expect(v4Found == [AssignedAddress(index: eth0, address: v4)])
            let v6Found = try pod.addresses(index: eth0, family: .ipv6).map(\.address.address)
            #expect(v6Found.contains(IPAddress("fd00:99::2")!))

            let gateway = IPAddress("169.254.1.1")!
            let defaultRoute = Route(destination: CIDR("0.0.0.0/0")!, gateway: gateway, outputIndex: eth0, onLink: true)
            let blockRoute = Route(
                destination: CIDR("10.65.0.0/26")!, gateway: gateway, outputIndex: eth0, priority: 100, onLink: true)
            let v6Route = Route(destination: CIDR("fd00:65::/122")!, outputIndex: eth0)
            try pod.addRoute(defaultRoute, replace: false)
            try pod.addRoute(blockRoute, replace: false)
            try pod.addRoute(blockRoute, replace: true)
            try pod.addRoute(v6Route, replace: false)
            #expect(
                throws: Netlink.Error.kernel(
                    errno: EEXIST, request: "RTM_NEWROUTE 0.0.0.0/0 via 169.254.1.1 dev #\(eth0)")
            ) {
                try pod.addRoute(defaultRoute, replace: false)
            }
            // The kernel's own routes (protocol kernel, e.g. fe80::/64) are filtered out by protocol 85.
            let ours = try pod.routes(family: .ipv4, protocol: Netlink.tabbyRouteProtocol)
            #expect(ours == [defaultRoute, blockRoute])
            let ours6 = try pod.routes(family: .ipv6, protocol: Netlink.tabbyRouteProtocol)
            #expect(ours6.count == 1)
            #expect(ours6.first?.destination == v6Route.destination && ours6.first?.outputIndex == eth0)
            #expect(ours6.first?.priority == 1024)  // IPv6's default metric
            #expect(try pod.routes(family: .ipv6).contains { $0.protocol != Netlink.tabbyRouteProtocol })

            try pod.deleteRoute(blockRoute)
            #expect(try pod.routes(family: .ipv4, protocol: Netlink.tabbyRouteProtocol) == [defaultRoute])
            #expect(
                throws: Netlink.Error.kernel(
                    errno: ESRCH, request: "RTM_DELROUTE 10.65.0.0/26 via 169.254.1.1 dev #\(eth0)")
            ) {
                try pod.deleteRoute(blockRoute)
            }
            // A delete names the protocol: a route of another owner is not Tabby's to remove.
            var foreign = defaultRoute
            foreign.protocol = 4  // RTPROT_STATIC
            #expect(throws: Netlink.Error.self) { try pod.deleteRoute(foreign) }

            try pod.deleteAddress(v4, index: eth0)
            #expect(try pod.addresses(index: eth0, family: .ipv4).isEmpty)
        }
    }

    @Test func neighboursAndProxyARPAreNamespaceLocal() throws {
        try withNamespaces(1) { paths in
            let socket = try RouteSocket.open(inNamespaceAt: paths[0])
            try socket.createVeth(name: "caliNeigh", peerName: "peerNeigh")
            let index = try socket.requireLink("caliNeigh").index
            try socket.setLink(index: index, up: true)
            let mac = MACAddress("ee:ee:ee:00:00:09")!
            let address = IPAddress("10.99.0.9")!
            try socket.addNeighbour(index: index, address: address, mac: mac, permanent: true, replace: false)
            try socket.addNeighbour(index: index, address: address, mac: mac, permanent: true, replace: true)
            let found = try socket.neighbours(index: index, family: .ipv4)
            #expect(found.count == 1)
            #expect(found.first?.address == address && found.first?.mac == mac && found.first?.isPermanent == true)
            try socket.deleteNeighbour(index: index, address: address)
            #expect(try socket.neighbours(index: index, family: .ipv4).isEmpty)

            let values = try NetworkNamespace.run(path: paths[0]) {
                try Sysctl.set("net.ipv4.conf.caliNeigh.proxy_arp", "1")
                try Sysctl.set("net.ipv4.neigh.caliNeigh.proxy_delay", "0")
                try Sysctl.set("net/ipv4/conf/caliNeigh/forwarding", "1")
                return [
                    try Sysctl.get("net.ipv4.conf.caliNeigh.proxy_arp"),
                    try Sysctl.get("net.ipv4.neigh.caliNeigh.proxy_delay"),
                    try Sysctl.get("net.ipv4.conf.caliNeigh.forwarding"),
                ]
            }
            #expect(values == ["1", "0", "1"])
            // The interface does not exist in the test process's own namespace (read only, never written).
            #expect(throws: Sysctl.Error.self) { try Sysctl.get("net.ipv4.conf.caliNeigh.proxy_arp") }
            #expect(throws: Sysctl.Error.notPerNamespace(key: "kernel.hostname")) {
                try Sysctl.set("kernel.hostname", "nope")
            }
        }
    }

    @Test func vxlanDeviceWithFDBEntryAndNeighbour() throws {
        try withNamespaces(1) { paths in
            let socket = try RouteSocket.open(inNamespaceAt: paths[0])
            try socket.createVeth(name: "uplink0", peerName: "uplink1")
            let uplink = try socket.requireLink("uplink0").index
            try socket.addAddress(
                InterfaceAddress(IPAddress("192.0.2.1")!, prefixLength: 24), index: uplink, replace: false)
            let vtepMAC = MACAddress("66:0a:00:00:00:01")!
            try socket.createVXLAN(
                name: "vxlan.calico", vni: 4096, port: 4789, local: IPAddress("192.0.2.1"), parentIndex: uplink,
                mtu: 1450, learning: false, mac: vtepMAC)
            let vxlan = try socket.requireLink("vxlan.calico")
            #expect(vxlan.kind == "vxlan" && vxlan.mtu == 1450 && vxlan.mac == vtepMAC)
            try socket.setLink(index: vxlan.index, up: true)

            let remoteMAC = MACAddress("66:0a:00:00:00:02")!
            let remoteVTEP = IPAddress("192.0.2.2")!
            try socket.addFDBEntry(index: vxlan.index, mac: remoteMAC, destination: remoteVTEP)
            try socket.addFDBEntry(index: vxlan.index, mac: remoteMAC, destination: remoteVTEP)  // idempotent
            let entries = try socket.fdbEntries(index: vxlan.index).filter { $0.mac == remoteMAC }
            #expect(entries.count == 1)
            #expect(entries.first?.destination == remoteVTEP && entries.first?.isPermanent == true)

            // Calico's per-remote-block state: neighbour for the remote tunnel IP, route onlink via it.
            let remoteTunnel = IPAddress("10.65.1.0")!
            try socket.addNeighbour(
                index: vxlan.index, address: remoteTunnel, mac: remoteMAC, permanent: true, replace: true)
            let blockRoute = Route(
                destination: CIDR("10.65.1.0/26")!, gateway: remoteTunnel, outputIndex: vxlan.index, onLink: true)
            try socket.addRoute(blockRoute, replace: true)
            #expect(try socket.routes(family: .ipv4, protocol: Netlink.tabbyRouteProtocol) == [blockRoute])

            try socket.deleteFDBEntry(index: vxlan.index, mac: remoteMAC, destination: remoteVTEP)
            #expect(try socket.fdbEntries(index: vxlan.index).filter { $0.mac == remoteMAC }.isEmpty)
            #expect(try socket.deleteLink(named: "vxlan.calico"))
        }
    }

    @Test func bridgeEnslavesAndReleasesAVeth() throws {
        try withNamespaces(1) { paths in
            let socket = try RouteSocket.open(inNamespaceAt: paths[0])
            try socket.createBridge(name: "tbr0", mtu: 1500)
            let bridge = try socket.requireLink("tbr0")
            #expect(bridge.kind == "bridge")
            try socket.createVeth(name: "tport0", peerName: "tport1")
            let port = try socket.requireLink("tport0").index
            try socket.setLink(index: port, masterIndex: bridge.index)
            #expect(try socket.requireLink("tport0").masterIndex == bridge.index)
            try socket.setLink(index: port, masterIndex: 0)
            #expect(try socket.requireLink("tport0").masterIndex == nil)
            #expect(try socket.deleteLink(named: "tbr0"))
            #expect(try !socket.deleteLink(named: "tbr0"))
        }
    }

    /// The link monitor sees a veth made in its namespace appear and go, and nothing from another.
    @Test func linkMonitorReportsInterfacesComingAndGoing() throws {
        try withNamespaces(2) { paths in
            let events = Mutex<[LinkMonitor.Event]>([])
            let monitor = try LinkMonitor(namespacePath: paths[0]) { event in events.withLock { $0.append(event) } }
            defer { monitor.stop() }
            let other = try RouteSocket.open(inNamespaceAt: paths[1])
            try other.createVeth(name: "cali0elsewhere", peerName: "peer9")
            let socket = try RouteSocket.open(inNamespaceAt: paths[0])
            try socket.createVeth(name: "cali0watched", peerName: "peer0")
            #expect(try socket.deleteLink(named: "cali0watched"))
            func names(_ pick: (LinkMonitor.Event) -> Link?) -> Set<String> {
                Set(events.withLock { $0 }.compactMap(pick).map(\.name))
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while !names({ if case .removed(let link) = $0 { link } else { nil } }).contains("cali0watched"),
                ContinuousClock.now < deadline
            {
                usleep(5_000)
            }
            let changed = names { if case .changed(let link) = $0 { link } else { nil } }
            let removed = names { if case .removed(let link) = $0 { link } else { nil } }
            #expect(changed.isSuperset(of: ["cali0watched", "peer0"]), "\(events.withLock { $0 })")
            #expect(removed.contains("cali0watched"), "\(events.withLock { $0 })")
            #expect(!changed.contains("cali0elsewhere") && !changed.contains("peer9"))
        }
    }
}
