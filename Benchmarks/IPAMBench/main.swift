// tabby-ipam-bench: CNI IPAM plugins driven as a runtime drives them (one process per ADD and
// DEL, config on stdin): tabby-ipam on the embedded store and on etcd, and the reference
// host-local plugin as the baseline, with 1 and with 16 concurrent callers, in one run.
//   tabby-ipam-bench --tabby PATH --etcd-endpoints URL [--operations N] [--host-local PATH]
import Dispatch
import Foundation
import Synchronization
import TabbyTestSupport

struct Options {
    var tabby = ""
    var hostLocal = "/usr/lib/cni/host-local"
    var etcdEndpoints = ""
    var operations = 200

    init(_ arguments: [String]) {
        var rest = arguments[...]
        while let flag = rest.popFirst(), let value = rest.popFirst() {
            switch flag {
            case "--tabby": tabby = value
            case "--host-local": hostLocal = value
            case "--etcd-endpoints": etcdEndpoints = value
            case "--operations": operations = Int(value) ?? operations
            default: break
            }
        }
    }
}

struct Plugin {
    var name: String
    var executable: String
    /// The network config for a run (fresh state each run).
    var config: (String) -> String
}

/// Latencies in microseconds, and wall time of the whole run.
struct Run {
    var adds: [Double]
    var dels: [Double]
    var seconds: Double
    var failures: Int

    func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
    }
}

func measure(_ plugin: Plugin, callers: Int, operations: Int, scratch: String) -> Run {
    let config = plugin.config(scratch)
    let executable = plugin.executable
    let results = Mutex<(adds: [Double], dels: [Double], failures: Int)>(([], [], 0))
    let started = ContinuousClock.now
    DispatchQueue.concurrentPerform(iterations: callers) { caller in
        var adds: [Double] = []
        var dels: [Double] = []
        var failures = 0
        for phase in ["ADD", "DEL"] {
            for index in 0..<operations {
                var env = ProcessInfo.processInfo.environment
                env["CNI_COMMAND"] = phase
                env["CNI_CONTAINERID"] = "bench-\(caller)-\(index)"
                env["CNI_NETNS"] = "/var/run/netns/none"
                env["CNI_IFNAME"] = "eth0"
                env["CNI_PATH"] = "/usr/lib/cni"
                let start = ContinuousClock.now
                let result = try? ChildProcess.run(executable, [], environment: env, stdin: config)
                let elapsed = ContinuousClock.now - start
                let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
                if result?.status != 0 { failures += 1 }
                if phase == "ADD" { adds.append(micros) } else { dels.append(micros) }
            }
        }
        results.withLock {
            $0.adds += adds
            $0.dels += dels
            $0.failures += failures
        }
    }
    let wall = ContinuousClock.now - started
    let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
    return results.withLock { Run(adds: $0.adds, dels: $0.dels, seconds: seconds, failures: $0.failures) }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-ipam-bench-\(getpid())").path
try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: scratch) }

// tabby-ipam needs a pool in each datastore: created with tabbyctl next to the tabby binary.
let tabbyctl = URL(fileURLWithPath: options.tabby).deletingLastPathComponent().appendingPathComponent("tabbyctl").path
let pool = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bench}\nspec: {cidr: 10.88.0.0/16}\n"
let link = scratch + "/tabby-ipam"
try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: options.tabby)

let plugins = [
    Plugin(name: "host-local (baseline)", executable: options.hostLocal) { dir in
        "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"bridge\",\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"\(dir)/host-local-\(UUID().uuidString)\",\"ranges\":[[{\"subnet\":\"10.99.0.0/16\"}]]}}"
    },
    Plugin(name: "tabby-ipam, embedded", executable: link) { dir in
        let path = "\(dir)/tabby-\(UUID().uuidString).db"
        _ = try? ChildProcess.run(tabbyctl, ["apply", "-f", "-"], environment: ["TABBY_STORE": path], stdin: pool)
        return
            "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"bridge\",\"ipam\":{\"type\":\"tabby-ipam\",\"nodename\":\"bench-node\",\"datastore_path\":\"\(path)\"}}"
    },
    Plugin(name: "tabby-ipam, etcd", executable: link) { _ in
        _ = try? ChildProcess.run(
            tabbyctl, ["apply", "-f", "-"], environment: ["ETCD_ENDPOINTS": options.etcdEndpoints], stdin: pool)
        return
            "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"bridge\",\"ipam\":{\"type\":\"tabby-ipam\",\"nodename\":\"bench-node\",\"etcd_endpoints\":\"\(options.etcdEndpoints)\"}}"
    },
]

func format(_ micros: Double) -> String { String(format: "%.1f ms", micros / 1000) }

print("| plugin | callers | ADD+DEL pairs/s | ratio to host-local | ADD p50 | ADD p99 | DEL p50 | failures |")
print("|---|---|---|---|---|---|---|---|")
for callers in [1, 16] {
    var baseline = 0.0
    for plugin in plugins {
        let run = measure(plugin, callers: callers, operations: max(1, options.operations / callers), scratch: scratch)
        let rate = Double(run.adds.count) / run.seconds
        if baseline == 0 { baseline = rate }
        print(
            "| \(plugin.name) | \(callers) | \(String(format: "%.1f", rate)) | \(String(format: "%.2f", rate / baseline)) | \(format(run.percentile(run.adds, 0.5))) | \(format(run.percentile(run.adds, 0.99))) | \(format(run.percentile(run.dels, 0.5))) | \(run.failures) |"
        )
    }
}
