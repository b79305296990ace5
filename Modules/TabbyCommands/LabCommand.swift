import ArgumentParser
import Foundation
import TabbyCore
import TabbyLab
import TabbyPolicy
import TabbyStore

/// `tabbyctl lab`: a multi-node Tabby cluster in network namespaces on this machine.
public struct LabCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Run a multi-node Tabby cluster in network namespaces on this machine (root).",
        discussion: """
            The lab makes an underlay namespace, one namespace per node with a tabbyd inside, and
            one namespace per pod, wired by the real tabby CNI plugin. It never touches this
            machine's own network. State lives in /run/tabby-lab (--state-dir).

              tabbyctl lab up --nodes 2
              tabbyctl lab pod add x/a --node 1 --labels app=web --serve 80/tcp
              tabbyctl lab probe --port 80/tcp --compare-oracle
              tabbyctl lab down
            """,
        subcommands: [Up.self, Down.self, Status.self, PodCommand.self, Agent.self, Probe.self, Demo.self, Oracle.self]
    )

    public init() {}

    struct Options: ParsableArguments {
        @Option(help: "Where the lab keeps its state, logs and embedded datastore.")
        var stateDir: String = Lab.defaultStateDirectory

        func lab() throws -> Lab {
            guard geteuid() == 0 else {
                throw ValidationError("the lab creates network namespaces: run it as root")
            }
            return try Lab(stateDirectory: stateDir, binDirectory: LabCommand.binDirectory)
        }
    }

    /// tabbyd and tabby live next to tabbyctl.
    static var binDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    static func fail(_ error: any Error) -> ExitCode {
        printError("tabbyctl lab: \(error)")
        return ExitStatus.invalidInput
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a lab: underlay, nodes, one tabbyd per node.")
        @Option(help: "How many nodes (1-20).") var nodes: Int = 2
        @Option(help: "The dataplane every tabbyd uses.") var dataplane: String = "nftables"
        @Option(help: "embedded (one SQLite file shared by the nodes) or etcd (in the underlay).")
        var datastore: String = "embedded"
        @Option(help: "vxlan (pool vxlanMode Always) or bgp (vxlanMode Never, BIRD on every node, full mesh).")
        var routing: String = "vxlan"
        @OptionGroup var options: Options

        func validate() throws {
            guard Lab.Routing(rawValue: routing) != nil else {
                throw ValidationError("--routing \(routing): use vxlan or bgp")
            }
            guard Lab.Datastore(rawValue: datastore) != nil else {
                throw ValidationError("--datastore \(datastore): use embedded or etcd")
            }
            guard (1...20).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 20") }
        }

        func run() throws {
            let lab = try options.lab()
            do {
                try lab.up(
                    nodes: nodes, dataplane: dataplane, datastore: Lab.Datastore(rawValue: datastore)!,
                    routing: Lab.Routing(rawValue: routing)!
                ) {
                    emit("lab: \($0)")
                }
            } catch { throw LabCommand.fail(error) }
            emit("lab: up with \(nodes) node(s); add pods with: tabbyctl lab pod add NS/NAME --node 1")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove everything the lab made.")
        @OptionGroup var options: Options
        func run() throws {
            let lab = try options.lab()
            do { try lab.down { emit("lab: \($0)") } } catch { throw LabCommand.fail(error) }
            emit("lab: down")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show nodes, agents and pods.")
        @OptionGroup var options: Options
        func run() throws {
            do { emit(try options.lab().statusText()) } catch { throw LabCommand.fail(error) }
        }
    }

    struct PodCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pod", abstract: "Add or remove pods.", subcommands: [Add.self, Del.self])

        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Add a pod through the tabby CNI plugin, as a runtime would.")
            @Argument(help: "NAMESPACE/NAME") var pod: String
            @Option(help: "The node (1-based).") var node: Int = 1
            @Option(help: "Labels, k=v,k2=v2.") var labels: String = ""
            @Option(help: "Ports to serve, e.g. 80/tcp,81/tcp,80/udp.") var serve: String =
                "80/tcp,81/tcp,80/udp,81/udp"
            @OptionGroup var options: Options

            func run() throws {
                let parts = pod.split(separator: "/").map(String.init)
                guard parts.count == 2 else { throw ValidationError("give the pod as NAMESPACE/NAME") }
                var labelMap: [String: String] = [:]
                for pair in labels.split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { throw ValidationError("--labels \(pair): use key=value") }
                    labelMap[kv[0]] = kv[1]
                }
                do {
                    let added = try options.lab().addPod(
                        namespace: parts[0], name: parts[1], node: node, labels: labelMap,
                        serve: serve.split(separator: ",").map(String.init))
                    emit("lab: pod \(added.id) on \(added.node) at \(added.address)")
                } catch { throw LabCommand.fail(error) }
            }
        }

        struct Del: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a pod (CNI DEL, then its namespace).")
            @Argument(help: "NAMESPACE/NAME") var pod: String
            @OptionGroup var options: Options
            func run() throws {
                let parts = pod.split(separator: "/").map(String.init)
                guard parts.count == 2 else { throw ValidationError("give the pod as NAMESPACE/NAME") }
                do { try options.lab().deletePod(namespace: parts[0], name: parts[1]) } catch {
                    throw LabCommand.fail(error)
                }
                emit("lab: pod \(pod) removed")
            }
        }
    }

    struct Agent: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restart a node's tabbyd (to see that a restart keeps traffic flowing).",
            discussion: "tabbyctl lab agent restart --node 2 --kill   (SIGKILL instead of SIGTERM)")
        @Argument(help: "restart") var action: String
        @Option(help: "The node (1-based).") var node: Int = 1
        @Flag(help: "SIGKILL instead of SIGTERM.") var kill = false
        @OptionGroup var options: Options

        func validate() throws {
            guard action == "restart" else { throw ValidationError("the only action is restart") }
        }

        func run() throws {
            do { try options.lab().restartAgent(node: node, kill: kill) } catch { throw LabCommand.fail(error) }
            emit("lab: tabbyd on node-\(node) restarted and ready")
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The reachability matrix of every pod to every pod.",
            discussion: """
                TCP connect or UDP echo with a short timeout, in parallel. -o json prints
                {"results": [{"from", "to", "protocol", "port", "connected"}]}. --compare-oracle also
                asks the reference evaluator about every pair and exits 1 on any difference.
                """)
        enum Format: String, ExpressibleByArgument { case text, json }
        @Option(help: "Only this port, e.g. 80/tcp (default: every port each destination serves).")
        var port: String?
        @Option(name: .shortAndLong, help: "text or json.") var output: Format = .text
        @Flag(help: "Compare with the reference evaluator; exit 1 on differences.") var compareOracle = false
        @OptionGroup var options: Options

        func validate() throws {
            if let port, LabPorts.parse(port) == nil {
                throw ValidationError("--port \(port): use PORT/tcp or PORT/udp")
            }
        }

        func run() throws {
            let lab = try options.lab()
            let results: [LabProbeResult]
            do { results = try lab.probe(port: port) } catch { throw LabCommand.fail(error) }
            var differences: [String] = []
            if compareOracle {
                do { differences = try lab.compareWithOracle(results) } catch { throw LabCommand.fail(error) }
            }
            switch output {
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let object: [String: [LabProbeResult]] = ["results": results]
                emit(String(decoding: try encoder.encode(object), as: UTF8.self))
            case .text:
                emit(LabProbeResult.grid(results))
            }
            if compareOracle {
                if differences.isEmpty {
                    printError("lab: every result agrees with the reference evaluator")
                } else {
                    printError("lab: \(differences.count) result(s) differ from the reference evaluator:")
                    for difference in differences { printError("  \(difference)") }
                    throw ExitStatus.invalidInput
                }
            }
        }
    }

    /// Reads probes as JSON on stdin and prints the evaluator's verdicts (the lab runs it where the
    /// datastore is reachable, e.g. inside the underlay for etcd).
    struct Oracle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate lab probes with the reference evaluator (used by probe --compare-oracle).",
            shouldDisplay: false)
        @OptionGroup var datastore: DatastoreOptions

        func run() async throws {
            let input = FileHandle.standardInput.readDataToEndOfFile()
            let probes = try JSONDecoder().decode([LabProbeResult].self, from: input)
            let state = try await PolicyCommand.loadState(try datastore.openClient())
            let ir = PolicyIR.compile(state)
            func key(_ pod: String) -> EndpointKey? {
                let parts = pod.split(separator: "/").map(String.init)
                guard parts.count == 2 else { return nil }
                return state.workloadEndpoints.first { key, endpoint in
                    key.namespace == parts[0] && (endpoint.spec.pod == parts[1] || key.name == parts[1])
                }?.key
            }
            let verdicts = probes.map { probe -> Bool in
                guard let from = key(probe.from), let to = key(probe.to) else { return false }
                let packet = Packet(
                    from: .endpoint(from), to: .endpoint(to), protocol: .name(probe.protocol.uppercased()),
                    sourcePort: 40000, destinationPort: probe.port)
                return PolicyEvaluator(ir).evaluate(packet).verdict == .allow
            }
            emit(String(decoding: try JSONEncoder().encode(verdicts), as: UTF8.self))
        }
    }

    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The showcase: a 2-node lab, pods, the matrix before and after a policy, an explanation.")
        @Option(help: "The dataplane.") var dataplane: String = "nftables"
        @OptionGroup var options: Options

        func run() throws {
            let lab = try options.lab()
            do {
                try LabDemo(
                    lab: lab, dataplane: dataplane, tabbyctl: LabCommand.binDirectory.appendingPathComponent("tabbyctl")
                )
                .run()
            } catch {
                try? lab.down { _ in }
                throw LabCommand.fail(error)
            }
        }
    }
}
