import ArgumentParser
import Foundation
import TabbyCore
import TabbyPolicy
import TabbyStore

/// `tabbyctl policy explain`: would this packet be allowed, and which rule decides?
public struct PolicyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Ask the policy engine about traffic.",
        subcommands: [Explain.self]
    )

    public init() {}

    /// Everything the policy engine reads, from the datastore, as the node agent sees it.
    static func loadState(_ client: ResourceClient) async throws -> ClusterState {
        var resources: [PolicyResource] = []
        do {
            for kind in [
                ResourceKind.networkPolicy, .globalNetworkPolicy, .kubernetesNetworkPolicy, .tier, .profile,
                .kubernetesNamespace, .networkSet, .globalNetworkSet, .workloadEndpoint, .hostEndpoint,
            ] {
                resources += try await client.list(kind).items.compactMap(PolicyResource.init)
            }
        } catch {
            printError("tabbyctl: \(error)")
            throw ExitStatus.invalidInput
        }
        return ClusterState(resources)
    }

    /// `tabbyctl policy explain --from NS/POD|ADDR --to NS/POD|ADDR --protocol tcp --port 80`
    public struct Explain: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Explain whether a new connection would be allowed, and which tier, policy and rule decide.",
            discussion: """
                Reads policies, tiers, profiles, namespaces, network sets and workload endpoints from
                the datastore, compiles them as the node agent does, and runs the reference
                evaluator: the source's egress, then the destination's ingress. Prints the verdict
                and every tier, policy and rule consulted.

                Examples:
                  tabbyctl policy explain --from x/a --to y/b --protocol tcp --port 80
                  tabbyctl policy explain --from 203.0.113.7 --to prod/db --protocol tcp --port 5432 -o json
                """
        )
        enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

        @Option(help: "The client: NAMESPACE/POD (a workload endpoint's pod or name) or an IP address.")
        var from: String
        @Option(help: "The server: NAMESPACE/POD or an IP address.")
        var to: String
        @Option(name: .customLong("protocol"), help: "tcp, udp, sctp, icmp, icmpv6 or a protocol number.")
        var protocolName: String = "tcp"
        @Option(help: "Destination port (tcp, udp, sctp).")
        var port: UInt16?
        @Option(help: "ICMP type (icmp, icmpv6).")
        var icmpType: Int?
        @Option(help: "ICMP code (icmp, icmpv6).")
        var icmpCode: Int?
        @Option(name: .shortAndLong, help: "text or json.")
        var output: Format = .text
        @OptionGroup var datastore: DatastoreOptions
        public init() {}

        var ipProtocol: IPProtocol {
            if let number = Int(protocolName) { return .number(number) }
            let known = IPProtocol.knownNames.first { $0.name.lowercased() == protocolName.lowercased() }
            return .name(known?.name ?? protocolName)
        }

        public func validate() throws {
            if let problem = ipProtocol.problem { throw ValidationError("--protocol: \(problem)") }
            if ipProtocol.supportsPorts && port == nil {
                throw ValidationError("--port is required for \(protocolName)")
            }
            if !ipProtocol.supportsPorts && port != nil {
                throw ValidationError("--port needs protocol tcp, udp or sctp")
            }
        }

        public func run() async throws {
            let state = try await PolicyCommand.loadState(try datastore.openClient())
            let ir = PolicyIR.compile(state)
            let source = try peer(from, state: state, ir: ir, flag: "--from")
            let destination = try peer(to, state: state, ir: ir, flag: "--to")
            let packet = Packet(
                from: source,
                to: destination,
                protocol: ipProtocol,
                destinationPort: port,
                icmpType: icmpType,
                icmpCode: icmpCode
            )
            let evaluation = PolicyEvaluator(ir).evaluate(packet)
            let what = "\(protocolName.lowercased()) \(source) -> \(destination)\(port.map { " port \($0)" } ?? "")"
            switch output {
            case .text:
                print("\(evaluation.verdict == .allow ? "ALLOWED" : "DENIED"): \(what)")
                for step in evaluation.trace { print("  \(step)") }
                if let decided = evaluation.decidedBy { print("decided by: \(decided)") }
            case .json:
                let object: [String: Any] = [
                    "verdict": evaluation.verdict.rawValue,
                    "packet": what,
                    "trace": evaluation.trace.map(\.description),
                    "decidedBy": evaluation.decidedBy?.description ?? "",
                ]
                let data = try JSONSerialization.data(
                    withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            }
        }

        /// NAMESPACE/POD names a workload endpoint (by its pod, or its own name); anything that
        /// parses as an address is one (the endpoint owning it, if any).
        func peer(_ text: String, state: ClusterState, ir: PolicyIR, flag: String) throws -> PacketPeer {
            if let address = IPAddress(text) {
                return ir.endpoint(owning: address).map(PacketPeer.endpoint) ?? .address(address)
            }
            let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw ValidationError("\(flag) \"\(text)\": give NAMESPACE/POD or an IP address")
            }
            let matches = state.workloadEndpoints.filter { key, endpoint in
                key.namespace == parts[0] && (endpoint.spec.pod == parts[1] || key.name == parts[1])
            }
            guard let key = matches.keys.sorted().first else {
                printError(
                    "tabbyctl: \(flag) \(text): no workload endpoint of pod \(parts[1]) in namespace \(parts[0])")
                throw ExitStatus.invalidInput
            }
            return .endpoint(key)
        }
    }
}
