import ArgumentParser
import TabbyCore
import TabbyStore

/// `tabbyctl label KIND NAME key=value [--overwrite]` / `tabbyctl label KIND NAME key --remove`
public struct Label: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Add, change or remove a label on a resource.",
        discussion: """
            Examples:
              tabbyctl label workloadendpoint node1-k8s-web-eth0 -n prod app=web
              tabbyctl label hostendpoint eth0.node1 role=edge --overwrite
              tabbyctl label ippool pool-1 zone --remove
            The change is a compare-and-swap: if someone else writes the resource meanwhile, it is
            read again and the label applied to the new version.
            """
    )
    @Argument(help: "The kind, e.g. workloadendpoint, hostendpoint, networkset.")
    var kind: String
    @Argument(help: "The resource's name.")
    var name: String
    @Argument(help: "key=value to set, or key with --remove.")
    var label: String
    @Option(name: .shortAndLong, help: "The namespace of namespaced kinds (default: default).")
    var namespace: String?
    @Flag(help: "Change the value of a label that is already set.")
    var overwrite = false
    @Flag(help: "Remove the label.")
    var remove = false
    @OptionGroup var datastore: DatastoreOptions
    public init() {}

    public func validate() throws {
        _ = try parseKind(kind)
        if remove {
            if label.contains("=") { throw ValidationError("with --remove give only the label key") }
        } else {
            do { _ = try [String: String].parseLabels(label) } catch { throw ValidationError("\(error)") }
            if !label.contains("=") { throw ValidationError("give key=value, or key with --remove") }
        }
    }

    public func run() async throws {
        let kind = try parseKind(kind)
        let client = try datastore.openClient()
        let parsed = remove ? [:] : (try? [String: String].parseLabels(label)) ?? [:]
        for _ in 0..<10 {
            let outcome: LabelOutcome
            do {
                outcome = try await relabel(kind: kind, client: client, labels: parsed)
            } catch {
                printError("tabbyctl: \(error)")
                throw ExitStatus.invalidInput
            }
            switch outcome {
            case .done(let message):
                print(message)
                return
            case .refused(let message):
                printError("tabbyctl: \(message)")
                throw ExitStatus.invalidInput
            case .conflict:
                continue  // written meanwhile: read it again
            }
        }
        printError(
            "tabbyctl: \(ResourceClient.describe(kind, namespace: namespace, name: name)): too many concurrent writers")
        throw ExitStatus.invalidInput
    }

    enum LabelOutcome {
        case done(String)
        case refused(String)
        case conflict
    }

    /// One read-modify-write attempt.
    private func relabel(kind: ResourceKind, client: ResourceClient, labels parsed: [String: String])
        async throws(ResourceError) -> LabelOutcome
    {
        guard var resource = try await client.get(kind, name: name, namespace: namespace) else {
            throw .notFound(ResourceClient.describe(kind, namespace: namespace ?? "default", name: name))
        }
        var labels = resource.metadata.labels ?? [:]
        if remove {
            guard labels.removeValue(forKey: label) != nil else {
                return .refused("\(resource) has no label \"\(label)\"")
            }
        } else {
            for (key, value) in parsed {
                if let old = labels[key], old != value, !overwrite {
                    return .refused("\(resource) already has \(key)=\(old); add --overwrite to change it")
                }
                labels[key] = value
            }
        }
        resource.base.metadata.labels = labels.isEmpty ? nil : labels
        do {
            let stored = try await client.replace(resource)
            return .done("\(stored): \(remove ? "label \(label) removed" : "labelled \(label)")")
        } catch .conflict(_, _) {
            return .conflict
        }
    }
}
