#if EBPF
    import Foundation
    import Glibc
    import TabbyCore
    import TabbyDataplane
    import TabbyDataplaneConformance
    import TabbyEBPF
    import TabbyNetlink
    import TabbyPolicy
    import Testing

    /// A restarted agent's eBPF dataplane adopts the pinned tables it finds, repairs what was changed
    /// behind its back, and sweeps what no endpoint uses.
    @Suite(
        "eBPF reconcile and sweep",
        .enabled(
            if: geteuid() == 0,
            "creates network namespaces and loads BPF programs: needs CAP_NET_ADMIN and CAP_BPF (root)"),
        .serialized)
    struct EBPFReconcileTests {
        @Test func aRestartedDataplaneAdoptsRepairsAndSweeps() throws {
            let (kit, pinRoot) = try EBPFConformanceTests.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            let (name, manifest) = ConformanceKit.kubernetesCases[0]
            try kit.load(manifest)
            #expect(try kit.check(kit.grid(), context: name).isEmpty)

            // The agent restarts: a new load against the same pins finds everything as it wants it.
            let restarted = try EBPFDataplane(pinRoot: pinRoot, namespacePath: kit.lab.nodePath)
            #expect(try restarted.reconcile(kit.engine.ir) == [])
            #expect(try kit.check(kit.grid(), context: "\(name), after the restart").isEmpty)

            // Someone deletes x/a's endpoint entry: its traffic drops (fail closed) until reconcile.
            let pod = kit.lab.pod("x", "a")!
            let ifindex = try restarted.program.endpointEntries().first { entry in
                let index = try? NetworkNamespace.run(path: kit.lab.nodePath) { Int32(if_nametoindex(pod.interface)) }
                return entry.key == index
            }!.key
            #expect(try restarted.program.removeEndpoint(ifindex: ifindex))
            let repaired = try restarted.reconcile(kit.engine.ir)
            #expect(repaired == ["programmed x/a on \(pod.interface)"], "\(repaired)")
            #expect(try kit.check(kit.grid(), context: "\(name), after the repair").isEmpty)

            // Tables of a policy program nobody uses are swept; the ones in use stay.
            try restarted.program.allowAll(program: 0xdead)
            #expect(try restarted.program.policyProgramIDs().contains(0xdead))
            try restarted.sweep(keeping: kit.engine.ir)
            let used = try restarted.program.endpointEntries().values.flatMap { [$0.ingressProgram, $0.egressProgram] }
            #expect(try restarted.program.policyProgramIDs() == Set(used))
            #expect(try kit.check(kit.grid(), context: "\(name), after the sweep").isEmpty)
        }
    }

    extension EBPFReconcileTests {
        /// A policy the tables cannot express yet (a rule that tells apart the IPv4 addresses of an
        /// endpoint with two: ingress to one of x/a's addresses once it has a second) fails the apply
        /// with an error naming the endpoint, drops all of that endpoint's traffic, and leaves every
        /// other endpoint programmed; back to one address, the endpoint is programmed again.
        @Test func anUnexpressiblePolicyFailsClosedForItsEndpointOnly() throws {
            let (kit, pinRoot) = try EBPFConformanceTests.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            let pod = try #require(kit.lab.pod("x", "a"))
            try kit.load(
                """
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {name: ingress-80, namespace: x}
                spec:
                  selector: pod == 'a'
                  types: [Ingress]
                  ingress:
                  - action: Allow
                    protocol: TCP
                    destination: {nets: ["\(pod.address)/32"], ports: [80]}
                """)
            #expect(kit.dataplane.status().healthy)
            let original = try #require(
                kit.engine.state.workloadEndpoints.values.first {
                    $0.metadata.namespace == "x" && $0.metadata.name == "a"
                })
            var twoAddresses = original
            twoAddresses.spec.ipNetworks = (original.spec.ipNetworks ?? []) + ["10.99.0.1/32"]
            #expect {
                try kit.update([.upsert(.workloadEndpoint(twoAddresses))])
            } throws: { error in
                "\(error)".contains("x/a") && "\(error)".contains("failing closed")
                    && "\(error)".contains("tell the endpoint's IPv4 addresses apart")
            }
            let status = kit.dataplane.status()
            #expect(!status.healthy && status.detail.contains("x/a"), "\(status)")
            let probes = kit.grid()
            let results = try kit.lab.probe(probes)
            for probe in probes {
                if probe.from == pod || probe.to == pod.address {
                    #expect(results[probe] == false, "\(probe) passed an endpoint failing closed")
                } else {
                    #expect(results[probe] == (kit.expected(probe).verdict == .allow), "\(probe)")
                }
            }
            try kit.update([.upsert(.workloadEndpoint(original))])
            #expect(kit.dataplane.status().healthy)
            #expect(try kit.check(kit.grid(), context: "one address again").isEmpty)
        }
    }

    extension TCProgram {
        func allowAll(program: UInt32) throws {
            try setPortClass(program: program, protocol: nil, ports: nil, portClass: 0)
            try setAddressClass(program: program, cidr: CIDR("0.0.0.0/0")!, addressClass: 0)
            try setVerdict(program: program, portClass: Self.anyClass, addressClass: Self.anyClass, Verdict(.allow))
        }
    }
#endif
