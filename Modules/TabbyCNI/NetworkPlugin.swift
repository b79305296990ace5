import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore

/// `tabby`: the CNI network plugin. Calico's datapath (a veth per pod, /32 routes, 169.254.1.1 as
/// the gateway answered by proxy ARP), Calico's config keys, and a WorkloadEndpoint per attachment
/// so the agent can police it.
///
/// The discipline every verb keeps: nothing is left behind. ADD allocates addresses, then writes
/// the endpoint, then makes the interfaces, and undoes all of it (in reverse) when a later step
/// fails. DEL removes what exists and succeeds when it is already gone. GC removes what belongs to
/// no valid attachment, so a runtime that lost track (a killed ADD) gets it back.
public struct NetworkPlugin: Sendable {
    public let environment: CNIEnvironment
    public let config: NetworkConfig
    public let datapath: any PodDatapath
    public let log: PluginLog
    /// The datastore; nil means the one the config names (tests pass their own).
    let storeOverride: (any KeyValueStore)?

    public init(
        environment: CNIEnvironment, config: NetworkConfig, datapath: any PodDatapath,
        store: (any KeyValueStore)? = nil,
        log: PluginLog = PluginLog(level: .warning)
    ) {
        self.environment = environment
        self.config = config
        self.datapath = datapath
        self.storeOverride = store
        self.log = log
    }

    /// The IPAM types the plugin runs in-process (no second process per ADD).
    static let builtInIPAMTypes: Set<String> = ["tabby-ipam", "calico-ipam"]
    /// Annotation that records which CNI network an endpoint belongs to (GC works per network).
    public static let networkAnnotation = "cni.tabby.dev/network"

    public func run() async throws(CNIError) -> Data? {
        switch environment.command {
        case .version: return nil
        case .add: return try await add().json(cniVersion: config.cniVersion)
        case .del: try await del()
        case .check: try await check()
        case .gc: try await gc()
        case .status: try await status()
        }
        return nil
    }

    // MARK: Settings

    /// Who the attachment is: the pod (Kubernetes) or the container (any other runtime).
    struct Workload {
        var namespace: String
        var pod: String?
        var containerID: String
        var interfaceName: String
        var labels: [String: String]

        var orchestrator: String { pod == nil ? "cni" : "k8s" }
        var workloadName: String { pod ?? containerID }
        var hostInterface: String { CalicoNaming.hostInterface(namespace: namespace, pod: workloadName) }
        var profile: String { "kns.\(namespace)" }

        func endpointName(node: String) -> String {
            CalicoNaming.workloadEndpointName(
                node: node, orchestrator: orchestrator, workload: workloadName, endpoint: interfaceName)
        }
    }

    func workload() throws(CNIError) -> Workload {
        guard let containerID = environment.containerID else {
            throw .invalidEnvironment("CNI_CONTAINERID is required for \(environment.command.rawValue)")
        }
        let arguments = environment.arguments
        let namespace = arguments["K8S_POD_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        let pod = arguments["K8S_POD_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        var labels: [String: String] = [:]
        if let text = arguments["TABBY_LABELS"], !text.isEmpty {
            for pair in text.split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw .invalidEnvironment("CNI_ARGS TABBY_LABELS: \"\(pair)\" is not key=value")
                }
                let key = String(parts[0])
                let value = String(parts[1])
                if let problem = LabelRules.problem(withKey: key) {
                    throw .invalidEnvironment("CNI_ARGS TABBY_LABELS: invalid label key \"\(key)\": \(problem)")
                }
                if let problem = LabelRules.problem(withValue: value) {
                    throw .invalidEnvironment(
                        "CNI_ARGS TABBY_LABELS: invalid value \"\(value)\" for \(key): \(problem)")
                }
                labels[key] = value
            }
        }
        labels["projectcalico.org/namespace"] = namespace
        labels["projectcalico.org/orchestrator"] = pod == nil ? "cni" : "k8s"
        return Workload(
            namespace: namespace, pod: pod, containerID: containerID,
            interfaceName: environment.interfaceName ?? "eth0", labels: labels)
    }

    /// `mtu`: a number (or a numeric string, as Calico's templates write it); default 1500.
    func mtu() throws(CNIError) -> Int {
        guard let text = try config.string("mtu") else { return 1500 }
        guard let value = Int(text), (68...65535).contains(value) else {
            throw .invalidConfig("mtu must be a number from 68 to 65535 (got \(text))")
        }
        return value
    }

    func checkIPAMType() throws(CNIError) {
        guard let type = config.ipam["type"] as? String else {
            throw .invalidConfig("ipam.type is missing; use \"tabby-ipam\" (or \"calico-ipam\")")
        }
        guard Self.builtInIPAMTypes.contains(type) else {
            throw .invalidConfig(
                "ipam.type \"\(type)\" is not supported by the tabby plugin; use \"tabby-ipam\" (or \"calico-ipam\")")
        }
    }

    func openStore() throws(CNIError) -> any KeyValueStore {
        if let storeOverride { return storeOverride }
        do {
            return try config.datastore().makeStore(shortLived: true)
        } catch let error as CNIError {
            throw error
        } catch {
            throw IPAMPlugin.map(error)
        }
    }

    // MARK: ADD

    func add() async throws(CNIError) -> CNIResult {
        let workload = try workload()
        guard let netns = environment.netns else { throw .invalidEnvironment("CNI_NETNS is required for ADD") }
        let mtu = try mtu()
        try checkIPAMType()
        let node = try config.nodeName()
        let store = try openStore()
        let ipamPlugin = IPAMPlugin(environment: environment, config: config)
        let ipam = IPAM(store: store)
        let resources = ResourceClient(store: store)
        let handleID = IPAMPlugin.handleID(network: config.name, containerID: workload.containerID)

        // 1. Addresses.
        log.debug("store open")
        let assignments = try await ipamPlugin.assign(ipam: ipam, node: node)
        log.info("assigned \(assignments.map(\.address)) to \(workload.containerID)")
        var endpointWritten = false
        var attachment: PodAttachment?
        do {
            // 2. The endpoint, before any interface exists: GC treats a cali veth without an
            // endpoint as stray, so a concurrent GC never removes an ADD in progress.
            let attached = PodAttachment(
                hostInterface: workload.hostInterface, namespacePath: netns, interfaceName: workload.interfaceName,
                addresses: assignments.map(\.address), mtu: mtu, podMAC: MACAddress.randomLocallyAdministered())
            try await ensureProfile(workload.profile, resources: resources)
            log.debug("profile checked")
            try await writeEndpoint(workload, node: node, attachment: attached, resources: resources)
            endpointWritten = true
            log.debug("endpoint written")
            // 3. The kernel.
            attachment = attached
            try datapath.attach(attached)
            log.debug("attached")
            return Self.result(for: attached)
        } catch {
            log.warning("ADD \(workload.containerID) failed, undoing: \(error)")
            if attachment != nil { try? datapath.detach(hostInterface: workload.hostInterface) }
            if endpointWritten {
                _ = try? await resources.delete(
                    .workloadEndpoint, name: workload.endpointName(node: node), namespace: workload.namespace)
            }
            _ = try? await ipam.release(handleID: handleID)
            throw Self.map(error)
        }
    }

    static func result(for attachment: PodAttachment) -> CNIResult {
        var result = CNIResult(
            interfaces: [
                .init(name: attachment.hostInterface, mac: CalicoNaming.hostMAC.description),
                .init(
                    name: attachment.interfaceName, mac: attachment.podMAC.description, mtu: attachment.mtu,
                    sandbox: attachment.namespacePath),
            ])
        for address in attachment.addresses {
            result.ips.append(.init(address: "\(address)/\(address.bitWidth)", interface: 1))
        }
        if attachment.addresses.contains(where: { $0.family == .v4 }) {
            result.routes.append(.init(dst: "0.0.0.0/0", gw: CalicoNaming.ipv4Gateway.description))
        }
        if attachment.addresses.contains(where: { $0.family == .v6 }) {
            result.routes.append(.init(dst: "::/0", gw: CalicoNaming.ipv6Gateway.description))
        }
        return result
    }

    /// Calico's kube-controllers make a `kns.<namespace>` profile (allow all) for each namespace;
    /// without Kubernetes nobody does, and the policy engine denies an endpoint whose profile is
    /// missing. Creating it here when absent keeps a plain-CNI runtime's pods reachable.
    func ensureProfile(_ name: String, resources: ResourceClient) async throws {
        if try await !resources.exists(.profile, name: name) {
            var spec = ProfileSpec()
            spec.ingress = [Rule(action: .allow)]
            spec.egress = [Rule(action: .allow)]
            do {
                _ = try await resources.create(AnyResource(Profile(metadata: ObjectMeta(name: name), spec: spec)))
            } catch {
                guard case .alreadyExists = error else { throw error }
            }
        }
    }

    func writeEndpoint(_ workload: Workload, node: String, attachment: PodAttachment, resources: ResourceClient)
        async throws
    {
        var metadata = ObjectMeta(
            name: workload.endpointName(node: node), namespace: workload.namespace, labels: workload.labels)
        metadata.annotations = [Self.networkAnnotation: config.name]
        var spec = WorkloadEndpointSpec()
        spec.orchestrator = workload.orchestrator
        spec.workload = workload.pod == nil ? workload.containerID : nil
        spec.pod = workload.pod
        spec.node = node
        spec.containerID = workload.containerID
        spec.endpoint = workload.interfaceName
        spec.ipNetworks = attachment.addresses.map { "\($0)/\($0.bitWidth)" }
        spec.profiles = [workload.profile]
        spec.interfaceName = attachment.hostInterface
        spec.mac = attachment.podMAC.description
        // apply: a retried ADD for the same attachment overwrites its own endpoint.
        _ = try await resources.apply(AnyResource(WorkloadEndpoint(metadata: metadata, spec: spec)))
    }

    // MARK: DEL

    /// Removes the interfaces, the endpoint and the addresses; succeeds when any of them is gone
    /// already. Every step is tried; the first failure is reported after all were tried.
    func del() async throws(CNIError) {
        let workload = try workload()
        let node = try config.nodeName()
        let store = try openStore()
        let resources = ResourceClient(store: store)
        var firstError: CNIError?
        let endpointName = workload.endpointName(node: node)
        var hostInterface = workload.hostInterface
        if let found = try? await resources.get(
            WorkloadEndpoint.self, name: endpointName, namespace: workload.namespace),
            let name = found.spec.interfaceName
        {
            hostInterface = name
        }
        do {
            try datapath.detach(hostInterface: hostInterface)
        } catch {
            firstError = firstError ?? Self.map(error)
        }
        do {
            _ = try await resources.delete(.workloadEndpoint, name: endpointName, namespace: workload.namespace)
        } catch {
            if case .notFound = error {} else { firstError = firstError ?? Self.map(error) }
        }
        do {
            _ = try await IPAM(store: store).release(
                handleID: IPAMPlugin.handleID(network: config.name, containerID: workload.containerID))
        } catch {
            firstError = firstError ?? IPAMPlugin.map(error)
        }
        if let firstError { throw firstError }
    }

    // MARK: CHECK

    /// prevResult, the IPAM handle, the endpoint and the kernel must all agree.
    func check() async throws(CNIError) {
        let workload = try workload()
        guard let netns = environment.netns else { throw .invalidEnvironment("CNI_NETNS is required for CHECK") }
        guard let previous = try config.previousResult() else { throw .invalidConfig("CHECK needs prevResult") }
        let node = try config.nodeName()
        let store = try openStore()
        try await IPAMPlugin(environment: environment, config: config).check(ipam: IPAM(store: store))
        let found: WorkloadEndpoint?
        do {
            found = try await ResourceClient(store: store).get(
                WorkloadEndpoint.self, name: workload.endpointName(node: node), namespace: workload.namespace)
        } catch {
            throw Self.map(error)
        }
        guard let endpoint = found else {
            throw .checkFailed(
                "WorkloadEndpoint \(workload.namespace)/\(workload.endpointName(node: node)) does not exist")
        }
        let addresses = previous.ips.compactMap {
            $0.address.split(separator: "/").first.flatMap { IPAddress(String($0)) }
        }
        guard let mac = endpoint.spec.mac.flatMap(MACAddress.init), let hostInterface = endpoint.spec.interfaceName
        else {
            throw .checkFailed("WorkloadEndpoint \(endpoint.metadata.name) has no interface or MAC")
        }
        let attachment = PodAttachment(
            hostInterface: hostInterface, namespacePath: netns, interfaceName: workload.interfaceName,
            addresses: addresses, mtu: try mtu(), podMAC: mac)
        let problems: [String]
        do {
            problems = try datapath.verify(attachment)
        } catch {
            throw Self.map(error)
        }
        if !problems.isEmpty { throw .checkFailed(problems.joined(separator: "; ")) }
    }

    // MARK: GC

    /// Releases every address, endpoint and host veth of this network and node that belongs to no
    /// valid attachment, then removes `cali` veths that no endpoint on this node names.
    func gc() async throws(CNIError) {
        let valid = Set(try config.validAttachments().map(\.containerID))
        let node = try config.nodeName()
        let store = try openStore()
        let resources = ResourceClient(store: store)
        do {
            // Endpoints (and their interfaces) first, so an address is never free while in use.
            let endpoints = try await resources.list(WorkloadEndpoint.self).filter { $0.spec.node == node }
            var inUse = Set<String>()
            for endpoint in endpoints {
                let ours = endpoint.metadata.annotations?[Self.networkAnnotation] == config.name
                if ours, let containerID = endpoint.spec.containerID, !valid.contains(containerID) {
                    log.info("GC: removing endpoint \(endpoint.metadata.name) of container \(containerID)")
                    if let name = endpoint.spec.interfaceName { try datapath.detach(hostInterface: name) }
                    _ = try? await resources.delete(
                        .workloadEndpoint, name: endpoint.metadata.name, namespace: endpoint.metadata.namespace)
                } else if let name = endpoint.spec.interfaceName {
                    inUse.insert(name)
                }
            }
            for name in try datapath.hostInterfaces() where !inUse.contains(name) {
                log.info("GC: removing host interface \(name), which no endpoint names")
                try datapath.detach(hostInterface: name)
            }
            try await IPAMPlugin(environment: environment, config: config).gc(ipam: IPAM(store: store), valid: valid)
        } catch {
            throw Self.map(error)
        }
    }

    // MARK: STATUS

    func status() async throws(CNIError) {
        try checkIPAMType()
        let store = try openStore()
        try await IPAMPlugin(environment: environment, config: config).status(ipam: IPAM(store: store))
    }

    /// Every error to a CNI code: the datapath's, the datastore's and IPAM's.
    static func map(_ error: any Error) -> CNIError {
        switch error {
        case let error as CNIError: return error
        case let error as DatapathError:
            switch error {
            case .interfaceExists: return .invalidConfig(error.description)
            case .namespaceUnavailable: return .invalidEnvironment("CNI_NETNS: \(error.description)")
            case .kernel: return .ioFailure(error.description)
            }
        case let error as ResourceError:
            switch error {
            case .store(let store): return IPAMPlugin.map(store)
            case .conflict: return .tryAgainLater(error.description)
            default: return .ioFailure(error.description)
            }
        default: return IPAMPlugin.map(error)
        }
    }
}
