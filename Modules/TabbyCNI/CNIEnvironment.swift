/// The CNI verbs of specification 1.1.0.
public enum CNICommand: String, Sendable, CaseIterable {
    case add = "ADD"
    case del = "DEL"
    case check = "CHECK"
    case gc = "GC"
    case status = "STATUS"
    case version = "VERSION"
}

/// What the runtime passes in environment variables.
public struct CNIEnvironment: Sendable, Hashable {
    public var command: CNICommand
    public var containerID: String?
    public var netns: String?
    public var interfaceName: String?
    /// `CNI_ARGS`, `K=V;K=V`.
    public var arguments: [String: String]
    public var path: [String]

    /// Reads and checks the variables the command needs (code 4 naming the variable otherwise).
    public init(_ environment: [String: String]) throws(CNIError) {
        guard let text = environment["CNI_COMMAND"], !text.isEmpty else {
            throw .invalidEnvironment(
                "CNI_COMMAND is not set; a container runtime sets it to ADD, DEL, CHECK, GC, STATUS or VERSION")
        }
        guard let command = CNICommand(rawValue: text) else {
            throw .invalidEnvironment(
                "CNI_COMMAND=\(text) is not a CNI verb; use ADD, DEL, CHECK, GC, STATUS or VERSION")
        }
        self.command = command
        containerID = environment["CNI_CONTAINERID"].flatMap { $0.isEmpty ? nil : $0 }
        netns = environment["CNI_NETNS"].flatMap { $0.isEmpty ? nil : $0 }
        interfaceName = environment["CNI_IFNAME"].flatMap { $0.isEmpty ? nil : $0 }
        path = (environment["CNI_PATH"] ?? "").split(separator: ":").map(String.init)
        var arguments: [String: String] = [:]
        for pair in (environment["CNI_ARGS"] ?? "").split(separator: ";") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw .invalidEnvironment("CNI_ARGS item \"\(pair)\" is not KEY=VALUE") }
            arguments[String(parts[0])] = String(parts[1])
        }
        self.arguments = arguments
        switch command {
        case .add, .check:
            guard containerID != nil else {
                throw .invalidEnvironment("CNI_CONTAINERID is required for \(command.rawValue)")
            }
            guard interfaceName != nil else {
                throw .invalidEnvironment("CNI_IFNAME is required for \(command.rawValue)")
            }
        case .del:
            guard containerID != nil else { throw .invalidEnvironment("CNI_CONTAINERID is required for DEL") }
        case .gc, .status, .version:
            break
        }
    }
}
