import Foundation
import TabbyCNI
import TabbyCore
import TabbyIPAM
import TabbyStore
import TabbyTestSupport
import Testing

/// The plugin's bookkeeping (IPAM, endpoints, undo on failure, GC) over a fake datapath and an
/// in-memory store. The kernel side is tested in IntegrationTests.
struct PluginFixture {
    let store = InMemoryStore()
    let datapath = FakeDatapath()
    var node = "node-a"

    init(pool: String? = "10.65.0.0/16", blockSize: Int? = nil) async throws {
        if let pool {
            var spec = IPPoolSpec(cidr: pool)
            spec.blockSize = blockSize
            try await ResourceClient(store: store).create(
                AnyResource(IPPool(metadata: ObjectMeta(name: "default"), spec: spec)))
        }
    }

    func config(_ extra: [String: Any] = [:], version: String = "1.1.0") -> NetworkConfig {
        var object: [String: Any] = [
            "cniVersion": version, "name": "tabby-net", "type": "tabby", "nodename": node, "mtu": 1440,
            "ipam": ["type": "tabby-ipam"],
        ]
        for (key, value) in extra { object[key] = value }
        return try! NetworkConfig(data: JSONSerialization.data(withJSONObject: object))
    }

    func plugin(
        _ command: String, container: String = "c1", args: String = "K8S_POD_NAMESPACE=web;K8S_POD_NAME=pod-1",
        config: NetworkConfig? = nil
    ) throws -> NetworkPlugin {
        let environment = try CNIEnvironment([
            "CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": "/run/netns/\(container)",
            "CNI_IFNAME": "eth0", "CNI_ARGS": args,
        ])
        return NetworkPlugin(
            environment: environment, config: config ?? self.config(), datapath: datapath, store: store)
    }

    func add(container: String = "c1", args: String = "K8S_POD_NAMESPACE=web;K8S_POD_NAME=pod-1") async throws
        -> [String: Any]
    {
        let output = try await plugin("ADD", container: container, args: args).run()
        return try JSONSerialization.jsonObject(with: output ?? Data()) as! [String: Any]
    }

    var ipam: IPAM { IPAM(store: store) }
    var resources: ResourceClient { ResourceClient(store: store) }
}

func cniCode(_ body: () async throws -> Void) async -> Int? {
    do {
        try await body()
        return nil
    } catch let error as CNIError {
        return error.code
    } catch {
        return -1
    }
}

@Suite("tabby plugin: ADD, DEL, CHECK, GC, STATUS over a fake datapath")
struct NetworkPluginTests {
    @Test func addAllocatesWritesTheEndpointAndAttaches() async throws {
        let fixture = try await PluginFixture()
        let result = try await fixture.add(
            args: "K8S_POD_NAMESPACE=web;K8S_POD_NAME=pod-1;TABBY_LABELS=app=db,tier=back")
        let hostInterface = CalicoNaming.hostInterface(namespace: "web", pod: "pod-1")
        #expect(hostInterface.count == 15 && hostInterface.hasPrefix("cali"))

        let ips = result["ips"] as! [[String: Any]]
        #expect(ips.count == 1)
        let address = ips[0]["address"] as! String
        #expect(address.hasPrefix("10.65.") && address.hasSuffix("/32"))
        #expect(ips[0]["interface"] as? Int == 1)
        let interfaces = result["interfaces"] as! [[String: Any]]
        #expect(interfaces.map { $0["name"] as? String } == [hostInterface, "eth0"])
        #expect(interfaces[0]["mac"] as? String == "ee:ee:ee:ee:ee:ee")
        #expect(interfaces[1]["sandbox"] as? String == "/run/netns/c1")
        #expect(interfaces[1]["mtu"] as? Int == 1440)
        #expect((result["routes"] as! [[String: Any]]).first?["gw"] as? String == "169.254.1.1")

        let attachment = try #require(fixture.datapath.attachments[hostInterface])
        #expect(attachment.mtu == 1440 && "\(attachment.addresses[0])/32" == address)

        let name = CalicoNaming.workloadEndpointName(
            node: "node-a", orchestrator: "k8s", workload: "pod-1", endpoint: "eth0")
        #expect(name == "node--a-k8s-pod--1-eth0")
        let endpoint = try #require(
            try await fixture.resources.get(WorkloadEndpoint.self, name: name, namespace: "web"))
        #expect(endpoint.spec.ipNetworks == [address])
        #expect(endpoint.spec.interfaceName == hostInterface)
        #expect(endpoint.spec.mac == attachment.podMAC.description)
        #expect(endpoint.spec.profiles == ["kns.web"])
        #expect(endpoint.spec.node == "node-a" && endpoint.spec.containerID == "c1" && endpoint.spec.pod == "pod-1")
        #expect(endpoint.metadata.labels?["app"] == "db" && endpoint.metadata.labels?["tier"] == "back")
        #expect(endpoint.metadata.labels?["projectcalico.org/namespace"] == "web")
        // The namespace's allow-all profile exists, so the new pod is reachable without Kubernetes.
        let profile = try #require(try await fixture.resources.get(Profile.self, name: "kns.web"))
        #expect(profile.spec.ingress?.first?.action == .allow)

        #expect(try await fixture.ipam.addresses(handleID: "tabby-net.c1").map { "\($0)/32" } == [address])
    }

    @Test func resultsInEveryVersion() async throws {
        let fixture = try await PluginFixture()
        for (index, version) in ["0.4.0", "1.0.0", "1.1.0"].enumerated() {
            let output = try await fixture.plugin(
                "ADD", container: "v\(index)", args: "", config: fixture.config(version: version)
            )
            .run()
            let object = try JSONSerialization.jsonObject(with: output!) as! [String: Any]
            #expect(object["cniVersion"] as? String == version)
            let ip = (object["ips"] as! [[String: Any]])[0]
            #expect((ip["version"] as? String == "4") == (version == "0.4.0"))
        }
    }

    @Test func aFailedAttachUndoesEverything() async throws {
        let fixture = try await PluginFixture()
        fixture.datapath.failAttach(of: CalicoNaming.hostInterface(namespace: "web", pod: "pod-1"))
        let code = await cniCode { _ = try await fixture.add() }
        #expect(code == 5)
        #expect(try await fixture.ipam.addresses(handleID: "tabby-net.c1").isEmpty)
        #expect(try await fixture.resources.list(WorkloadEndpoint.self).isEmpty)
        #expect(fixture.datapath.attachments.isEmpty)
        // The runtime's DEL after the failed ADD succeeds; a retried ADD works.
        try await fixture.plugin("DEL").run()
        _ = try await fixture.add()
        #expect(fixture.datapath.attachments.count == 1)
    }

    @Test func exhaustedPoolsFailWithoutLeaving() async throws {
        let fixture = try await PluginFixture(pool: "10.66.0.0/30", blockSize: 30)
        var codes: [Int?] = []
        for index in 0..<6 {
            codes.append(
                await cniCode { _ = try await fixture.add(container: "c\(index)", args: "K8S_POD_NAME=p\(index)") })
        }
        #expect(codes.prefix(4).allSatisfy { $0 == nil })
        #expect(codes.suffix(2).allSatisfy { $0 == 100 })
        #expect(fixture.datapath.attachments.count == 4)
        #expect(try await fixture.resources.list(WorkloadEndpoint.self).count == 4)
    }

    @Test func delIsIdempotentAndWorksWithoutADD() async throws {
        let fixture = try await PluginFixture()
        try await fixture.plugin("DEL", container: "never-added").run()
        _ = try await fixture.add()
        try await fixture.plugin("DEL").run()
        try await fixture.plugin("DEL").run()
        #expect(fixture.datapath.attachments.isEmpty)
        #expect(try await fixture.resources.list(WorkloadEndpoint.self).isEmpty)
        #expect(try await fixture.ipam.handleIDs().isEmpty)
    }

    @Test func aSecondADDOfTheSameAttachmentIsRefusedAndKeepsTheFirst() async throws {
        let fixture = try await PluginFixture()
        _ = try await fixture.add()
        let code = await cniCode { _ = try await fixture.add() }
        #expect(code == 7)
        #expect(try await fixture.ipam.addresses(handleID: "tabby-net.c1").count == 1)
        #expect(fixture.datapath.attachments.count == 1)
    }

    @Test func checkComparesPrevResultIPAMEndpointAndKernel() async throws {
        let fixture = try await PluginFixture()
        let result = try await fixture.add()
        let good = fixture.config(["prevResult": result])
        try await fixture.plugin("CHECK", config: good).run()

        fixture.datapath.setProblems(["route 10.65.0.1/32 is missing"])
        #expect(await cniCode { try await fixture.plugin("CHECK", config: good).run() } == 101)
        fixture.datapath.setProblems([])

        var wrong = result
        wrong["ips"] = [["address": "10.65.9.9/32", "interface": 1]]
        #expect(
            await cniCode { try await fixture.plugin("CHECK", config: fixture.config(["prevResult": wrong])).run() }
                == 101)
        #expect(await cniCode { try await fixture.plugin("CHECK").run() } == 7)
    }

    @Test func gcRemovesEverythingNotValid() async throws {
        let fixture = try await PluginFixture()
        _ = try await fixture.add(container: "keep", args: "K8S_POD_NAME=keep")
        _ = try await fixture.add(container: "gone", args: "K8S_POD_NAME=gone")
        fixture.datapath.addStray("cali0123456789a")
        // Another network's endpoint on this node is not this GC's business.
        let other = fixture.config()
        var otherObject = other.raw
        otherObject["name"] = "other-net"
        let otherConfig = try NetworkConfig(data: JSONSerialization.data(withJSONObject: otherObject))
        _ = try await fixture.plugin("ADD", container: "elsewhere", args: "K8S_POD_NAME=elsewhere", config: otherConfig)
            .run()

        let gc = fixture.config(["cni.dev/valid-attachments": [["containerID": "keep", "ifname": "eth0"]]])
        try await fixture.plugin("GC", config: gc).run()

        #expect(
            Set(fixture.datapath.attachments.keys)
                == [
                    CalicoNaming.hostInterface(namespace: "default", pod: "keep"),
                    CalicoNaming.hostInterface(namespace: "default", pod: "elsewhere"),
                ])
        #expect(try await fixture.datapath.hostInterfaces().count == 2)
        #expect(Set(try await fixture.ipam.handleIDs()) == ["tabby-net.keep", "other-net.elsewhere"])
        #expect(
            Set(try await fixture.resources.list(WorkloadEndpoint.self).compactMap(\.spec.containerID)) == [
                "keep", "elsewhere",
            ])
        // The older key name is accepted too.
        let old = fixture.config(["cni.dev/attachments": [[String: Any]]()])
        try await fixture.plugin("GC", config: old).run()
        #expect(try await fixture.ipam.handleIDs() == ["other-net.elsewhere"])
    }

    @Test func statusNeedsAPoolWithRoom() async throws {
        let empty = try await PluginFixture(pool: nil)
        #expect(await cniCode { try await empty.plugin("STATUS").run() } == 50)
        let fixture = try await PluginFixture()
        try await fixture.plugin("STATUS").run()
    }

    @Test(arguments: [
        ("TABBY_LABELS=novalue", 4),
        ("TABBY_LABELS=-bad=x", 4),
        ("TABBY_LABELS=app=has space", 4),
    ])
    func badLabelsAreRejected(args: String, code: Int) async throws {
        let fixture = try await PluginFixture()
        #expect(await cniCode { _ = try await fixture.add(args: args) } == code)
        #expect(try await fixture.ipam.handleIDs().isEmpty)
    }

    /// Extra config keys as JSON (test arguments must be Sendable).
    @Test(arguments: [
        (#"{"mtu": "huge"}"#, "mtu must be a number"),
        (#"{"mtu": 20}"#, "mtu must be a number"),
        (#"{"ipam": {"type": "host-local"}}"#, #"ipam.type "host-local""#),
        (#"{"ipam": {}}"#, "ipam.type is missing"),
        (#"{"log_level": "loud"}"#, "log_level"),
    ])
    func badConfigNamesTheKey(extraJSON: String, message: String) async throws {
        let fixture = try await PluginFixture()
        let extra = try JSONSerialization.jsonObject(with: Data(extraJSON.utf8)) as! [String: Any]
        let config = fixture.config(extra)
        do {
            _ = try PluginLog(config: config, context: "")
            _ = try await fixture.plugin("ADD", config: config).run()
            Issue.record("ADD with \(extra) succeeded")
        } catch let error as CNIError {
            #expect(error.code == 7)
            #expect(error.message.contains(message), "\(error.message)")
        }
        #expect(try await fixture.ipam.handleIDs().isEmpty)
    }

    @Test func containersWithoutKubernetesGetCNIEndpoints() async throws {
        let fixture = try await PluginFixture()
        _ = try await fixture.add(container: "0123abcd", args: "IgnoreUnknown=1")
        let endpoints = try await fixture.resources.list(WorkloadEndpoint.self, namespace: "default")
        #expect(endpoints.map(\.metadata.name) == ["node--a-cni-0123abcd-eth0"])
        #expect(endpoints.first?.spec.workload == "0123abcd" && endpoints.first?.spec.orchestrator == "cni")
    }
}
