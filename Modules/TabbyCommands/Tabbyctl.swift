import ArgumentParser

/// The root command: `tabbyctl <subcommand>`.
@available(macOS 10.15, *)
public struct Tabbyctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tabbyctl",
        abstract: "Manage Tabby: Kubernetes networking and network policy, Calico-compatible.",
        discussion: """
            Tabby reads Calico's projectcalico.org/v3 resources and Kubernetes NetworkPolicy and
            Namespace objects unchanged.
            """,
        version: TabbyVersion.current,
        subcommands: [
            Validate.self, Create.self, Apply.self, Replace.self, Delete.self, Get.self, Label.self,
            IPAMCommand.self, PolicyCommand.self, SelectorCommand.self, LabCommand.self, NodeCommand.self,
        ]
    )

    public init() {}

    /// Parses the command line and runs the chosen command, async or not. (From top-level code
    /// `await Tabbyctl.main()` resolves to ArgumentParser's synchronous entry point.)
    public static func runFromCommandLine() async {
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

public enum TabbyVersion {
    public static let current = "0.1.0"
}

/// Exit codes shared by every command: 0 success, 1 the input was wrong (invalid manifest,
/// bad selector), 64 bad usage (from ArgumentParser), 74 could not read or write a file.
public enum ExitStatus {
    public static let invalidInput = ExitCode(1)
    public static let ioError = ExitCode(74)
}
