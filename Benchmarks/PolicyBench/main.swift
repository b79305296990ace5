// tabby-policy-bench: the policy engine at scale. Compiles P policies over E endpoints from
// scratch, then applies one label change incrementally (median of 21), and prints a Markdown
// table row with the ratio between the two, and the process's peak memory.
//   tabby-policy-bench POLICIES ENDPOINTS
import Foundation
import TabbyCore
import TabbyPolicy

let arguments = CommandLine.arguments
guard arguments.count == 3, let policyCount = Int(arguments[1]), let endpointCount = Int(arguments[2]) else {
    print("usage: tabby-policy-bench POLICIES ENDPOINTS")
    exit(64)
}
let namespaces = 100

func endpoint(_ index: Int, role: Int? = nil) -> WorkloadEndpoint {
    var spec = WorkloadEndpointSpec()
    spec.node = "node-\(index % 50)"
    spec.pod = "pod-\(index)"
    spec.orchestrator = "k8s"
    spec.ipNetworks = ["10.\(64 + index / 65536).\(index / 256 % 256).\(index % 256)/32"]
    spec.profiles = ["kns.ns-\(index % namespaces)"]
    let labels = ["app": "app-\(index % 50)", "role": "r-\(role ?? index % 20)"]
    return WorkloadEndpoint(
        metadata: ObjectMeta(name: "pod-\(index)", namespace: "ns-\(index % namespaces)", labels: labels), spec: spec)
}

func policy(_ index: Int) -> NetworkPolicy {
    var spec = NetworkPolicySpec()
    spec.selector = "app == 'app-\(index % 50)'"
    spec.ingress = [
        Rule(
            action: .allow, protocol: .tcp, source: EntityRule(selector: "role == 'r-\(index % 20)'"),
            destination: EntityRule(ports: [.number(UInt16(80 + index % 10))]))
    ]
    var resource = NetworkPolicy(
        metadata: ObjectMeta(name: "policy-\(index)", namespace: "ns-\(index % namespaces)"), spec: spec)
    resource.applyDefaults()
    return resource
}

var updates: [PolicyUpdate] = []
for index in 0..<namespaces {
    updates.append(
        .upsert(
            .namespace(
                KubernetesNamespace(metadata: ObjectMeta(name: "ns-\(index)", labels: ["team": "t-\(index % 10)"])))))
}
for index in 0..<endpointCount { updates.append(.upsert(.workloadEndpoint(endpoint(index)))) }
for index in 0..<policyCount { updates.append(.upsert(.networkPolicy(policy(index)))) }

func seconds(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

// From scratch: the whole state compiled at once (what a restarted agent does).
var state = ClusterState()
for case .upsert(let resource) in updates { state.upsert(resource) }
var scratchIR = PolicyIR()
let full = seconds { scratchIR = PolicyIR.compile(state) }
let fullDelta = PolicyDelta.between(PolicyIR(), scratchIR)

// The engine, loaded with the same state, then one label change applied incrementally.
var engine = PolicyEngine()
_ = engine.apply(updates)

// One label change: pod-7 moves to another role, entering and leaving IP sets. A single
// update takes milliseconds, so one sample is at the mercy of the machine's other work: the
// pod moves back and forth 21 times and the median is reported (the delta shown is the first).
var incrementalDelta = PolicyDelta()
var samples: [Double] = []
for round in 0..<21 {
    let role = round % 2 == 0 ? 19 - 7 % 20 : 7 % 20
    var delta = PolicyDelta()
    samples.append(seconds { delta = engine.upsert(.workloadEndpoint(endpoint(7, role: role))) })
    if round == 0 { incrementalDelta = delta }
}
let incremental = samples.sorted()[samples.count / 2]

let peak =
    (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?
    .split(separator: "\n").first { $0.hasPrefix("VmHWM:") }?
    .split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "?"
let changed =
    incrementalDelta.ipSetMembersAdded.values.reduce(0) { $0 + $1.count }
    + incrementalDelta.ipSetMembersRemoved.values.reduce(0) { $0 + $1.count }
print(
    "| \(policyCount) | \(endpointCount) | \(fullDelta.ipSetsCreated.count) | \(String(format: "%.2f s", full)) | \(String(format: "%.2f ms", incremental * 1000)) | \(String(format: "%.0f", full / incremental)) | \(changed) member(s), \(incrementalDelta.endpointsBound.count) endpoint(s), \(incrementalDelta.policiesReplaced.count) polic(ies) | \(Int(peak).map { "\($0 / 1024) MiB" } ?? peak) |"
)
