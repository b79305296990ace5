import ArgumentParser
import Foundation
import TabbyCore
import TabbyStore

/// `tabbyctl get KIND [NAME...] [-n NS | -A] [-o yaml|json|wide]`
public struct Get: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Show resources.",
        discussion: """
            Without -o, prints a table (NAME, and NAMESPACE for namespaced kinds); -o wide adds
            the kind's main fields; -o yaml and -o json print resources that tabbyctl apply reads
            back (several as a <Kind>List).

            Examples:
              tabbyctl get ippools -o wide
              tabbyctl get networkpolicy -A
              tabbyctl get gnp allow-dns -o yaml
            """
    )

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case table, wide, yaml, json
    }

    @Argument(help: "The kind (e.g. networkpolicy, gnp, ippool, node), then optional names.")
    var kindAndNames: [String]
    @Option(name: .shortAndLong, help: "The namespace of namespaced kinds (default: default).")
    var namespace: String?
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "Every namespace.")
    var allNamespaces = false
    @Option(name: .shortAndLong, help: "table, wide, yaml or json.")
    var output: OutputFormat = .table
    @OptionGroup var datastore: DatastoreOptions
    public init() {}

    public func validate() throws {
        guard let kind = kindAndNames.first else {
            throw ValidationError("give a kind, e.g. tabbyctl get networkpolicies")
        }
        _ = try parseKind(kind)
        if allNamespaces && namespace != nil { throw ValidationError("give -n NAMESPACE or -A, not both") }
    }

    public func run() async throws {
        let kind = try parseKind(kindAndNames[0])
        let names = Array(kindAndNames.dropFirst())
        let client = try datastore.openClient()
        let scope = kind.isNamespaced && !allNamespaces ? (namespace ?? "default") : nil
        var resources: [AnyResource] = []
        do {
            if names.isEmpty {
                resources = try await client.list(kind, namespace: scope).items
            } else {
                for name in names {
                    guard let resource = try await client.get(kind, name: name, namespace: scope) else {
                        throw ResourceError.notFound(ResourceClient.describe(kind, namespace: scope, name: name))
                    }
                    resources.append(resource)
                }
            }
        } catch {
            printError("tabbyctl: \(error)")
            throw ExitStatus.invalidInput
        }
        switch output {
        case .yaml, .json:
            let format: ManifestFormat = output == .yaml ? .yaml : .json
            if names.count == 1, let resource = resources.first {
                print(try format.render([resource]), terminator: "")
            } else {
                print(try format.renderList(kind: kind, resources), terminator: "")
            }
        case .table, .wide:
            print(
                ResourceTable(kind: kind, showNamespace: kind.isNamespaced && allNamespaces, wide: output == .wide)
                    .render(resources), terminator: "")
        }
    }
}

/// calicoctl-style columns.
struct ResourceTable {
    var kind: ResourceKind
    var showNamespace: Bool
    var wide: Bool

    func render(_ resources: [AnyResource]) -> String {
        var headers = (showNamespace ? ["NAMESPACE"] : []) + ["NAME"]
        let extra = wide ? Self.wideColumns(kind) : Self.columns(kind)
        headers += extra.map(\.0)
        var rows = [headers]
        for resource in resources {
            var row = (showNamespace ? [resource.metadata.namespace ?? ""] : []) + [resource.metadata.name]
            row += extra.map { $0.1(resource) }
            rows.append(row)
        }
        return table(rows) + "\n"
    }

    typealias Column = (String, @Sendable (AnyResource) -> String)

    @Sendable static func text(_ value: (some CustomStringConvertible)?) -> String { value.map(\.description) ?? "" }

    static func columns(_ kind: ResourceKind) -> [Column] {
        switch kind {
        case .ipPool:
            return [
                ("CIDR", { $0.as(IPPool.self)?.spec.cidr ?? "" }),
                ("SELECTOR", { $0.as(IPPool.self)?.spec.nodeSelector ?? "" }),
            ]
        default: return []
        }
    }

    static func wideColumns(_ kind: ResourceKind) -> [Column] {
        switch kind {
        case .ipPool:
            return [
                ("CIDR", { text($0.as(IPPool.self)?.spec.cidr) }),
                ("NAT", { text($0.as(IPPool.self)?.spec.natOutgoing ?? false) }),
                ("IPIPMODE", { text($0.as(IPPool.self)?.spec.ipipMode?.rawValue) }),
                ("VXLANMODE", { text($0.as(IPPool.self)?.spec.vxlanMode?.rawValue) }),
                ("DISABLED", { text($0.as(IPPool.self)?.spec.disabled ?? false) }),
                ("SELECTOR", { text($0.as(IPPool.self)?.spec.nodeSelector) }),
            ]
        case .networkPolicy:
            return [
                ("TIER", { text($0.as(NetworkPolicy.self)?.spec.tier) }),
                ("ORDER", { text($0.as(NetworkPolicy.self)?.spec.order) }),
                ("SELECTOR", { text($0.as(NetworkPolicy.self)?.spec.selector) }),
            ]
        case .globalNetworkPolicy:
            return [
                ("TIER", { text($0.as(GlobalNetworkPolicy.self)?.spec.tier) }),
                ("ORDER", { text($0.as(GlobalNetworkPolicy.self)?.spec.order) }),
                ("SELECTOR", { text($0.as(GlobalNetworkPolicy.self)?.spec.selector) }),
            ]
        case .tier:
            return [
                ("ORDER", { text($0.as(Tier.self)?.spec.order) }),
                ("DEFAULTACTION", { text($0.as(Tier.self)?.spec.defaultAction?.rawValue) }),
            ]
        case .workloadEndpoint:
            return [
                (
                    "WORKLOAD",
                    { text($0.as(WorkloadEndpoint.self)?.spec.pod ?? $0.as(WorkloadEndpoint.self)?.spec.workload) }
                ),
                ("NODE", { text($0.as(WorkloadEndpoint.self)?.spec.node) }),
                ("NETWORKS", { $0.as(WorkloadEndpoint.self)?.spec.ipNetworks?.joined(separator: ",") ?? "" }),
                ("INTERFACE", { text($0.as(WorkloadEndpoint.self)?.spec.interfaceName) }),
            ]
        case .hostEndpoint:
            return [
                ("NODE", { text($0.as(HostEndpoint.self)?.spec.node) }),
                ("INTERFACE", { text($0.as(HostEndpoint.self)?.spec.interfaceName) }),
                ("IPS", { $0.as(HostEndpoint.self)?.spec.expectedIPs?.joined(separator: ",") ?? "" }),
            ]
        case .node:
            return [
                ("ASN", { text($0.as(Node.self)?.spec.bgp?.asNumber) }),
                ("IPV4", { text($0.as(Node.self)?.spec.bgp?.ipv4Address) }),
                ("IPV6", { text($0.as(Node.self)?.spec.bgp?.ipv6Address) }),
            ]
        case .networkSet, .globalNetworkSet:
            return [
                (
                    "NETS",
                    {
                        ($0.as(NetworkSet.self)?.spec.nets ?? $0.as(GlobalNetworkSet.self)?.spec.nets ?? []).joined(
                            separator: ",")
                    }
                )
            ]
        default:
            return columns(kind)
        }
    }
}
