import Foundation
import Synchronization
import TabbyCNI
import TabbyCore
import TabbyLab
import TabbyNetlink
import TabbyPolicy
import TabbyTestSupport

/// A node with pods, in network namespaces the lab creates (REFERENCE.md section 9): a node
/// namespace with forwarding on and an uplink, and per pod a namespace wired exactly as the CNI
/// plugin wires it (`KernelDatapath`, the host side in the node namespace). Each pod serves TCP
/// and UDP on ports 80 and 81 and answers ICMP echo. `probe` sends real packets between pods.
/// `tearDown` removes everything (server processes by PID, then the namespaces), also after a
/// failure.
public final class ConformanceLab: @unchecked Sendable {
    // @unchecked: `servers` and `namespaces` change only in init and tearDown, from one caller.
    public struct Pod: Hashable, Sendable, CustomStringConvertible {
        public var namespace: String
        public var name: String
        public var address: IPAddress
        public var interface: String
        public var namespacePath: String
        public var key: EndpointKey { EndpointKey(namespace: namespace, name: name) }
        public var description: String { "\(namespace)/\(name)" }
    }

    public let nodePath: String
    public private(set) var pods: [Pod] = []
    private var namespaces: [String] = []
    private var servers: [ChildProcess] = []
    private let id = String(UUID().uuidString.prefix(6).lowercased())

    /// Pods named `<namespace>/<pod>`, addressed 10.0.<namespace index>.<pod index + 1>.
    public init(namespaces podNamespaces: [String], pods podNames: [String]) throws {
        nodePath = try NetworkNamespace.create(named: "tabby-t-cf-\(id)-node")
        namespaces.append("tabby-t-cf-\(id)-node")
        do {
            try setUpNode()
            let datapath = KernelDatapath(hostNamespacePath: nodePath)
            for (nsIndex, namespace) in podNamespaces.enumerated() {
                for (podIndex, name) in podNames.enumerated() {
                    let nsName = "tabby-t-cf-\(id)-\(namespace)-\(name)"
                    let path = try NetworkNamespace.create(named: nsName)
                    namespaces.append(nsName)
                    try NetworkNamespace.run(path: path) {
                        let socket = try RouteSocket()
                        if let lo = try socket.link(named: "lo") {
                            try socket.setLink(
                                index: lo.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
                        }
                    }
                    let pod = Pod(
                        namespace: namespace, name: name, address: IPAddress("10.0.\(nsIndex).\(podIndex + 1)")!,
                        interface: CalicoNaming.hostInterface(namespace: namespace, pod: name), namespacePath: path)
                    try datapath.attach(
                        PodAttachment(
                            hostInterface: pod.interface, namespacePath: path, interfaceName: "eth0",
                            addresses: [pod.address], mtu: 1500, podMAC: MACAddress.randomLocallyAdministered()))
                    servers.append(
                        try ChildProcess.spawn(
                            "/usr/bin/nsenter", ["--net=\(path)", "/usr/bin/python3", "-c", ProbeScripts.server]))
                    pods.append(pod)
                }
            }
            try waitForServers()
        } catch {
            tearDown()
            throw error
        }
    }

    private func setUpNode() throws {
        let socket = try RouteSocket.open(inNamespaceAt: nodePath)
        if let lo = try socket.link(named: "lo") {
            try socket.setLink(index: lo.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
        }
        // A node's default route out of an uplink: proxy ARP answers 169.254.1.1 only when it is
        // routed elsewhere.
        try socket.createBridge(name: "uplink0", mtu: nil)
        guard let uplink = try socket.link(named: "uplink0") else { throw LabError("uplink0 did not appear") }
        try socket.setLink(index: uplink.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
        try socket.addRoute(
            Route(destination: CIDR("0.0.0.0/0")!, outputIndex: uplink.index, protocol: 4), replace: true)
        try NetworkNamespace.run(path: nodePath) { try Sysctl.set("net.ipv4.ip_forward", "1") }
    }

    /// Each server prints "ready" once it listens.
    private func waitForServers() throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let ready = try pods.allSatisfy { pod in
                try probe([Probe(from: pod, to: pod.address, kind: .tcp, port: 80)]).values.allSatisfy { $0 }
            }
            if ready { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw LabError("the pods' servers did not start listening within 10 s")
    }

    public func tearDown() {
        for server in servers { kill(server.pid, SIGKILL) }
        for server in servers { _ = server.wait() }
        servers = []
        for name in namespaces.reversed() { try? NetworkNamespace.delete(named: name) }
        namespaces = []
    }

    deinit { tearDown() }

    public func pod(_ namespace: String, _ name: String) -> Pod? {
        pods.first { $0.namespace == namespace && $0.name == name }
    }

    // MARK: Probes

    public struct Probe: Hashable, Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable { case tcp, udp, icmp }
        public var from: Pod
        public var to: IPAddress
        public var kind: Kind
        public var port: UInt16
        public init(from: Pod, to: IPAddress, kind: Kind, port: UInt16) {
            self.from = from
            self.to = to
            self.kind = kind
            self.port = port
        }
        public var description: String {
            kind == .icmp ? "\(from) -> \(to) icmp" : "\(from) -> \(to) \(kind.rawValue)/\(port)"
        }
    }

    /// UDP source ports for the probes, handed out in turn from 10000-32767 (below the kernel's
    /// ephemeral range): a port comes back only after ~22,000 UDP probes, far longer than
    /// conntrack's UDP timeouts, so no probe is answered through an entry a probe of an earlier
    /// case left (a reused ephemeral port once let a denied UDP probe through that way).
    static func udpSourcePorts(_ count: Int) -> Int {
        nextUDPPort.withLock { next in
            if next + count > 32767 { next = 10000 }
            defer { next += count }
            return next
        }
    }
    private static let nextUDPPort = Mutex(10000)

    /// Sends every probe (one prober process per source pod, all at once; each probe from a fresh
    /// socket, so conntrack never carries a verdict from one probe to the next) and returns
    /// whether each got its answer.
    public func probe(_ probes: [Probe], timeout: Double = 0.5) throws -> [Probe: Bool] {
        let bySource = Dictionary(grouping: probes, by: \.from)
        var running: [(Pod, [Probe], ChildProcess)] = []
        for (source, list) in bySource {
            let targets = list.map { "\($0.kind.rawValue),\($0.to),\($0.port)" }.joined(separator: " ")
            let udpBase = Self.udpSourcePorts(list.count)
            running.append(
                (
                    source, list,
                    try ChildProcess.spawn(
                        "/usr/bin/nsenter",
                        [
                            "--net=\(source.namespacePath)", "/usr/bin/python3", "-c", ProbeScripts.prober,
                            "\(timeout)",
                            targets, "\(udpBase)",
                        ])
                ))
        }
        var results: [Probe: Bool] = [:]
        for (source, list, process) in running {
            let result = process.wait()
            let answers = result.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard result.status == 0, answers.count == list.count else {
                throw LabError("prober in \(source) failed (\(result.status)): \(result.stdout) \(result.stderr)")
            }
            for (probe, answer) in zip(list, answers) { results[probe] = answer == "1" }
        }
        return results
    }

}

public struct LabError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
