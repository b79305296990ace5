import ArgumentParser
import Testing

@testable import TabbyCommands

@Suite("tabbyctl's command line")
struct CommandLineTests {
    @Test func subcommandsAreListed() {
        let help = Tabbyctl.helpMessage(columns: 100)
        #expect(help.contains("validate"))
        #expect(help.contains("selector"))
        #expect(help.contains("Check manifests and print every problem."))
    }

    @Test func validateNeedsAFile() {
        #expect(throws: (any Error).self) { try Tabbyctl.parseAsRoot(["validate"]) }
        let message = Tabbyctl.message(
            for: ValidationError("give at least one manifest with -f FILE (or -f - for standard input)"))
        #expect(message.contains("-f FILE"))
    }

    @Test func validateTakesSeveralFiles() throws {
        let command = try #require(
            try Tabbyctl.parseAsRoot(["validate", "-f", "a.yaml", "--filename", "-"]) as? Validate)
        #expect(command.filenames == ["a.yaml", "-"])
    }

    @Test func selectorEvalParsesItsOptions() throws {
        let command = try #require(
            try Tabbyctl.parseAsRoot(["selector", "eval", "a == 'b'", "--labels", "a=b", "--canonical"])
                as? SelectorCommand.Eval
        )
        #expect(command.expression == "a == 'b'")
        #expect(command.labels == "a=b")
        #expect(command.canonical)
    }

    /// The help text is an interface: pinned so that a change to it is deliberate.
    @Test func selectorEvalHelpIsPinned() {
        let help = SelectorCommand.Eval.helpMessage(columns: 100)
        #expect(help.contains("USAGE: eval <expression> [--labels <labels>] [--canonical]"))
        #expect(help.contains("--labels <labels>       Labels as k=v,k2=v2."))
        #expect(help.contains("--canonical             Print the selector's canonical form."))
        #expect(help.contains("exits 1 with the column and what was expected there"))
    }
}
