import Foundation
import TabbyDataplaneConformance
import TabbyTestSupport
import Testing

/// The whole system, as an operator drives it: `tabbyctl lab up` with two nodes (a tabbyd each),
/// the nine pods of the upstream topology split across the nodes by the real CNI plugin, then
/// every Kubernetes case applied with `tabbyctl apply` and checked with `lab probe
/// --compare-oracle` (real TCP and UDP between every pair, across nodes through VXLAN), then the
/// dynamic steps. With the nftables dataplane on the embedded store and on etcd, and with the
/// iptables dataplane on the embedded store (the datastore does not change what the dataplane
/// gets, so iptables on etcd would only add minutes).
@Suite(
    "lab end to end",
    .enabled(if: isRoot, "creates network namespaces and runs tabbyd: needs root"), .serialized)
struct LabEndToEndTests {
    final class LabRun {
        let stateDirectory: String
        let datastore: String

        init(datastore: String) {
            self.datastore = datastore
            stateDirectory =
                FileManager.default.temporaryDirectory.appendingPathComponent(
                    "tabby-lab-\(UUID().uuidString)"
                ).path
        }

        func tabbyctl(_ arguments: [String], stdin: String = "") throws -> ChildProcess.Result {
            try ChildProcess.run(
                BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path, arguments,
                environment: ProcessInfo.processInfo.environment, stdin: stdin)
        }

        func lab(_ arguments: [String]) throws -> ChildProcess.Result {
            try tabbyctl(["lab"] + arguments + ["--state-dir", stateDirectory])
        }

        /// `tabbyctl apply` against the lab's datastore (etcd listens inside the underlay).
        func apply(_ manifest: String) throws {
            let tool = BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path
            var environment = ProcessInfo.processInfo.environment
            let result: ChildProcess.Result
            if datastore == "etcd" {
                environment["ETCD_ENDPOINTS"] = "http://10.10.0.1:2379"
                result = try ChildProcess.run(
                    "/usr/bin/nsenter", ["--net=/run/netns/tabby-lab-underlay", tool, "apply", "-f", "-"],
                    environment: environment, stdin: manifest)
            } else {
                environment["TABBY_STORE"] = stateDirectory + "/tabby.db"
                result = try ChildProcess.run(tool, ["apply", "-f", "-"], environment: environment, stdin: manifest)
            }
            #expect(result.status == 0, "apply: \(result.stdout) \(result.stderr)")
        }

        /// `tabbyctl delete -f -` of everything a manifest holds.
        func delete(manifest: String) throws {
            let tool = BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path
            var environment = ProcessInfo.processInfo.environment
            var command = [tool, "delete", "-f", "-"]
            if datastore == "etcd" {
                environment["ETCD_ENDPOINTS"] = "http://10.10.0.1:2379"
                command = ["/usr/bin/nsenter", "--net=/run/netns/tabby-lab-underlay"] + command
            } else {
                environment["TABBY_STORE"] = stateDirectory + "/tabby.db"
            }
            let result = try ChildProcess.run(
                command[0], Array(command.dropFirst()), environment: environment, stdin: manifest)
            #expect(result.status == 0, "delete: \(result.stdout) \(result.stderr)")
        }

        /// `tabbyctl label workloadendpoint NAME key=value -n NS --overwrite`.
        func label(endpoint: String, namespace: String, _ pair: String) throws {
            let tool = BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path
            var environment = ProcessInfo.processInfo.environment
            var command = [tool, "label", "workloadendpoint", endpoint, pair, "-n", namespace, "--overwrite"]
            if datastore == "etcd" {
                environment["ETCD_ENDPOINTS"] = "http://10.10.0.1:2379"
                command = ["/usr/bin/nsenter", "--net=/run/netns/tabby-lab-underlay"] + command
            } else {
                environment["TABBY_STORE"] = stateDirectory + "/tabby.db"
            }
            let result = try ChildProcess.run(command[0], Array(command.dropFirst()), environment: environment)
            #expect(result.status == 0, "label: \(result.stdout) \(result.stderr)")
        }

        func delete(_ kind: String, _ name: String, namespace: String) throws {
            let tool = BuiltTools.binDirectory.appendingPathComponent("tabbyctl").path
            var environment = ProcessInfo.processInfo.environment
            var command = [tool, "delete", kind, name, "-n", namespace]
            if datastore == "etcd" {
                environment["ETCD_ENDPOINTS"] = "http://10.10.0.1:2379"
                command = ["/usr/bin/nsenter", "--net=/run/netns/tabby-lab-underlay"] + command
            } else {
                environment["TABBY_STORE"] = stateDirectory + "/tabby.db"
            }
            _ = try ChildProcess.run(command[0], Array(command.dropFirst()), environment: environment)
        }

        /// Whether `from` reached `to` on 80/tcp in a fresh probe.
        func reaches(_ from: String, _ to: String) throws -> Bool? {
            let result = try lab(["probe", "--port", "80/tcp", "-o", "json"])
            let cells =
                (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])?["results"]
                as? [[String: Any]] ?? []
            return cells.first { $0["from"] as? String == from && $0["to"] as? String == to }?["connected"] as? Bool
        }

        /// Probes until the kernel agrees with the evaluator (the agents converge within a few
        /// hundred milliseconds) or 10 s pass; returns the last disagreement, empty when none.
        func converge() throws -> String {
            let deadline = Date().addingTimeInterval(10)
            var last = ""
            while Date() < deadline {
                let result = try lab(["probe", "--compare-oracle"])
                if result.status == 0 { return "" }
                last = result.stdout + result.stderr
                Thread.sleep(forTimeInterval: 0.3)
            }
            return last
        }
    }

    static func namespaces(_ labels: [String: String] = [:]) -> String {
        ["x", "y", "z"].map { name in
            """
            apiVersion: v1
            kind: Namespace
            metadata: {name: \(name), labels: {ns: \(labels[name] ?? name)}}
            ---

            """
        }.joined()
    }

    @Test(arguments: [("nftables", "embedded"), ("nftables", "etcd"), ("iptables", "embedded"), ("ebpf", "embedded")])
    func kubernetesCasesAcrossTwoNodes(dataplane: String, datastore: String) throws {
        let run = LabRun(datastore: datastore)
        let up = try run.lab(["up", "--nodes", "2", "--datastore", datastore, "--dataplane", dataplane])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        try run.apply(Self.namespaces())
        var index = 0
        for namespace in ["x", "y", "z"] {
            for pod in ["a", "b", "c"] {
                let node = index % 2 + 1
                index += 1
                let added = try run.lab([
                    "pod", "add", "\(namespace)/\(pod)", "--node", "\(node)", "--labels", "pod=\(pod)",
                ])
                try #require(added.status == 0, "pod add: \(added.stdout) \(added.stderr)")
            }
        }
        // Without policy every pod reaches every other, across the nodes too.
        #expect(try run.converge() == "")
        let open = try run.lab(["probe", "-o", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(open.stdout.utf8)) as? [String: Any]
        let results = object?["results"] as? [[String: Any]] ?? []
        #expect(results.count == 9 * 8 * 4)
        #expect(results.allSatisfy { $0["connected"] as? Bool == true })

        var previous = ""
        for (name, manifest) in ConformanceKit.kubernetesCases + ConformanceKit.calicoCases {
            if !previous.isEmpty { try run.delete(manifest: previous) }
            try run.apply(manifest)
            previous = manifest
            let disagreement = try run.converge()
            #expect(disagreement.isEmpty, "\(dataplane), \(datastore), case \(name):\n\(disagreement)")
        }

        // Relabelling a pod so that a selector starts to match: case 4 (one peer: namespaces y, z AND
        // pod b) lets y/c in once y/c is labelled pod=b. y/c is the sixth pod, on node 2.
        try run.delete(manifest: previous)
        try run.apply(ConformanceKit.kubernetesCases[3].manifest)
        #expect(try run.converge() == "", "\(dataplane), \(datastore): case 4")
        #expect(try run.reaches("y/c", "x/a") == false)
        try run.label(endpoint: "node--2-k8s-c-eth0", namespace: "y", "pod=b")
        #expect(try run.converge() == "", "\(dataplane), \(datastore): after relabelling y/c as pod=b")
        #expect(try run.reaches("y/c", "x/a") == true)
        try run.label(endpoint: "node--2-k8s-c-eth0", namespace: "y", "pod=c")
        try run.delete(manifest: ConformanceKit.kubernetesCases[3].manifest)

        // An allow-all beside a port-80-only policy opens port 81.
        let port80 = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: port-80, namespace: x}
            spec:
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - ports: [{port: 80}]
            """
        try run.apply(port80)
        #expect(try run.converge() == "", "\(dataplane), \(datastore): port 80 only")
        let port81Before = try run.lab(["probe", "--port", "81/tcp", "-o", "json"]).stdout
        let allowAll = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: allow-all, namespace: x}
            spec:
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - {}
            """
        try run.apply(allowAll)
        #expect(try run.converge() == "", "\(dataplane), \(datastore): allow-all on top")
        let port81After = try run.lab(["probe", "--port", "81/tcp", "-o", "json"]).stdout
        func toXA(_ json: String) -> [Bool] {
            ((try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["results"]
                as? [[String: Any]] ?? []).filter { $0["to"] as? String == "x/a" }.compactMap {
                    $0["connected"] as? Bool
                }
        }
        #expect(
            !toXA(port81Before).isEmpty && toXA(port81Before).allSatisfy { !$0 }, "port 81 closed under port-80-only")
        #expect(!toXA(port81After).isEmpty && toXA(port81After).allSatisfy { $0 }, "port 81 open with the allow-all")
        try run.delete(manifest: port80 + "\n---\n" + allowAll)

        // Dynamic steps on case 3 (x/a only from namespace y): relabel z as y, then delete the policy.
        try run.apply(ConformanceKit.kubernetesCases[2].manifest)
        #expect(try run.converge() == "", "\(dataplane), \(datastore): case 3")
        try run.apply(Self.namespaces(["z": "y"]))
        #expect(try run.converge() == "", "\(dataplane), \(datastore): after relabelling namespace z")
        try run.delete("knp", "from-y", namespace: "x")
        #expect(try run.converge() == "", "\(dataplane), \(datastore): after deleting the policy")
        let reopened = try run.lab(["probe", "-o", "json"])
        let reopenedResults =
            (try JSONSerialization.jsonObject(with: Data(reopened.stdout.utf8)) as? [String: Any])?["results"]
            as? [[String: Any]] ?? []
        #expect(!reopenedResults.isEmpty && reopenedResults.allSatisfy { $0["connected"] as? Bool == true })
    }

    /// SIGKILL both agents during an iperf3 flow across the nodes and start them again: every
    /// 1-second interval carries traffic, and the restarted agents adopt their rules (the
    /// ruleset, rule handles included, is exactly what it was: nothing flushed and rebuilt; with
    /// iptables, which has no rule handles, the same rules with packet counters that only grew: a
    /// rewritten chain starts counting from zero; with eBPF, the same pinned maps, conntrack and
    /// policy tables included: a rebuilt map would have a new id).
    @Test(arguments: ["nftables", "iptables", "ebpf"])
    func killedAgentsRestartWithoutDisturbingTraffic(dataplane: String) throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "2", "--dataplane", dataplane])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        let client = try run.lab(["pod", "add", "x/a", "--node", "1", "--labels", "pod=a", "--serve", "80/tcp"])
        let server = try run.lab(["pod", "add", "x/b", "--node", "2", "--labels", "pod=b", "--serve", "80/tcp"])
        try #require(client.status == 0 && server.status == 0)
        let address = try #require(
            server.stdout.split(separator: " ").last.map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            })
        try run.apply(
            """
            apiVersion: projectcalico.org/v3
            kind: NetworkPolicy
            metadata: {name: b-from-a, namespace: x}
            spec:
              selector: pod == 'b'
              ingress:
              - action: Allow
                source: {selector: pod == 'a'}
            """)
        #expect(try run.converge() == "")
        func ruleset(_ node: Int) throws -> String {
            try ChildProcess.run(
                "/usr/bin/nsenter",
                ["--net=/run/netns/tabby-lab-node-\(node)", "/usr/sbin/nft", "-a", "list", "table", "inet", "tabby"]
            ).stdout
        }
        /// Tabby's iptables rules (every `-A` line naming a cali- chain) with their packet counts.
        func counters(_ node: Int) throws -> [String: Int] {
            let save = try ChildProcess.run(
                "/usr/bin/nsenter",
                ["--net=/run/netns/tabby-lab-node-\(node)", "/usr/sbin/iptables-save", "-c", "-t", "filter"]
            ).stdout
            var rules: [String: Int] = [:]
            for line in save.split(separator: "\n") where line.hasPrefix("[") && line.contains("cali-") {
                // [packets:bytes] -A chain rule
                let packets = Int(line.dropFirst().prefix { $0 != ":" }) ?? -1
                rules[String(line.drop { $0 != "-" }), default: 0] += packets
            }
            return rules
        }
        /// The eBPF dataplane's pinned maps on a node: pin name -> kernel map id.
        func pinnedMaps(_ node: Int) throws -> [String: Int] {
            let directory = "/sys/fs/bpf/tabby-lab/node-\(node)"
            var maps: [String: Int] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                let shown = try ChildProcess.run(
                    "/usr/sbin/bpftool", ["-j", "map", "show", "pinned", "\(directory)/\(name)"]
                ).stdout
                let object = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any]
                maps[name] = object?["id"] as? Int
            }
            return maps
        }
        let mapsBefore = dataplane == "ebpf" ? [try pinnedMaps(1), try pinnedMaps(2)] : []
        #expect(dataplane != "ebpf" || mapsBefore.allSatisfy { $0["tabby_ct"] != nil && $0["tabby_endpoints"] != nil })
        let before = dataplane == "nftables" ? [try ruleset(1), try ruleset(2)] : []
        #expect(dataplane != "nftables" || before.allSatisfy { $0.contains("chain forward") })
        let countersBefore = dataplane == "iptables" ? [try counters(1), try counters(2)] : []
        #expect(
            dataplane != "iptables"
                || countersBefore.allSatisfy {
                    $0.keys.contains { $0.hasPrefix("-A cali-FORWARD") } && $0.values.contains { $0 > 0 }
                })

        let iperfServer = try ChildProcess.spawn(
            "/usr/bin/nsenter", ["--net=/run/netns/tabby-lab-pod-x-b", "/usr/bin/iperf3", "-s", "-1"])
        Thread.sleep(forTimeInterval: 0.5)
        let iperfClient = try ChildProcess.spawn(
            "/usr/bin/nsenter",
            ["--net=/run/netns/tabby-lab-pod-x-a", "/usr/bin/iperf3", "-c", address, "-t", "6", "-i", "1", "-J"])
        Thread.sleep(forTimeInterval: 2)
        for node in ["2", "1"] {
            let restarted = try run.lab(["agent", "restart", "--node", node, "--kill"])
            #expect(restarted.status == 0, "restart node \(node): \(restarted.stdout) \(restarted.stderr)")
        }
        let result = iperfClient.wait()
        _ = iperfServer.wait()
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let intervals = (object?["intervals"] as? [[String: Any]] ?? []).compactMap {
            ($0["sum"] as? [String: Any])?["bits_per_second"] as? Double
        }
        #expect(intervals.count >= 6, "iperf3: \(result.stdout.suffix(500)) \(result.stderr)")
        #expect(intervals.allSatisfy { $0 > 0 }, "intervals (bit/s): \(intervals)")
        if dataplane == "nftables" {
            #expect([try ruleset(1), try ruleset(2)] == before, "the restarted agents rewrote their rules")
        } else if dataplane == "ebpf" {
            #expect([try pinnedMaps(1), try pinnedMaps(2)] == mapsBefore, "the restarted agents replaced pinned maps")
        } else {
            for (node, old) in countersBefore.enumerated() {
                let new = try counters(node + 1)
                #expect(Set(new.keys) == Set(old.keys), "node \(node + 1): the restarted agent changed its rules")
                let reset = old.filter { rule, packets in (new[rule] ?? 0) < packets }.keys.sorted()
                #expect(reset.isEmpty, "node \(node + 1): counters went back (rules rewritten): \(reset)")
            }
        }
    }

    /// `natOutgoing`: with it, a pod reaches an address outside every pool (the underlay's) as
    /// its node; without it the reply has no way back (the underlay has no route to pods).
    @Test(arguments: ["nftables", "iptables", "ebpf"])
    func natOutgoingMasqueradesTrafficLeavingThePools(dataplane: String) throws {
        let run = LabRun(datastore: "embedded")
        let up = try run.lab(["up", "--nodes", "1", "--dataplane", dataplane])
        // Only a lab this test started comes down: a refused `up` means another lab is running.
        defer { if up.status == 0 { _ = try? run.lab(["down"]) } }
        try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
        try #require(try run.lab(["pod", "add", "x/a", "--node", "1", "--serve", "80/tcp"]).status == 0)
        // A server outside the cluster (on the underlay) that answers with the address it sees.
        let server = try ChildProcess.spawn(
            "/usr/bin/nsenter",
            [
                "--net=/run/netns/tabby-lab-underlay", "/usr/bin/python3", "-c",
                """
                import socket
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("10.10.0.1", 9000)); s.listen(16)
                while True:
                    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
                """,
            ])
        defer {
            kill(server.pid, SIGKILL)
            _ = server.wait()
        }
        func seenAs() throws -> String {
            try ChildProcess.run(
                "/usr/bin/nsenter",
                [
                    "--net=/run/netns/tabby-lab-pod-x-a", "/usr/bin/python3", "-c",
                    """
                    import socket
                    try:
                        s = socket.create_connection(("10.10.0.1", 9000), timeout=1); print(s.recv(64).decode())
                    except OSError:
                        print("unreachable")
                    """,
                ]
            ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func pool(nat: Bool) throws {
            try run.apply(
                """
                apiVersion: projectcalico.org/v3
                kind: IPPool
                metadata: {name: default-ipv4-ippool}
                spec: {cidr: 10.65.0.0/16, blockSize: 26, vxlanMode: Always, natOutgoing: \(nat)}
                """)
        }
        func eventually(_ expected: String) throws -> String {
            var last = ""
            for _ in 0..<30 {
                last = try seenAs()
                if last == expected { break }
                Thread.sleep(forTimeInterval: 0.2)
            }
            return last
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try eventually("unreachable") == "unreachable")
        try pool(nat: true)
        #expect(try eventually("10.10.0.11") == "10.10.0.11")
        try pool(nat: false)
        #expect(try eventually("unreachable") == "unreachable")
    }
}
