import ArgumentParser
import TabbyCore
import TabbyStore

/// What `create`, `apply`, `replace` and `delete -f` do to each resource of a manifest.
enum WriteAction: String {
    case create, apply, replace, delete

    var pastTense: String {
        switch self {
        case .create: return "created"
        case .apply: return "applied"
        case .replace: return "replaced"
        case .delete: return "deleted"
        }
    }
}

/// Reads every manifest, refuses to write anything if any has a problem, then writes resource by
/// resource and reports, per document, what was written and what was not.
func writeManifests(
    _ filenames: [String],
    action: WriteAction,
    client: ResourceClient,
    skipExisting: Bool = false,
    skipMissing: Bool = false
) async throws {
    var manifests: [(String, Manifest)] = []
    var problemCount = 0
    for filename in filenames {
        let manifest = Manifest(text: try readManifest(filename), source: filename)
        for problem in manifest.problems { printError(problem.description) }
        problemCount += manifest.problems.count
        manifests.append((filename, manifest))
    }
    if problemCount > 0 {
        printError("\(problemCount) problem(s) found; nothing was written")
        throw ExitStatus.invalidInput
    }
    var written = 0
    var failed = 0
    for (filename, manifest) in manifests {
        for entry in manifest.entries {
            let what = "\(filename): document \(entry.document): \(entry.resource)"
            do {
                let verb: String
                switch action {
                case .create:
                    do {
                        try await client.create(entry.resource)
                        verb = "created"
                    } catch .alreadyExists where skipExisting {
                        verb = "already exists, skipped"
                    }
                case .apply:
                    verb = try await client.apply(entry.resource).created ? "created" : "configured"
                case .replace:
                    try await client.replace(entry.resource)
                    verb = "replaced"
                case .delete:
                    do {
                        try await client.delete(
                            entry.resource.kind,
                            name: entry.resource.metadata.name,
                            namespace: entry.resource.metadata.namespace,
                            resourceVersion: entry.resource.metadata.resourceVersion
                        )
                        verb = "deleted"
                    } catch .notFound where skipMissing {
                        verb = "does not exist, skipped"
                    }
                }
                print("\(what): \(verb)")
                written += 1
            } catch {
                printError("\(what): NOT \(action.pastTense): \(error)")
                failed += 1
            }
        }
    }
    if failed > 0 {
        printError("\(written) resource(s) \(action.pastTense), \(failed) failed")
        throw ExitStatus.invalidInput
    }
}

/// `tabbyctl create -f FILE`
public struct Create: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Create resources from manifests; fails for resources that exist.",
        discussion: "Every manifest is validated before anything is written. Each document's outcome is printed."
    )
    @Option(name: [.short, .customLong("filename")], help: "A manifest file, or - for standard input. Repeatable.")
    var filenames: [String] = []
    @Flag(help: "Skip resources that already exist instead of failing.")
    var skipExists = false
    @OptionGroup var datastore: DatastoreOptions
    public init() {}
    public func validate() throws { try requireFilenames(filenames) }
    public func run() async throws {
        try await writeManifests(
            filenames, action: .create, client: try datastore.openClient(), skipExisting: skipExists)
    }
}

/// `tabbyctl apply -f FILE`
public struct Apply: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Create resources, or replace them if they exist.",
        discussion: "Every manifest is validated before anything is written. Each document's outcome is printed."
    )
    @Option(name: [.short, .customLong("filename")], help: "A manifest file, or - for standard input. Repeatable.")
    var filenames: [String] = []
    @OptionGroup var datastore: DatastoreOptions
    public init() {}
    public func validate() throws { try requireFilenames(filenames) }
    public func run() async throws {
        try await writeManifests(filenames, action: .apply, client: try datastore.openClient())
    }
}

/// `tabbyctl replace -f FILE`
public struct Replace: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Replace existing resources.",
        discussion: """
            With metadata.resourceVersion set, a resource is replaced only if nobody changed it since
            that version; without, it overwrites what is stored.
            """
    )
    @Option(name: [.short, .customLong("filename")], help: "A manifest file, or - for standard input. Repeatable.")
    var filenames: [String] = []
    @OptionGroup var datastore: DatastoreOptions
    public init() {}
    public func validate() throws { try requireFilenames(filenames) }
    public func run() async throws {
        try await writeManifests(filenames, action: .replace, client: try datastore.openClient())
    }
}

func requireFilenames(_ filenames: [String]) throws {
    if filenames.isEmpty {
        throw ValidationError("give at least one manifest with -f FILE (or -f - for standard input)")
    }
}
