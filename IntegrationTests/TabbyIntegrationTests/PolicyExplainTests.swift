import Foundation
import TabbyTestSupport
import Testing

/// `tabbyctl policy explain` on a store filled with `tabbyctl apply`, as a user tries it.
@Suite("tabbyctl policy explain")
struct PolicyExplainTests {
    @Test func explainsAllowedAndDeniedTraffic() throws {
        let (env, cleanup) = try StoreProcessTests.environment(.sqlite)
        defer { cleanup() }
        let apply = try BuiltTools.run("tabbyctl", ["apply", "-f", "docs/examples/explain.yaml"], environment: env)
        #expect(apply.status == 0, "\(apply.stderr)")

        let allowed = try BuiltTools.run(
            "tabbyctl", ["policy", "explain", "--from", "x/a", "--to", "y/b", "--protocol", "tcp", "--port", "80"],
            environment: env)
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stdout.hasPrefix("ALLOWED: tcp x/node1-k8s-a-eth0 -> y/node1-k8s-b-eth0 port 80\n"))
        #expect(
            allowed.stdout.contains(
                "decided by: Ingress y/node1-k8s-b-eth0: tier default policy y/knp.default.allow-from-x-on-80 rule 0 (Allow) matched"
            ))

        let denied = try BuiltTools.run(
            "tabbyctl", ["policy", "explain", "--from", "x/a", "--to", "y/b", "--protocol", "tcp", "--port", "81"],
            environment: env)
        #expect(denied.stdout.hasPrefix("DENIED: "))
        #expect(
            denied.stdout.hasSuffix(
                "decided by: Ingress y/node1-k8s-b-eth0: default deny of tier default once selected\n"))

        let json = try BuiltTools.run(
            "tabbyctl",
            [
                "policy", "explain", "--from", "203.0.113.9", "--to", "10.65.0.2", "--protocol", "udp", "--port", "80",
                "-o", "json",
            ],
            environment: env)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["verdict"] as? String == "deny")
        #expect((object?["trace"] as? [String])?.count == 3)

        let unknown = try BuiltTools.run(
            "tabbyctl", ["policy", "explain", "--from", "x/nope", "--to", "y/b", "--port", "80"], environment: env)
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no workload endpoint of pod nope in namespace x"))
        let badProtocol = try BuiltTools.run(
            "tabbyctl", ["policy", "explain", "--from", "x/a", "--to", "y/b", "--protocol", "tcpp"], environment: env)
        #expect(badProtocol.status == 64)
    }
}
