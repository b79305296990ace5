import Foundation
import Synchronization

/// One cell of the reachability matrix (`tabbyctl lab probe -o json` prints `{"results": [...]}`).
public struct LabProbeResult: Codable, Sendable, Hashable {
    public var from: String
    public var to: String
    public var `protocol`: String
    public var port: UInt16
    public var connected: Bool

    public init(from: String, to: String, protocol: String, port: UInt16, connected: Bool) {
        self.from = from
        self.to = to
        self.protocol = `protocol`
        self.port = port
        self.connected = connected
    }

    /// One grid per port: rows are clients, columns servers; `.` connected, `X` not.
    public static func grid(_ results: [LabProbeResult]) -> String {
        let pods = Array(Set(results.flatMap { [$0.from, $0.to] })).sorted()
        let ports = Array(Set(results.map { "\($0.port)/\($0.protocol)" })).sorted()
        let width = max(8, (pods.map(\.count).max() ?? 0) + 1)
        var lines: [String] = []
        for port in ports {
            lines.append("\(port) (rows: from, columns: to; . connected, X blocked, - not probed)")
            lines.append(
                "".padding(toLength: width, withPad: " ", startingAt: 0)
                    + pods.map { $0.padding(toLength: width, withPad: " ", startingAt: 0) }.joined())
            for from in pods {
                var row = from.padding(toLength: width, withPad: " ", startingAt: 0)
                for to in pods {
                    let cell = results.first { $0.from == from && $0.to == to && "\($0.port)/\($0.protocol)" == port }
                    let mark = cell.map { $0.connected ? "." : "X" } ?? "-"
                    row += mark.padding(toLength: width, withPad: " ", startingAt: 0)
                }
                lines.append(row)
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}

extension Lab {
    /// Every pod to every other pod, on `port` (`80/tcp`) or on each port the destination serves.
    /// One prober per source pod, all at once.
    public func probe(port: String?) throws -> [LabProbeResult] {
        let state = try requireState()
        var plans: [(Pod, [LabProbeResult], [String])] = []
        for from in state.pods {
            var cells: [LabProbeResult] = []
            var targets: [String] = []
            for to in state.pods where to.id != from.id {
                for spec in port.map({ [$0] }) ?? to.serve {
                    guard let parsed = LabPorts.parse(spec) else { continue }
                    cells.append(
                        LabProbeResult(
                            from: from.id, to: to.id, protocol: parsed.proto, port: parsed.port, connected: false))
                    targets.append("\(parsed.proto),\(to.address),\(parsed.port)")
                }
            }
            if !targets.isEmpty { plans.append((from, cells, targets)) }
        }
        let outputs = Mutex<[Int: String]>([:])
        let failures = Mutex<[String]>([])
        let frozen = plans
        // A thread per prober: they mostly wait on timeouts, so all of them run at once.
        let group = DispatchGroup()
        for index in frozen.indices {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let (from, _, targets) = frozen[index]
                do {
                    let (status, output, errors) = try Lab.run([
                        "/usr/bin/nsenter", "--net=/run/netns/\(from.netns)", "/usr/bin/python3", "-c",
                        ProbeScripts.prober,
                        "0.5", targets.joined(separator: " "),
                    ])
                    if status != 0 { failures.withLock { $0.append("prober in \(from.id): \(errors)") } }
                    outputs.withLock { $0[index] = output }
                } catch {
                    failures.withLock { $0.append("prober in \(from.id): \(error)") }
                }
            }
        }
        group.wait()
        if let failure = failures.withLock({ $0.first }) { throw LabFailure(failure) }
        var results: [LabProbeResult] = []
        for (index, (_, cells, _)) in plans.enumerated() {
            let answers = (outputs.withLock { $0[index] } ?? "").split(whereSeparator: \.isWhitespace)
            guard answers.count == cells.count else {
                throw LabFailure("a prober answered \(answers.count) of \(cells.count) probes")
            }
            for (cell, answer) in zip(cells, answers) {
                var result = cell
                result.connected = answer == "1"
                results.append(result)
            }
        }
        return results
    }

    /// The cells where the kernel and the reference evaluator disagree, described.
    public func compareWithOracle(_ results: [LabProbeResult]) throws -> [String] {
        let state = try requireState()
        var environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        var command = [binDirectory.appendingPathComponent("tabbyctl").path, "lab", "oracle"]
        if let endpoints = state.etcdEndpoints {
            environment["ETCD_ENDPOINTS"] = endpoints
            command = ["/usr/bin/nsenter", "--net=/run/netns/\(state.underlay)"] + command
        } else {
            environment["TABBY_STORE"] = state.storePath
        }
        let input = String(decoding: try JSONEncoder().encode(results), as: UTF8.self)
        let (status, output, errors) = try Lab.run(command, environment: environment, stdin: input)
        guard status == 0, let verdicts = try? JSONDecoder().decode([Bool].self, from: Data(output.utf8)),
            verdicts.count == results.count
        else { throw LabFailure("the reference evaluator failed: \(errors) \(output)") }
        return zip(results, verdicts).compactMap { result, allowed in
            result.connected == allowed
                ? nil
                : "\(result.from) -> \(result.to) \(result.port)/\(result.protocol): kernel \(result.connected ? "connected" : "blocked"), evaluator \(allowed ? "allows" : "denies")"
        }
    }
}

/// `tabbyctl lab demo`: the one-command showcase.
public struct LabDemo {
    let lab: Lab
    let dataplane: String
    let tabbyctl: URL

    public init(lab: Lab, dataplane: String, tabbyctl: URL) {
        self.lab = lab
        self.dataplane = dataplane
        self.tabbyctl = tabbyctl
    }

    func say(_ text: String) { emit("\n== \(text)") }

    func store(_ arguments: [String], stdin: String = "") throws -> String {
        let state = try lab.requireState()
        var environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        environment["TABBY_STORE"] = state.storePath
        let (status, output, errors) = try Lab.run([tabbyctl.path] + arguments, environment: environment, stdin: stdin)
        guard status == 0 || arguments.contains("explain") else {
            throw LabFailure("tabbyctl \(arguments.joined(separator: " ")): \(errors)")
        }
        return output + errors
    }

    public func run() throws {
        say("A 2-node lab (\(dataplane) dataplane, embedded datastore)")
        try lab.up(nodes: 2, dataplane: dataplane, datastore: .embedded) { emit("   \($0)") }
        say("Namespaces frontend and backend, three pods across the nodes")
        emit(
            try store(
                ["apply", "-f", "-"],
                stdin: """
                    apiVersion: v1
                    kind: Namespace
                    metadata: {name: frontend, labels: {team: web}}
                    ---
                    apiVersion: v1
                    kind: Namespace
                    metadata: {name: backend, labels: {team: data}}
                    """))
        for (pod, node, labels) in [
            ("frontend/web", 1, ["app": "web"]), ("backend/db", 2, ["app": "db"]),
            ("backend/batch", 1, ["app": "batch"]),
        ] {
            let parts = pod.split(separator: "/").map(String.init)
            let added = try lab.addPod(
                namespace: parts[0], name: parts[1], node: node, labels: labels, serve: ["80/tcp"])
            emit("   \(added.id) on \(added.node) at \(added.address)")
        }
        say("Who can reach whom on 80/tcp (no policy yet)")
        emit(LabProbeResult.grid(try lab.probe(port: "80/tcp")))
        say("Policy: only the web pods may reach backend/db")
        let policy = """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: db-from-web, namespace: backend}
            spec:
              selector: app == 'db'
              ingress:
              - action: Allow
                protocol: TCP
                source: {selector: app == 'web', namespaceSelector: team == 'web'}
                destination: {ports: [80]}
            """
        emit(policy)
        emit(try store(["apply", "-f", "-"], stdin: policy))
        Thread.sleep(forTimeInterval: 1)
        say("Who can reach whom on 80/tcp now")
        let after = try lab.probe(port: "80/tcp")
        emit(LabProbeResult.grid(after))
        let differences = try lab.compareWithOracle(after)
        emit(
            differences.isEmpty
                ? "   every cell agrees with the reference evaluator" : differences.joined(separator: "\n"))
        say("Why can backend/batch not reach backend/db?")
        emit(
            try store([
                "policy", "explain", "--from", "backend/batch", "--to", "backend/db", "--protocol", "tcp", "--port",
                "80",
            ]))
        say("Cleaning up")
        try lab.down { emit("   \($0)") }
        if !differences.isEmpty { throw LabFailure("the kernel and the evaluator disagreed") }
    }
}

/// Writes a line to stdout at once (print is block-buffered through a pipe, and the lab's
/// progress should show as it happens).
public func emit(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
