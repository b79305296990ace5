// explain-packet: TabbyPolicy embedded in another tool. Reads manifests (no datastore, no
// agent), compiles the policy as Tabby's node agent does, and explains one TCP connection.
//   explain-packet MANIFEST FROM TO PORT     (FROM and TO: NAMESPACE/ENDPOINT-NAME)
import Foundation
import TabbyCore
import TabbyPolicy

let arguments = CommandLine.arguments
guard arguments.count == 5, let port = UInt16(arguments[4]) else {
    print("usage: explain-packet MANIFEST FROM TO PORT")
    exit(64)
}

// 1. Read the manifests: Calico and Kubernetes YAML, defaults applied, every problem reported.
let manifest = Manifest(text: try String(contentsOfFile: arguments[1], encoding: .utf8), source: arguments[1])
for problem in manifest.problems { print(problem) }

// 2. Compile: tiers, policies and profiles per endpoint, selectors turned into IP sets.
let state = ClusterState(manifest.resources.compactMap(PolicyResource.init))
let ir = PolicyIR.compile(state)

// 3. Ask: the client's egress, then the server's ingress.
func endpoint(_ text: String) -> PacketPeer {
    let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
    return .endpoint(EndpointKey(namespace: parts[0], name: parts[1]))
}
let evaluation = PolicyEvaluator(ir).evaluate(
    Packet(from: endpoint(arguments[2]), to: endpoint(arguments[3]), protocol: .tcp, destinationPort: port)
)
print(evaluation.verdict == .allow ? "allowed" : "denied")
for step in evaluation.trace { print("  \(step)") }
