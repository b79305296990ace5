import Foundation
import TabbyTestSupport
import Testing

/// docs/embedding.md shows a program; this checks the doc shows the real file, and runs it.
@Suite("Embedding example")
struct EmbeddingTests {
    @Test func theDocumentedProgramIsTheOneThatRuns() throws {
        let root = BuiltTools.repositoryRoot
        let source = try String(
            contentsOf: root.appendingPathComponent("Examples/ExplainPacket/main.swift"), encoding: .utf8)
        let doc = try String(contentsOf: root.appendingPathComponent("docs/embedding.md"), encoding: .utf8)
        #expect(
            doc.contains("```swift\n" + source + "```"),
            "docs/embedding.md must show Examples/ExplainPacket/main.swift verbatim")

        let run = try BuiltTools.run(
            "explain-packet", ["docs/examples/explain.yaml", "x/node1-k8s-a-eth0", "y/node1-k8s-b-eth0", "81"])
        #expect(run.status == 0, "\(run.stderr)")
        let expected = """
            denied
              Egress x/node1-k8s-a-eth0: profile kns.x rule 0 (Allow) matched
              Ingress y/node1-k8s-b-eth0: tier default policy y/knp.default.allow-from-x-on-80 rule 0 (Allow) no match
              Ingress y/node1-k8s-b-eth0: tier default policy y/knp.default.allow-from-x-on-80: no rule matched
              Ingress y/node1-k8s-b-eth0: default deny of tier default once selected

            """
        #expect(run.stdout == expected)
        #expect(doc.contains(expected))
        let allowed = try BuiltTools.run(
            "explain-packet", ["docs/examples/explain.yaml", "x/node1-k8s-a-eth0", "y/node1-k8s-b-eth0", "80"])
        #expect(allowed.stdout.hasPrefix("allowed\n"))
    }
}
