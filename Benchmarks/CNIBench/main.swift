// tabby-cni-bench: CNI network plugins driven as a runtime drives them (one process per ADD and
// DEL, config on stdin, a real pod namespace each): tabby (embedded store, and etcd when given)
// against the reference bridge + host-local plugins, sequentially and with 50 concurrent callers,
// in one run. Run it inside a node namespace (tools/bench/cni does): the plugins put the host side
// of every pod's interface in the namespace they run in.
// Each mode runs in rounds (--rounds, default 3) that take the plugins in turn, so that load from
// elsewhere on a shared machine falls on every plugin alike; the percentiles pool all rounds.
//   tabby-cni-bench --tabby PATH --tabbyctl PATH [--etcd-endpoints URL] [--pods N] [--concurrent N]
//                   [--rounds N]
import Foundation
import Synchronization
import TabbyTestSupport

struct Options {
    var tabby = ""
    var tabbyctl = ""
    var etcdEndpoints = ""
    var pods = 100
    var concurrent = 50
    var rounds = 3

    init(_ arguments: [String]) {
        var rest = arguments[...]
        while let flag = rest.popFirst(), let value = rest.popFirst() {
            switch flag {
            case "--tabby": tabby = value
            case "--tabbyctl": tabbyctl = value
            case "--etcd-endpoints": etcdEndpoints = value
            case "--pods": pods = Int(value) ?? pods
            case "--concurrent": concurrent = Int(value) ?? concurrent
            case "--rounds": rounds = max(1, Int(value) ?? rounds)
            default: break
            }
        }
    }
}

struct Plugin {
    var name: String
    var executable: String
    /// A fresh network config (and state) for one run.
    var config: () -> String
}

struct Latencies {
    var adds: [Double] = []
    var dels: [Double] = []
    var failures = 0
    var firstFailure = ""

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
    }
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15
}

/// One plugin invocation; its latency in ms and whether it succeeded.
func invoke(_ executable: String, _ command: String, pod: String, index: Int, config: String) -> (Double, String?) {
    let env = [
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": "bench-\(index)",
        "CNI_NETNS": "/run/netns/\(pod)", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-\(index)",
    ]
    let start = ContinuousClock.now
    let result = try? ChildProcess.run(executable, [], environment: env, stdin: config)
    let elapsed = milliseconds(ContinuousClock.now - start)
    if result?.status == 0 { return (elapsed, nil) }
    return (elapsed, "\(executable) \(command) pod \(index): \(result?.stdout ?? "") \(result?.stderr ?? "")")
}

/// Runs `body` for 0..<count on `count` threads at once (a runtime starting many pods together);
/// Dispatch would cap it at the core count.
func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Thread.detachNewThread {
            body(index)
            group.leave()
        }
    }
    group.wait()
}

func measure(_ plugin: Plugin, pods: [String], concurrent: Bool) -> Latencies {
    let config = plugin.config()
    let results = Mutex(Latencies())
    let executable = plugin.executable
    let record: @Sendable (String, Int) -> Void = { command, index in
        let (elapsed, failure) = invoke(executable, command, pod: pods[index], index: index, config: config)
        results.withLock { latencies in
            if command == "ADD" { latencies.adds.append(elapsed) } else { latencies.dels.append(elapsed) }
            if let failure {
                latencies.failures += 1
                if latencies.firstFailure.isEmpty { latencies.firstFailure = failure }
            }
        }
    }
    for command in ["ADD", "DEL"] {
        if concurrent {
            concurrently(pods.count) { record(command, $0) }
        } else {
            for index in pods.indices { record(command, index) }
        }
    }
    return results.withLock { $0 }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-cni-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)

// Pod namespaces, made once and reused (every DEL removes the pod's interface).
var pods: [String] = []
for index in 0..<max(options.pods, options.concurrent) {
    let name = "tabby-b-pod-\(getpid())-\(index)"
    _ = try ChildProcess.run("/usr/sbin/ip", ["netns", "add", name])
    pods.append(name)
}
defer {
    for pod in pods { _ = try? ChildProcess.run("/usr/sbin/ip", ["netns", "delete", pod]) }
    try? FileManager.default.removeItem(atPath: scratch)
}

let setup = """
    apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: bench}
    spec: {cidr: 10.88.0.0/16}
    ---
    apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: bench-node}
    """

var plugins = [
    Plugin(name: "bridge + host-local (baseline)", executable: "/usr/lib/cni/bridge") {
        let data = "\(scratch)/host-local-\(UUID().uuidString)"
        return """
            {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0", "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": "\(data)", "ranges": [[{"subnet": "10.99.0.0/16"}]]}}
            """
    },
    Plugin(name: "tabby, embedded store", executable: options.tabby) {
        let path = "\(scratch)/tabby-\(UUID().uuidString).db"
        _ = try? ChildProcess.run(
            options.tabbyctl, ["apply", "-f", "-"], environment: ["TABBY_STORE": path], stdin: setup)
        return """
            {"cniVersion": "1.1.0", "name": "bench", "type": "tabby", "nodename": "bench-node",
             "datastore_path": "\(path)", "ipam": {"type": "tabby-ipam"}}
            """
    },
]
if !options.etcdEndpoints.isEmpty {
    plugins.append(
        Plugin(name: "tabby, etcd", executable: options.tabby) {
            _ = try? ChildProcess.run(
                options.tabbyctl, ["apply", "-f", "-"], environment: ["ETCD_ENDPOINTS": options.etcdEndpoints],
                stdin: setup)
            return """
                {"cniVersion": "1.1.0", "name": "bench", "type": "tabby", "nodename": "bench-node",
                 "datastore_type": "etcdv3", "etcd_endpoints": "\(options.etcdEndpoints)", "ipam": {"type": "tabby-ipam"}}
                """
        })
}

func format(_ value: Double) -> String { String(format: "%.1f ms", value) }

print("| plugin | callers × rounds | ADD p50 | ADD p99 | ADD p50 ratio to baseline | DEL p50 | DEL p99 | failures |")
print("|---|---|---|---|---|---|---|---|")
var problems: [String] = []
for (concurrent, count) in [(false, options.pods), (true, options.concurrent)] {
    var runs = Array(repeating: Latencies(), count: plugins.count)
    for _ in 0..<options.rounds {
        for (index, plugin) in plugins.enumerated() {
            let run = measure(plugin, pods: Array(pods.prefix(count)), concurrent: concurrent)
            runs[index].adds += run.adds
            runs[index].dels += run.dels
            runs[index].failures += run.failures
            if runs[index].firstFailure.isEmpty { runs[index].firstFailure = run.firstFailure }
        }
    }
    let baseline = Latencies.percentile(runs[0].adds, 0.5)
    for (plugin, run) in zip(plugins, runs) {
        let addP50 = Latencies.percentile(run.adds, 0.5)
        let callers = concurrent ? "\(count) at once" : "1 (\(count) pods)"
        print(
            "| \(plugin.name) | \(callers) × \(options.rounds) | \(format(addP50)) | \(format(Latencies.percentile(run.adds, 0.99))) | \(String(format: "%.2f", addP50 / baseline)) | \(format(Latencies.percentile(run.dels, 0.5))) | \(format(Latencies.percentile(run.dels, 0.99))) | \(run.failures) |"
        )
        if run.failures > 0 { problems.append(run.firstFailure) }
    }
}
for problem in problems { FileHandle.standardError.write(Data("failure: \(problem)\n".utf8)) }
