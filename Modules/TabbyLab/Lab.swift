import Foundation
import TabbyCore
import TabbyNetlink

/// A multi-node Tabby cluster made of network namespaces on this machine (`tabbyctl lab`):
///
/// - an underlay namespace with a bridge (10.10.0.1/24) that every node plugs into;
/// - per node a namespace with `eth0` on the underlay (10.10.0.10+K/24, default route through the
///   bridge) and one `tabbyd` running inside it;
/// - per pod a namespace wired by the real `tabby` CNI plugin, called as a runtime calls it from
///   the pod's node namespace, with small TCP/UDP servers.
///
/// Everything it makes is named `tabby-lab-*` and recorded in the state directory, so `down`
/// removes exactly that (processes by PID, after checking the PID is still ours). The root
/// namespace's network is never touched.
public final class Lab: @unchecked Sendable {
    // @unchecked: one CLI invocation at a time; `state` is loaded, changed and saved in order.
    public static let defaultStateDirectory = "/run/tabby-lab"

    public struct Node: Codable, Sendable {
        public var name: String
        public var namespace: String
        public var address: String
        public var agentPID: Int32?
    }

    public struct Pod: Codable, Sendable {
        public var namespace: String
        public var name: String
        public var node: String
        public var netns: String
        public var address: String
        public var containerID: String
        public var serve: [String]
        public var serverPID: Int32?
        public var id: String { "\(namespace)/\(name)" }
    }

    public struct State: Codable, Sendable {
        public var dataplane: String
        public var datastore: String
        public var storePath: String?
        public var etcdEndpoints: String?
        public var etcdDirectory: String?
        public var etcdPID: Int32?
        public var underlay: String
        /// `vxlan` (nil in older states) or `bgp`: BIRD beside every tabbyd.
        public var routing: String?
        public var nodes: [Node] = []
        public var pods: [Pod] = []
    }

    public let stateDirectory: URL
    public let binDirectory: URL
    public private(set) var state: State?

    public init(stateDirectory: String = defaultStateDirectory, binDirectory: URL) throws {
        self.stateDirectory = URL(fileURLWithPath: stateDirectory)
        self.binDirectory = binDirectory
        let file = self.stateDirectory.appendingPathComponent("state.json")
        if let data = try? Data(contentsOf: file) {
            do {
                state = try JSONDecoder().decode(State.self, from: data)
            } catch {
                throw LabFailure(
                    "the lab state \(file.path) cannot be read (\(error)); remove it with tabbyctl lab down --force")
            }
        }
    }

    func save() throws {
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(to: stateDirectory.appendingPathComponent("state.json"), options: .atomic)
    }

    func requireState() throws -> State {
        guard let state else { throw LabFailure("no lab is running; start one with tabbyctl lab up") }
        return state
    }

    // MARK: up

    public enum Datastore: String, Sendable, CaseIterable { case embedded, etcd }

    /// Builds the underlay, the nodes and their agents, and a default IPPool.
    public func up(
        nodes count: Int, dataplane: String, datastore: Datastore, routing: Routing = .vxlan,
        progress: (String) -> Void
    ) throws {
        guard state == nil else {
            throw LabFailure("a lab is already up (state in \(stateDirectory.path)); tabbyctl lab down first")
        }
        guard (1...20).contains(count) else { throw LabFailure("--nodes must be between 1 and 20") }
        // Another lab (another state directory) owns the namespaces: fail before making anything,
        // so the cleanup below never removes that lab's namespaces.
        guard !FileManager.default.fileExists(atPath: "/run/netns/tabby-lab-underlay") else {
            throw LabFailure(
                "another lab is running on this machine (namespace tabby-lab-underlay exists); tabbyctl lab down --state-dir DIR stops it"
            )
        }
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        var state = State(
            dataplane: dataplane, datastore: datastore.rawValue, underlay: "tabby-lab-underlay",
            routing: routing.rawValue)
        self.state = state
        try save()
        do {
            progress("underlay: namespace \(state.underlay), bridge br0 10.10.0.1/24")
            let underlayPath = try NetworkNamespace.create(named: state.underlay)
            let underlay = try RouteSocket.open(inNamespaceAt: underlayPath)
            try Self.bringUpLoopback(underlay)
            try underlay.createBridge(name: "br0", mtu: 1500)
            let bridge = try Self.require(underlay, "br0")
            try underlay.addAddress(
                InterfaceAddress(IPAddress("10.10.0.1")!, prefixLength: 24), index: bridge.index, replace: true)
            try underlay.setLink(index: bridge.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)

            switch datastore {
            case .embedded:
                state.storePath = stateDirectory.appendingPathComponent("tabby.db").path
            case .etcd:
                // etcd (Debian's etcd-server) listens on the underlay bridge, where every node's
                // namespace reaches it.
                let directory = stateDirectory.appendingPathComponent("etcd").path
                progress("etcd on http://10.10.0.1:2379 in the underlay")
                state.etcdDirectory = directory
                state.etcdPID = try Self.spawnDetached(
                    [
                        "/usr/bin/nsenter", "--net=\(underlayPath)", "/usr/bin/etcd", "--name", "tabby-lab",
                        "--data-dir",
                        directory, "--listen-client-urls", "http://10.10.0.1:2379", "--advertise-client-urls",
                        "http://10.10.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
                        "--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--initial-cluster",
                        "tabby-lab=http://127.0.0.1:2380",
                    ], log: stateDirectory.appendingPathComponent("etcd.log").path)
                state.etcdEndpoints = "http://10.10.0.1:2379"
                self.state = state
                try save()
                let deadline = Date().addingTimeInterval(15)
                while !((try? HTTPProbe.get(namespace: underlayPath, host: "10.10.0.1", port: 2379, path: "/health"))?
                    .contains("true") ?? false)
                {
                    guard Date() < deadline else { throw LabFailure("etcd did not become healthy within 15 s") }
                    Thread.sleep(forTimeInterval: 0.2)
                }
            }
            self.state = state
            try save()

            // BGP: no overlay, BIRD on every node in a full mesh (BGPConfiguration's defaults).
            let vxlanMode = routing == .bgp ? "Never" : "Always"
            progress("IPPool default-ipv4-ippool 10.65.0.0/16 (vxlanMode \(vxlanMode))")
            try tabbyctl(
                ["apply", "-f", "-"],
                stdin: """
                    apiVersion: projectcalico.org/v3
                    kind: IPPool
                    metadata: {name: default-ipv4-ippool}
                    spec: {cidr: 10.65.0.0/16, blockSize: 26, vxlanMode: \(vxlanMode), natOutgoing: false}
                    """)

            for index in 1...count {
                let node = Node(
                    name: "node-\(index)", namespace: "tabby-lab-node-\(index)", address: "10.10.0.\(10 + index)/24")
                progress("node \(node.name): namespace \(node.namespace), eth0 \(node.address)")
                try addNode(node, underlay: underlay, underlayPath: underlayPath)
                state.nodes.append(node)
                self.state = state
                try save()
                progress("node \(node.name): starting tabbyd (\(dataplane), \(routing.rawValue) routing)")
                state.nodes[state.nodes.count - 1].agentPID = try startAgent(node)
                self.state = state
                try save()
            }
            for node in state.nodes {
                try waitUntilReady(node)
                progress("node \(node.name): tabbyd ready")
            }
        } catch {
            progress("lab up failed, removing what was made: \(error)")
            try? down(progress: progress)
            throw error
        }
    }

    func addNode(_ node: Node, underlay: RouteSocket, underlayPath: String) throws {
        let path = try NetworkNamespace.create(named: node.namespace)
        let fd = try NetworkNamespace.openFD(path: path)
        defer { close(fd) }
        let port = "lab-\(node.name)"
        try underlay.createVeth(name: port, peerName: "eth0", peerNamespaceFD: fd, mtu: 1500, mac: nil, peerMAC: nil)
        let bridge = try Self.require(underlay, "br0")
        let link = try Self.require(underlay, port)
        try underlay.setLink(index: link.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: bridge.index)

        let inside = try RouteSocket.open(inNamespaceAt: path)
        try Self.bringUpLoopback(inside)
        let eth0 = try Self.require(inside, "eth0")
        guard let address = InterfaceAddress(parsing: node.address) else {
            throw LabFailure("node address \(node.address) is not an address with a prefix length")
        }
        try inside.addAddress(address, index: eth0.index, replace: true)
        try inside.setLink(index: eth0.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
        try inside.addRoute(
            // RTPROT_STATIC: the node's own route, as an operator would configure it, not Tabby's.
            Route(
                destination: CIDR("0.0.0.0/0")!, gateway: IPAddress("10.10.0.1")!, outputIndex: eth0.index,
                protocol: 4),
            replace: true)
        // A node forwards between its pods and the underlay (the operator's setting on a real node).
        try NetworkNamespace.run(path: path) { try Sysctl.set("net.ipv4.ip_forward", "1") }
    }

    func datastoreArguments() throws -> [String] {
        let state = try requireState()
        if let endpoints = state.etcdEndpoints { return ["--etcd-endpoints", endpoints] }
        return ["--store", state.storePath ?? ""]
    }

    func startAgent(_ node: Node) throws -> Int32 {
        let state = try requireState()
        let log = stateDirectory.appendingPathComponent("\(node.name).log").path
        let command =
            [
                "/usr/bin/nsenter", "--net=/run/netns/\(node.namespace)",
                binDirectory.appendingPathComponent("tabbyd").path, "--node-name", node.name, "--dataplane",
                state.dataplane, "--underlay-address", node.address,
            ]
            + (state.routing == Routing.bgp.rawValue
                ? ["--routing", "bgp", "--bird-run-dir", birdDirectory(node)] : [])
            + (state.dataplane == "ebpf" ? ["--bpf-pin-root", Self.bpfPinRoot] : [])
            + (try datastoreArguments())
        return try Self.spawnDetached(command, log: log)
    }

    public enum Routing: String, Sendable, CaseIterable { case vxlan, bgp }

    /// The eBPF dataplane's pins for lab nodes: `<root>/<node>`, apart from a real agent's
    /// `/sys/fs/bpf/tabby/<node>`, so that `down` can remove them all without touching another's.
    public static let bpfPinRoot = "/sys/fs/bpf/tabby-lab"

    /// A node's BIRD run directory (configuration, control socket, pid file, log) in BGP mode.
    public func birdDirectory(_ node: Node) -> String {
        stateDirectory.appendingPathComponent("bird-\(node.name)").path
    }

    /// Polls the agent's /readiness inside its namespace (up to 30 s).
    func waitUntilReady(_ node: Node) throws {
        let deadline = Date().addingTimeInterval(30)
        var last = ""
        while Date() < deadline {
            if let pid = node.agentPID, !Self.alive(pid) {
                let log =
                    (try? String(
                        contentsOfFile: stateDirectory.appendingPathComponent("\(node.name).log").path, encoding: .utf8))
                    ?? ""
                throw LabFailure("tabbyd on \(node.name) exited:\n\(log.suffix(2000))")
            }
            last =
                (try? HTTPProbe.get(namespace: "/run/netns/\(node.namespace)", port: 9099, path: "/readiness"))
                ?? "no answer"
            if last.hasPrefix("200") { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw LabFailure("tabbyd on \(node.name) did not become ready within 30 s (last answer: \(last))")
    }

    /// Stops a node's tabbyd (SIGKILL when `kill`, else SIGTERM) and starts it again; returns
    /// when the new one is ready.
    public func restartAgent(node index: Int, kill useKill: Bool) throws {
        var state = try requireState()
        guard (1...state.nodes.count).contains(index) else {
            throw LabFailure("--node \(index): the lab has nodes 1 to \(state.nodes.count)")
        }
        let node = state.nodes[index - 1]
        if let pid = node.agentPID {
            if useKill {
                let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
                if commandLine.contains("tabbyd") { kill(pid, SIGKILL) }
                let deadline = Date().addingTimeInterval(5)
                while Self.alive(pid) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            } else {
                Self.stop(pid, expecting: "tabbyd")
            }
        }
        state.nodes[index - 1].agentPID = try startAgent(node)
        self.state = state
        try save()
        try waitUntilReady(state.nodes[index - 1])
    }

    // MARK: pods

    /// Adds a pod through the real CNI plugin, as a runtime would, and starts its servers.
    public func addPod(
        namespace: String, name: String, node nodeIndex: Int, labels: [String: String], serve: [String]
    ) throws -> Pod {
        var state = try requireState()
        guard state.pods.first(where: { $0.namespace == namespace && $0.name == name }) == nil else {
            throw LabFailure("pod \(namespace)/\(name) already exists")
        }
        guard (1...state.nodes.count).contains(nodeIndex) else {
            throw LabFailure("--node \(nodeIndex): the lab has nodes 1 to \(state.nodes.count)")
        }
        for spec in serve where LabPorts.parse(spec) == nil {
            throw LabFailure("--serve \(spec): use PORT/tcp or PORT/udp, e.g. 80/tcp")
        }
        let node = state.nodes[nodeIndex - 1]
        // The pod's namespace exists as a Kubernetes Namespace (its labels drive namespaceSelectors):
        // created when missing, never overwritten (the user's labels stay).
        try tabbyctl(
            ["create", "-f", "-"],
            stdin: """
                apiVersion: v1
                kind: Namespace
                metadata: {name: \(namespace), labels: {kubernetes.io/metadata.name: \(namespace)}}
                """, ignoreFailure: true)
        let netnsName = "tabby-lab-pod-\(namespace)-\(name)"
        let netns = try NetworkNamespace.create(named: netnsName)
        try Self.bringUpLoopback(try RouteSocket.open(inNamespaceAt: netns))
        let containerID = "lab-\(namespace)-\(name)"
        let labelText = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let result = try cni(
            "ADD", node: node, netns: netns, containerID: containerID,
            args: "K8S_POD_NAMESPACE=\(namespace);K8S_POD_NAME=\(name)"
                + (labelText.isEmpty ? "" : ";TABBY_LABELS=\(labelText)"))
        guard let object = try? JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any],
            let ips = object["ips"] as? [[String: Any]], let address = ips.first?["address"] as? String
        else {
            try? NetworkNamespace.delete(named: netnsName)
            throw LabFailure("tabby ADD for \(namespace)/\(name) returned no address: \(result)")
        }
        var pod = Pod(
            namespace: namespace, name: name, node: node.name, netns: netnsName,
            address: String(address.split(separator: "/")[0]), containerID: containerID, serve: serve)
        if !serve.isEmpty {
            pod.serverPID = try Self.spawnDetached(
                [
                    "/usr/bin/nsenter", "--net=\(netns)", "/usr/bin/python3", "-c", ProbeScripts.server,
                    serve.joined(separator: ","),
                ],
                log: stateDirectory.appendingPathComponent("pod-\(namespace)-\(name).log").path)
        }
        state.pods.append(pod)
        self.state = state
        try save()
        return pod
    }

    public func deletePod(namespace: String, name: String) throws {
        var state = try requireState()
        guard let index = state.pods.firstIndex(where: { $0.namespace == namespace && $0.name == name }) else {
            throw LabFailure("pod \(namespace)/\(name) is not in the lab")
        }
        let pod = state.pods[index]
        if let pid = pod.serverPID { Self.stop(pid, expecting: "python3") }
        if let node = state.nodes.first(where: { $0.name == pod.node }) {
            _ = try cni(
                "DEL", node: node, netns: "/run/netns/\(pod.netns)", containerID: pod.containerID,
                args: "K8S_POD_NAMESPACE=\(namespace);K8S_POD_NAME=\(name)")
        }
        try? NetworkNamespace.delete(named: pod.netns)
        state.pods.remove(at: index)
        self.state = state
        try save()
    }

    func cni(_ command: String, node: Node, netns: String, containerID: String, args: String) throws -> String {
        let state = try requireState()
        var config: [String: Any] = [
            "cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tabby", "nodename": node.name, "mtu": 1450,
            "ipam": ["type": "tabby-ipam"],
            "log_file_path": stateDirectory.appendingPathComponent("cni.log").path, "log_level": "info",
        ]
        if let endpoints = state.etcdEndpoints {
            config["datastore_type"] = "etcdv3"
            config["etcd_endpoints"] = endpoints
        } else {
            config["datastore_path"] = state.storePath
        }
        let data = try JSONSerialization.data(withJSONObject: config)
        let environment = [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": containerID,
            "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_ARGS": args,
            "CNI_PATH": binDirectory.path,
        ]
        let (status, output, errors) = try Self.run(
            [
                "/usr/bin/nsenter", "--net=/run/netns/\(node.namespace)",
                binDirectory.appendingPathComponent("tabby").path,
            ],
            environment: environment, stdin: String(decoding: data, as: UTF8.self))
        guard status == 0 else { throw LabFailure("tabby \(command) failed: \(output) \(errors)") }
        return output
    }

    // MARK: down

    /// Stops every process the lab started and deletes its namespaces and state.
    public func down(progress: (String) -> Void) throws {
        let state = self.state
        for pod in state?.pods ?? [] {
            if let pid = pod.serverPID { Self.stop(pid, expecting: "python3") }
        }
        for node in state?.nodes ?? [] {
            if let pid = node.agentPID {
                progress("stopping tabbyd on \(node.name)")
                Self.stop(pid, expecting: "tabbyd")
            }
        }
        // tabbyd stops its BIRD on SIGTERM; one it left behind (a killed agent) is stopped here.
        for node in state?.nodes ?? [] {
            let pidFile = birdDirectory(node) + "/bird.pid"
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                progress("stopping BIRD on \(node.name)")
                Self.stop(pid, expecting: "bird")
            }
        }
        if let pid = state?.etcdPID {
            progress("stopping etcd")
            Self.stop(pid, expecting: "etcd")
        }
        // Every tabby-lab-* namespace: also those of a lab whose state was lost.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        for name in names.sorted().reversed() where name.hasPrefix("tabby-lab-") {
            progress("deleting namespace \(name)")
            try? NetworkNamespace.delete(named: name)
        }
        // eBPF pins (maps outlive their namespaces and programs): also those of a lost state.
        if FileManager.default.fileExists(atPath: Self.bpfPinRoot) {
            progress("removing eBPF pins under \(Self.bpfPinRoot)")
            try? FileManager.default.removeItem(atPath: Self.bpfPinRoot)
        }
        try? FileManager.default.removeItem(at: stateDirectory)
        self.state = nil
    }

    // MARK: status

    public func statusText() throws -> String {
        let state = try requireState()
        var lines = [
            "Lab: \(state.nodes.count) node(s), \(state.dataplane) dataplane, \(state.datastore) datastore, \(state.routing ?? "vxlan") routing"
        ]
        for node in state.nodes {
            let alive = node.agentPID.map(Self.alive) ?? false
            let ready =
                (try? HTTPProbe.get(namespace: "/run/netns/\(node.namespace)", port: 9099, path: "/readiness"))?
                .hasPrefix("200") ?? false
            lines.append(
                "  \(node.name)  \(node.address)  tabbyd pid \(node.agentPID.map(String.init) ?? "-") \(alive ? (ready ? "ready" : "running, not ready") : "NOT RUNNING")"
            )
        }
        for pod in state.pods {
            lines.append("  pod \(pod.id)  \(pod.address)  on \(pod.node)  serves \(pod.serve.joined(separator: ","))")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: helpers

    func tabbyctl(_ arguments: [String], stdin: String, ignoreFailure: Bool = false) throws {
        let state = try requireState()
        var environment = ProcessInfo.processInfo.environment
        if let endpoints = state.etcdEndpoints {
            environment["ETCD_ENDPOINTS"] = endpoints
            environment["TABBY_STORE"] = nil
            // etcd listens inside the underlay: run tabbyctl there.
            let (status, output, errors) = try Self.run(
                [
                    "/usr/bin/nsenter", "--net=/run/netns/\(state.underlay)",
                    binDirectory.appendingPathComponent("tabbyctl").path,
                ]
                    + arguments, environment: environment, stdin: stdin)
            if status != 0 && !ignoreFailure {
                throw LabFailure("tabbyctl \(arguments.joined(separator: " ")): \(output) \(errors)")
            }
            return
        }
        environment["TABBY_STORE"] = state.storePath
        environment["ETCD_ENDPOINTS"] = nil
        let (status, output, errors) = try Self.run(
            [binDirectory.appendingPathComponent("tabbyctl").path] + arguments, environment: environment, stdin: stdin)
        if status != 0 && !ignoreFailure {
            throw LabFailure("tabbyctl \(arguments.joined(separator: " ")): \(output) \(errors)")
        }
    }

    static func bringUpLoopback(_ socket: RouteSocket) throws {
        if let lo = try socket.link(named: "lo") {
            try socket.setLink(index: lo.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
        }
    }

    static func require(_ socket: RouteSocket, _ name: String) throws -> Link {
        guard let link = try socket.link(named: name) else { throw LabFailure("\(name) did not appear") }
        return link
    }

    /// Runs a command to completion: (status, stdout, stderr).
    static func run(_ command: [String], environment: [String: String]? = nil, stdin: String = "") throws -> (
        Int32, String, String
    ) {
        let result = try Command.run(command, environment: environment, input: stdin)
        return (result.status, result.stdout, result.stderr)
    }

    static func shell(_ command: [String]) throws -> String {
        let (status, output, errors) = try run(command)
        guard status == 0 else { throw LabFailure("\(command.joined(separator: " ")) failed: \(errors)") }
        return output
    }

    /// Starts a long-running process in its own session (it outlives this CLI), output to `log`;
    /// returns its PID.
    static func spawnDetached(_ command: [String], log: String) throws -> Int32 {
        try Command.spawnDetached(command, log: log)
    }

    static func alive(_ pid: Int32) -> Bool { Command.isAlive(pid) }

    /// SIGTERM, then SIGKILL after 5 s; only if the PID still runs `expecting` (never a reused PID).
    static func stop(_ pid: Int32, expecting: String) {
        let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        guard commandLine.contains(expecting) else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while alive(pid) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if alive(pid) { kill(pid, SIGKILL) }
    }
}

public struct LabFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `80/tcp` port specs.
public enum LabPorts {
    public static func parse(_ text: String) -> (port: UInt16, proto: String)? {
        let parts = text.lowercased().split(separator: "/")
        guard parts.count == 2, let port = UInt16(parts[0]), port > 0, ["tcp", "udp"].contains(parts[1]) else {
            return nil
        }
        return (port, String(parts[1]))
    }
}

/// A plain HTTP GET from inside a namespace (the agents' endpoints listen on their node's
/// loopback): the socket is made on a thread that entered the namespace, then used from here.
enum HTTPProbe {
    static func get(namespace: String, host: String = "127.0.0.1", port: UInt16, path: String) throws -> String {
        try NetworkNamespace.run(path: namespace) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw LabFailure("socket: errno \(errno)") }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr =
                IPAddress(host).map { address in
                    address.bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }.bigEndian
                } ?? UInt32(0x7F00_0001).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw LabFailure("connect \(host):\(port): errno \(errno)") }
            let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                response += buffer[0..<count]
            }
            let text = String(decoding: response, as: UTF8.self)
            // "HTTP/1.1 200 OK" -> "200 ..." then the body.
            let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.map(String.init) ?? "?"
            let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
            return "\(status) \(body)"
        }
    }
}
