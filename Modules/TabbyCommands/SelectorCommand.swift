import ArgumentParser
import TabbyCore

/// `tabbyctl selector ...`: try Calico selectors before putting them in a policy.
public struct SelectorCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "selector",
        abstract: "Work with Calico label selectors.",
        subcommands: [Eval.self]
    )

    public init() {}

    /// `tabbyctl selector eval 'EXPR' [--labels k=v,...] [--canonical]`
    public struct Eval: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Evaluate a selector against labels, or print its canonical form.",
            discussion: """
                Prints true or false: whether the labels given with --labels (none if omitted)
                match the selector. With --canonical, prints the canonical form instead (and the
                result as well when --labels is also given). A selector that does not parse
                exits 1 with the column and what was expected there.

                Examples:
                  tabbyctl selector eval 'app == "web" && tier in {"a", "b"}' --labels app=web,tier=a
                  tabbyctl selector eval '! (has( b)||! has(a ))' --canonical
                """
        )

        @Argument(help: "The selector, e.g. 'app == \"web\"'. Quote it for the shell.")
        var expression: String

        @Option(name: .long, help: "Labels as k=v,k2=v2.")
        var labels: String?

        @Flag(name: .long, help: "Print the selector's canonical form.")
        var canonical = false

        public init() {}

        public func run() throws {
            let parsedLabels: [String: String]
            do {
                parsedLabels = try [String: String].parseLabels(labels ?? "")
            } catch {
                throw ValidationError("--labels: \(error)")
            }
            let selector: Selector
            do {
                selector = try Selector.parse(expression)
            } catch {
                printError("tabbyctl: invalid selector: \(error)")
                printError("  \(expression)")
                printError("  " + String(repeating: " ", count: max(0, error.column - 1)) + "^")
                throw ExitStatus.invalidInput
            }
            if canonical {
                print(selector.canonical)
                if labels == nil { return }
            }
            print(selector.matches(parsedLabels) ? "true" : "false")
        }
    }
}
