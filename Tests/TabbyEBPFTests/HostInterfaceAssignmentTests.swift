#if EBPF
    import Testing
    import TabbyCore
    @testable import TabbyPolicy
    @testable import TabbyEBPF

    /// Which host endpoint polices which host interface (Felix's resolution: by name, then by
    /// expectedIPs, then `*`), and the addresses the program treats as the host's.
    @Suite struct HostInterfaceAssignmentTests {
        static let interfaces: [HostInterfaceAssignment.Interface] = [
            .init(name: "lo", index: 1, addresses: [IPAddress("127.0.0.1")!]),
            .init(name: "eth0", index: 2, addresses: [IPAddress("192.168.0.10")!]),
            .init(name: "eth1", index: 3, addresses: [IPAddress("10.10.0.5")!]),
            .init(name: "vxlan.calico", index: 4, addresses: [IPAddress("10.65.0.0")!]),
            .init(name: "cali1234567890a", index: 5, addresses: []),
        ]

        static func host(_ name: String, interface: String?, addresses: [String] = []) -> EndpointProgram {
            var program = EndpointProgram(
                endpoint: .hostEndpoint(name), addresses: addresses.map { IPAddress($0)! },
                interfaceName: interface, ingress: [], egress: [], profiles: [])
            program.kind = .host
            return program
        }

        static func assign(_ endpoints: [EndpointProgram]) -> HostInterfaceAssignment {
            HostInterfaceAssignment(endpoints, interfaces: interfaces, workloadInterfacePrefix: "cali")
        }

        @Test func aNamedInterfaceGetsItsEndpointOnly() {
            let assignment = Self.assign([Self.host("eth0", interface: "eth0")])
            #expect(assignment.endpoints == [2: .hostEndpoint("eth0")])
            #expect(assignment.unattached.isEmpty)
        }

        @Test func theWildcardTakesEveryHostInterfaceButLoWorkloadsAndNamedOnes() {
            let assignment = Self.assign([
                Self.host("all", interface: "*"), Self.host("eth0", interface: "eth0"),
            ])
            #expect(
                assignment.endpoints == [
                    2: .hostEndpoint("eth0"), 3: .hostEndpoint("all"), 4: .hostEndpoint("all"),
                ])
            #expect(assignment.interfaces(of: .hostEndpoint("all")) == [3, 4])
        }

        @Test func expectedIPsAloneFindTheInterfaceHoldingThem() {
            let assignment = Self.assign([
                Self.host("by-ip", interface: nil, addresses: ["10.10.0.5"]),
                Self.host("all", interface: "*"),
            ])
            #expect(
                assignment.endpoints == [
                    2: .hostEndpoint("all"), 3: .hostEndpoint("by-ip"), 4: .hostEndpoint("all"),
                ])
            // Nothing holds 203.0.113.1: reported, enforced nowhere.
            let lost = Self.assign([Self.host("lost", interface: nil, addresses: ["203.0.113.1"])])
            #expect(lost.endpoints.isEmpty)
            #expect(lost.unattached[.hostEndpoint("lost")] == "no host interface holds its expectedIPs (203.0.113.1)")
        }

        @Test func conflictsAndMissingInterfacesAreReported() {
            let assignment = Self.assign([
                Self.host("a", interface: "eth1"), Self.host("b", interface: "eth1"),
                Self.host("c", interface: "eth9"), Self.host("d", interface: "lo"),
                Self.host("e", interface: "cali1234567890a"), Self.host("w1", interface: "*"),
                Self.host("w2", interface: "*"),
            ])
            #expect(assignment.endpoints[3] == .hostEndpoint("a"))
            #expect(
                assignment.unattached == [
                    .hostEndpoint("b"): "interface eth1 is already hep/a's",
                    .hostEndpoint("c"): "no interface eth9 on the node",
                    .hostEndpoint("d"): "lo is not a host interface (lo or a workload's)",
                    .hostEndpoint("e"): "cali1234567890a is not a host interface (lo or a workload's)",
                    .hostEndpoint("w2"): "interface * is already hep/w1's",
                ])
            // Workload endpoints are never assigned here.
            var workload = Self.host("pod", interface: "eth0")
            workload.kind = .workload
            #expect(Self.assign([workload]).endpoints.isEmpty)
        }

        @Test func hostAddressesAddSubnetBroadcastsAndTheLimitedBroadcast() {
            let addresses = HostInterfaceAssignment.hostAddresses([
                (IPv4Address("192.168.0.10")!, 24), (IPv4Address("10.65.0.0")!, 32),
                (IPv4Address("10.0.0.1")!, 31),
            ])
            #expect(
                addresses
                    == Set(
                        ["192.168.0.10", "192.168.0.255", "10.65.0.0", "10.0.0.1", "255.255.255.255"].map {
                            IPv4Address($0)!
                        }))
        }
    }
#endif
