import ArgumentParser

/// The root command: `tabbyctl <subcommand>`.
public struct Tabbyctl: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tabbyctl",
        abstract: "Manage Tabby: Kubernetes networking and network policy, Calico-compatible.",
        discussion: """
            Tabby reads Calico's projectcalico.org/v3 resources and Kubernetes NetworkPolicy and
            Namespace objects unchanged.
            """,
        version: TabbyVersion.current,
        subcommands: [Validate.self, SelectorCommand.self]
    )

    public init() {}
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
