import ArgumentParser
import TabbyCore
import TabbyStore

/// `tabbyctl delete -f FILE` or `tabbyctl delete KIND NAME...`
public struct Delete: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Delete resources named in manifests, or by kind and name.",
        discussion: """
            Examples:
              tabbyctl delete -f policy.yaml
              tabbyctl delete networkpolicy allow-db -n production
              tabbyctl delete ippool old-pool
            """
    )
    @Option(name: [.short, .customLong("filename")], help: "A manifest file, or - for standard input. Repeatable.")
    var filenames: [String] = []
    @Argument(help: "The kind (e.g. networkpolicy, gnp, ippool), then one or more names.")
    var kindAndNames: [String] = []
    @Option(name: .shortAndLong, help: "The namespace of namespaced kinds (default: default).")
    var namespace: String?
    @Flag(help: "Succeed for resources that do not exist.")
    var skipNotExists = false
    @OptionGroup var datastore: DatastoreOptions
    public init() {}

    public func validate() throws {
        if filenames.isEmpty && kindAndNames.count < 2 {
            throw ValidationError("give -f FILE, or a kind and at least one name")
        }
        if !filenames.isEmpty && !kindAndNames.isEmpty {
            throw ValidationError("give either -f FILE or a kind and names, not both")
        }
        if let kind = kindAndNames.first { _ = try parseKind(kind) }
    }

    public func run() async throws {
        let client = try datastore.openClient()
        if !filenames.isEmpty {
            try await writeManifests(filenames, action: .delete, client: client, skipMissing: skipNotExists)
            return
        }
        let kind = try parseKind(kindAndNames[0])
        var failed = 0
        for name in kindAndNames.dropFirst() {
            do {
                let deleted = try await client.delete(kind, name: name, namespace: namespace)
                print("\(deleted): deleted")
            } catch .notFound(let what) where skipNotExists {
                print("\(what): does not exist, skipped")
            } catch {
                printError("tabbyctl: \(error)")
                failed += 1
            }
        }
        if failed > 0 { throw ExitStatus.invalidInput }
    }
}

/// A kind as typed on the command line, or a usage error listing the kinds.
func parseKind(_ text: String) throws -> ResourceKind {
    guard let kind = ResourceKind.lookup(commandLineName: text) else {
        let kinds = ResourceKind.allCases.map { $0.name.lowercased() }.sorted().joined(separator: ", ")
        throw ValidationError("unknown resource kind \"\(text)\"; use one of \(kinds)")
    }
    return kind
}
