#if EBPF
    import Foundation
    import Glibc
    import Testing
    import TabbyCore
    import TabbyDataplane
    import TabbyEBPF
    import TabbyNetlink
    import TabbyPolicy

    /// Host endpoints in the eBPF dataplane with real TCP: a "node" namespace with a host interface
    /// `ext0` (10.10.0.1) to a "peer" namespace (10.10.0.2) and a workload veth `cali0hep` to a pod
    /// (10.65.0.2) that the node routes; the host endpoint on `ext0` allows TCP 8080 in and TCP 7000
    /// out. Listeners and clients are sockets this process opens inside the namespaces.
    @Suite(
        .serialized,
        .enabled(
            if: geteuid() == 0,
            "needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN: loads BPF programs, pins them, creates namespaces"))
    struct HostEndpointKernelTests {
        static let manifest = """
            apiVersion: v1
            kind: Namespace
            metadata: {name: x}
            ---
            apiVersion: projectcalico.org/v3
            kind: Profile
            metadata: {name: kns.x}
            spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
            ---
            apiVersion: projectcalico.org/v3
            kind: WorkloadEndpoint
            metadata: {name: pod, namespace: x, labels: {app: pod}}
            spec: {node: n, pod: pod, interfaceName: cali0hep, ipNetworks: [10.65.0.2/32], profiles: [kns.x]}
            ---
            apiVersion: projectcalico.org/v3
            kind: HostEndpoint
            metadata: {name: n-ext0, labels: {role: gateway}}
            spec: {node: n, interfaceName: ext0, expectedIPs: [10.10.0.1]}
            ---
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: gateway}
            spec:
              selector: role == 'gateway'
              types: [Ingress, Egress]
              ingress:
              - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
              egress:
              - {action: Allow, protocol: TCP, destination: {ports: [7000]}}
            """

        static let hep = EndpointKey.hostEndpoint("n-ext0")

        static func updates(_ text: String) -> [PolicyUpdate] {
            Manifest(text: text, source: "test").resources.compactMap(PolicyResource.init).map { .upsert($0) }
        }

        /// The namespaces wired as the suite describes; `tearDown()` removes them.
        final class Node {
            let fixture: EBPFFixture
            let peer: (name: String, path: String)
            let pod: (name: String, path: String)
            private var sockets: [Int32] = []

            init() throws {
                fixture = try EBPFFixture("hep")
                do {
                    peer = try fixture.addNamespace("peer")
                    pod = try fixture.addNamespace("pod")
                    try fixture.ip("link add ext0 type veth peer name eth0 netns \(peer.name)")
                    try fixture.ip("addr add 10.10.0.1/24 dev ext0")
                    try fixture.ip("link set ext0 up")
                    try fixture.ip("link set lo up")
                    try run(["ip", "-n", peer.name, "addr", "add", "10.10.0.2/24", "dev", "eth0"])
                    try run(["ip", "-n", peer.name, "link", "set", "eth0", "up"])
                    try run(["ip", "-n", peer.name, "route", "add", "10.65.0.0/24", "via", "10.10.0.1"])
                    try fixture.ip("link add cali0hep type veth peer name eth0 netns \(pod.name)")
                    try fixture.ip("addr add 10.65.0.1/24 dev cali0hep")
                    try fixture.ip("link set cali0hep up")
                    try run(["ip", "-n", pod.name, "addr", "add", "10.65.0.2/24", "dev", "eth0"])
                    try run(["ip", "-n", pod.name, "link", "set", "eth0", "up"])
                    try run(["ip", "-n", pod.name, "route", "add", "default", "via", "10.65.0.1"])
                    try run(["nsenter", "--net=\(fixture.namespacePath)", "sysctl", "-qw", "net.ipv4.ip_forward=1"])
                } catch {
                    fixture.tearDown()
                    throw error
                }
            }

            /// A TCP listener (never accepting: the kernel completes handshakes into the backlog).
            func listen(in path: String, _ address: String, _ port: UInt16) throws {
                let fd = try NetworkNamespace.run(path: path) { () throws -> Int32 in
                    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                    var one: Int32 = 1
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                    var socketAddress = Self.socketAddress(address, port)
                    let bound = withUnsafePointer(to: &socketAddress) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                    guard bound == 0, Glibc.listen(fd, 64) == 0 else {
                        let error = errno
                        close(fd)
                        throw ShellError(description: "listen \(address):\(port): errno \(error)")
                    }
                    return fd
                }
                sockets.append(fd)
            }

            /// Whether a TCP connection from namespace `path` to `address:port` completes in `timeout`.
            func connects(from path: String, to address: String, _ port: UInt16, timeout: Int32 = 700) throws -> Bool {
                try NetworkNamespace.run(path: path) { () -> Bool in
                    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                    defer { close(fd) }
                    var socketAddress = Self.socketAddress(address, port)
                    let started = withUnsafePointer(to: &socketAddress) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                    if started == 0 { return true }
                    guard errno == EINPROGRESS else { return false }
                    var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    guard poll(&poller, 1, timeout) == 1 else { return false }
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    return error == 0
                }
            }

            static func socketAddress(_ address: String, _ port: UInt16) -> sockaddr_in {
                var result = sockaddr_in()
                result.sin_family = sa_family_t(AF_INET)
                result.sin_port = port.bigEndian
                result.sin_addr.s_addr = IPv4Address(address)!.value.bigEndian
                return result
            }

            func tearDown() {
                for fd in sockets { close(fd) }
                fixture.tearDown()
            }
        }

        @Test func hostEndpointPolicesTrafficToAndFromTheHostOnly() throws {
            let node = try Node()
            defer { node.tearDown() }
            let fixture = node.fixture
            for port: UInt16 in [8080, 9090, 22] { try node.listen(in: fixture.namespacePath, "0.0.0.0", port) }
            try node.listen(in: node.pod.path, "0.0.0.0", 9090)
            for port: UInt16 in [7000, 7001] { try node.listen(in: node.peer.path, "0.0.0.0", port) }
            // Everything connects before any program is attached (the wiring is right).
            #expect(try node.connects(from: node.peer.path, to: "10.10.0.1", 9090))
            #expect(try node.connects(from: node.peer.path, to: "10.65.0.2", 9090))

            var engine = PolicyEngine()
            let delta = engine.apply(Self.updates(Self.manifest))
            #expect(engine.problems.isEmpty, "\(engine.problems)")
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try dataplane.apply(delta, resulting: engine.ir)
            #expect(dataplane.status().healthy, "\(dataplane.status().detail)")
            for hook in TrafficControl.Hook.allCases {
                #expect(
                    try TrafficControl.attachedProgramID(on: "ext0", hook: hook, namespace: fixture.namespacePath)
                        == (hook == .ingress ? dataplane.program.ingress.id : dataplane.program.egress.id))
            }
            // The other nodes' VXLAN (tabbyd passes their Node addresses): IPv4 ones reach the map.
            try dataplane.setOverlayPeers(
                OverlayPeers(addresses: [IPAddress("10.10.0.2")!, IPAddress("fd00::2")!], vxlanPort: 4789))
            #expect(
                try dataplane.program.overlayPeers() == [.init(address: IPv4Address("10.10.0.2")!, port: 4789)])
            let ext0 = try fixture.ifindex("ext0")
            #expect(try dataplane.program.endpointEntries()[ext0]?.isHost == true)
            #expect(try dataplane.program.hostAddresses().contains(IPv4Address("10.10.0.1")!))

            // To and from the host: the kernel's verdicts are the evaluator's, but for failsafe 22.
            let evaluator = PolicyEvaluator(engine.ir)
            let peer = PacketPeer.address(IPAddress("10.10.0.2")!)
            func expected(from: PacketPeer, to: PacketPeer, _ port: UInt16) -> Bool {
                evaluator.evaluate(TabbyPolicy.Packet(from: from, to: to, protocol: .tcp, destinationPort: port))
                    .verdict == .allow
            }
            var results: [String: Bool] = [:]
            for port: UInt16 in [8080, 9090] {
                let kernel = try node.connects(from: node.peer.path, to: "10.10.0.1", port)
                #expect(kernel == expected(from: peer, to: .endpoint(Self.hep), port), "peer -> host:\(port)")
                results["in \(port)"] = kernel
            }
            for port: UInt16 in [7000, 7001] {
                // The host's own connection: egress policy on the SYN, its replies pass by conntrack
                // (ingress allows only 8080, so without conntrack the SYN-ACK would drop).
                let kernel = try node.connects(from: fixture.namespacePath, to: "10.10.0.2", port)
                #expect(kernel == expected(from: .endpoint(Self.hep), to: peer, port), "host -> peer:\(port)")
                results["out \(port)"] = kernel
            }
            #expect(results == ["in 8080": true, "in 9090": false, "out 7000": true, "out 7001": false])
            // Failsafe: the evaluator denies 22, the dataplane keeps it open.
            #expect(!expected(from: peer, to: .endpoint(Self.hep), 22))
            #expect(try node.connects(from: node.peer.path, to: "10.10.0.1", 22))

            // Forwarded through the host, to and from the pod: host endpoint policy does not apply.
            #expect(try node.connects(from: node.peer.path, to: "10.65.0.2", 9090))
            #expect(try node.connects(from: node.pod.path, to: "10.10.0.2", 7001))
            // Masqueraded by the node (natOutgoing's shape): it leaves with the host's address and
            // still is the pod's, not the host's; its replies come back to the host's address.
            try run([
                "nsenter", "--net=\(fixture.namespacePath)", "nft",
                "add table ip tabbytest; add chain ip tabbytest post { type nat hook postrouting priority 100; }; add rule ip tabbytest post ip saddr 10.65.0.0/24 oifname ext0 masquerade",
            ])
            #expect(try node.connects(from: node.pod.path, to: "10.10.0.2", 7001))
            let counters = try dataplane.program.counters()
            #expect(counters[.hostForwarded, default: 0] > 0)
            #expect(counters[.failsafe, default: 0] > 0)
        }

        /// An address added to the host after the last apply is the host's at once (the interface
        /// watch re-syncs host endpoints): traffic to it meets host endpoint policy instead of
        /// passing as forwarded.
        @Test func aHostAddressAddedBetweenAppliesIsPolicedAtOnce() throws {
            let node = try Node()
            defer { node.tearDown() }
            let fixture = node.fixture
            for port: UInt16 in [8080, 9090] { try node.listen(in: fixture.namespacePath, "0.0.0.0", port) }
            var engine = PolicyEngine()
            let delta = engine.apply(Self.updates(Self.manifest))
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try dataplane.watchInterfaces()
            defer { dataplane.stopWatchingInterfaces() }
            try dataplane.apply(delta, resulting: engine.ir)
            #expect(try !node.connects(from: node.peer.path, to: "10.10.0.1", 9090))

            try fixture.ip("addr add 10.10.0.9/24 dev ext0")
            let added = IPv4Address("10.10.0.9")!
            let deadline = ContinuousClock.now + .seconds(5)
            while try !dataplane.program.hostAddresses().contains(added), ContinuousClock.now < deadline {
                usleep(5_000)
            }
            #expect(try dataplane.program.hostAddresses().contains(added), "no apply happened: the watch must add it")
            #expect(try !node.connects(from: node.peer.path, to: "10.10.0.9", 9090), "policy denies 9090")
            #expect(try node.connects(from: node.peer.path, to: "10.10.0.9", 8080), "policy allows 8080")
            #expect(dataplane.status().healthy, "\(dataplane.status().detail)")

            try fixture.ip("addr del 10.10.0.9/24 dev ext0")
            let removedBy = ContinuousClock.now + .seconds(5)
            while try dataplane.program.hostAddresses().contains(added), ContinuousClock.now < removedBy {
                usleep(5_000)
            }
            #expect(try !dataplane.program.hostAddresses().contains(added))
        }

        /// A host endpoint no policy selects and with no profile: everything but the failsafe ports
        /// drops (Calico); removing it detaches the program from the interface.
        @Test func anUnselectedHostEndpointDropsAllButFailsafeAndRemovingItDetaches() throws {
            let node = try Node()
            defer { node.tearDown() }
            let fixture = node.fixture
            for port: UInt16 in [8080, 22] { try node.listen(in: fixture.namespacePath, "0.0.0.0", port) }
            var engine = PolicyEngine()
            let withoutPolicy = Self.manifest.components(
                separatedBy: "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy")[0]
            let delta = engine.apply(Self.updates(withoutPolicy))
            #expect(engine.ir.endpoints[Self.hep]?.ingress.isEmpty == true)
            let dataplane = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try dataplane.apply(delta, resulting: engine.ir)
            #expect(try !node.connects(from: node.peer.path, to: "10.10.0.1", 8080))
            #expect(try node.connects(from: node.peer.path, to: "10.10.0.1", 22))

            // Removed: the filters go from ext0 (the workload's stay), and its traffic flows again.
            let removal = engine.delete(PolicyResourceKey(.hostEndpoint, name: "n-ext0"))
            try dataplane.apply(removal, resulting: engine.ir)
            for hook in TrafficControl.Hook.allCases {
                #expect(
                    try TrafficControl.attachedProgramID(on: "ext0", hook: hook, namespace: fixture.namespacePath)
                        == nil)
                #expect(
                    try TrafficControl.attachedProgramID(on: "cali0hep", hook: hook, namespace: fixture.namespacePath)
                        != nil)
            }
            #expect(try dataplane.program.endpointEntries()[try fixture.ifindex("ext0")] == nil)
            #expect(try node.connects(from: node.peer.path, to: "10.10.0.1", 8080))
        }

        /// A restarted dataplane adopts the host endpoint's tables; `removeEverything` and
        /// `removeLeftovers` leave no filter of ours on host interfaces, and never touch another's.
        @Test func restartsAdoptAndCleanupsRemoveHostInterfaceFilters() throws {
            let node = try Node()
            defer { node.tearDown() }
            let fixture = node.fixture
            var engine = PolicyEngine()
            let delta = engine.apply(Self.updates(Self.manifest))
            let first = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try first.apply(delta, resulting: engine.ir)
            let entries = try first.program.endpointEntries()
            let restarted = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            let repaired = try restarted.reconcile(engine.ir)
            #expect(try restarted.program.endpointEntries() == entries, "\(repaired)")
            #expect(!repaired.contains { $0.hasPrefix("attached") }, "\(repaired)")

            // Restarted into a state without the host endpoint: sweep finds the filter the earlier
            // run left on ext0 (this run never attached it) and removes it with the entry.
            var withoutHostEndpoint = engine.ir
            withoutHostEndpoint.endpoints[Self.hep] = nil
            let third = try EBPFDataplane(pinRoot: fixture.pinRoot, namespacePath: fixture.namespacePath)
            try third.sweep(keeping: withoutHostEndpoint)
            #expect(
                try TrafficControl.attachedProgramID(on: "ext0", hook: .ingress, namespace: fixture.namespacePath)
                    == nil)
            #expect(try third.program.endpointEntries()[try fixture.ifindex("ext0")] == nil)
            _ = try restarted.reconcile(engine.ir)
            #expect(
                try TrafficControl.attachedProgramID(on: "ext0", hook: .ingress, namespace: fixture.namespacePath)
                    != nil)

            // Someone else's filter on ext0 (another priority and handle) must survive every cleanup.
            try run([
                // nsenter, not `tc -n`: that remounts /sys, and with it the bpf filesystem of the pin.
                "nsenter", "--net=\(fixture.namespacePath)", "tc", "filter", "add", "dev", "ext0", "ingress", "pref",
                "7",
                "handle", "0x5",
                "bpf", "da", "pinned", fixture.pinRoot + "/programs/tabby_tc_ingress",
            ])
            func othersFilter() throws -> Bool {
                try run(["tc", "-n", fixture.namespace, "filter", "show", "dev", "ext0", "ingress"]).output
                    .contains("pref 7 bpf chain 0 handle 0x5")
            }
            #expect(try othersFilter())
            try restarted.removeEverything()
            for name in ["ext0", "cali0hep"] {
                for hook in TrafficControl.Hook.allCases {
                    #expect(
                        try TrafficControl.attachedProgramID(on: name, hook: hook, namespace: fixture.namespacePath)
                            == nil, "\(name) \(hook)")
                }
            }
            #expect(try othersFilter())

            // A node moved to another backend: removeLeftovers finds the host interface's filter too.
            _ = try restarted.reconcile(engine.ir)
            #expect(
                try TrafficControl.attachedProgramID(on: "ext0", hook: .ingress, namespace: fixture.namespacePath)
                    != nil)
            let removed = try EBPFDataplane.removeLeftovers(
                namespacePath: fixture.namespacePath, pinRoot: fixture.pinRoot)
            #expect(removed.contains("tc programs on ext0"), "\(removed)")
            #expect(removed.contains("tc programs on cali0hep"), "\(removed)")
            #expect(
                try TrafficControl.attachedProgramID(on: "ext0", hook: .egress, namespace: fixture.namespacePath)
                    == nil)
            #expect(try othersFilter())
        }
    }
#endif
