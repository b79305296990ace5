import Foundation
import TabbyTestSupport
import Testing

/// Runs the built `tabbyctl` as a user would, and checks what it prints and how it exits.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum BuiltTools {
    /// `TABBY_BIN_DIR` (set by tools/test), else the debug build folder next to the sources.
    static var binDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["TABBY_BIN_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir)
        }
        return repositoryRoot.appendingPathComponent(".build/debug")
    }

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static func run(_ tool: String, _ arguments: [String], stdin: String? = nil, environment: [String: String]? = nil)
        throws -> ToolRun
    {
        let result = try ChildProcess.run(
            binDirectory.appendingPathComponent(tool).path,
            arguments,
            environment: environment,
            stdin: stdin ?? "",
            directory: repositoryRoot.path
        )
        return ToolRun(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }
}

@Suite("tabbyctl, run as a user runs it")
struct TabbyctlTests {
    @Test func validatesTheDocumentedExamples() throws {
        let fixtures = "Tests/TabbyCoreTests/Fixtures/calico-docs"
        let files = try FileManager.default.contentsOfDirectory(
            atPath: BuiltTools.repositoryRoot.appendingPathComponent(fixtures).path
        ).sorted()
        #expect(files.count >= 12)
        let run = try BuiltTools.run(
            "tabbyctl", files.flatMap { ["-f", "\(fixtures)/\($0)"] }.reduce(into: ["validate"]) { $0.append($1) })
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr == "")
        #expect(run.stdout.contains("networkpolicy.yaml: 1 valid resource(s): NetworkPolicy production/allow-tcp-6379"))
        #expect(run.stdout.split(separator: "\n").count == files.count)
    }

    @Test func reportsEveryProblemOfABrokenManifest() throws {
        let run = try BuiltTools.run("tabbyctl", ["validate", "-f", "docs/examples/broken.yaml"])
        #expect(run.status == 1)
        #expect(run.stdout == "")
        let lines = run.stderr.split(separator: "\n").map(String.init)
        #expect(
            lines == [
                "docs/examples/broken.yaml:7:9: document 1: spec.cidr: invalid CIDR \"10.65.0.1/16\": host bits are set; the network is 10.65.0.0/16",
                "docs/examples/broken.yaml:8:14: document 1: spec.blockSize: must be 20-32 for an IPv4 pool (got 34)",
                "docs/examples/broken.yaml:10:13: document 1: spec.ipipMode: vxlanMode and ipipMode cannot both be enabled (vxlanMode: Always, ipipMode: Always)",
                "docs/examples/broken.yaml:18:13: document 2: spec.selector: invalid selector \"role == database\": column 9: expected a string literal, found 'database'",
                "docs/examples/broken.yaml:21:7: document 2: spec.ingress[0].protocl: unknown field \"protocl\"; did you mean \"protocol\"?",
                "docs/examples/broken.yaml:23:16: document 2: spec.ingress[0].destination.ports: ports need protocol TCP, UDP or SCTP in the rule (protocol is not set)",
                "6 problem(s) found",
            ]
        )
    }

    @Test func readsStandardInput() throws {
        let manifest = "{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"Tier\", \"metadata\": {\"name\": \"t\"}}"
        let good = try BuiltTools.run("tabbyctl", ["validate", "-f", "-"], stdin: manifest)
        #expect(good.status == 0)
        #expect(good.stdout == "-: 1 valid resource(s): Tier t\n")
        let bad = try BuiltTools.run("tabbyctl", ["validate", "-f", "-"], stdin: "kind: [\n")
        #expect(bad.status == 1)
        #expect(bad.stderr.hasPrefix("-:2:1: document 1: (document): YAML syntax error"))
    }

    @Test func aMissingFileIsAnIOError() throws {
        let run = try BuiltTools.run("tabbyctl", ["validate", "-f", "/nonexistent/policy.yaml"])
        #expect(run.status == 74)
        #expect(run.stderr.contains("cannot read /nonexistent/policy.yaml"))
    }

    @Test(
        "selector eval prints true or false",
        arguments: [
            (["a == 'b'", "--labels", "a=b"], "true\n"),
            (["a == 'b'", "--labels", "a=c"], "false\n"),
            (["a != 'b'"], "true\n"),
            (["has(a) && b in {'x', 'y'}", "--labels", "a=1,b=y"], "true\n"),
            (["! (has( b)||! has(a ))", "--canonical"], "!(has(b) || !has(a))\n"),
            (["a in {'z','z','x'}", "--canonical", "--labels", "a=x"], "a in {\"x\", \"z\"}\ntrue\n"),
            ([""], "true\n"),
        ]
    )
    func selectorEval(arguments: [String], output: String) throws {
        let run = try BuiltTools.run("tabbyctl", ["selector", "eval"] + arguments)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == output)
    }

    @Test func aBadSelectorExitsOneWithTheColumn() throws {
        let run = try BuiltTools.run("tabbyctl", ["selector", "eval", "foo == \"bar\" &"])
        #expect(run.status == 1)
        #expect(run.stdout == "")
        #expect(run.stderr.hasPrefix("tabbyctl: invalid selector: column 14: expected"))
        #expect(run.stderr.hasSuffix("  foo == \"bar\" &\n               ^\n"))
    }

    @Test func badLabelsAreAUsageError() throws {
        let run = try BuiltTools.run("tabbyctl", ["selector", "eval", "all()", "--labels", "a=b,-bad=c"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--labels"))
    }
}
