#if EBPF
    import Foundation
    import Glibc
    import TabbyDataplane
    import TabbyDataplaneConformance
    import TabbyEBPF
    import TabbyPolicy
    import Testing

    /// The eBPF backend in the lab of nine pods: the Kubernetes and Calico cases over the full grid,
    /// then seeded random Calico policies. Maps are pinned under a per-test
    /// `/sys/fs/bpf/tabby-test-<pid>-<random>/`, removed afterwards.
    @Suite(
        "eBPF backend conformance",
        .enabled(
            if: geteuid() == 0,
            "creates network namespaces and loads BPF programs: needs CAP_NET_ADMIN and CAP_BPF (root)"),
        .serialized)
    struct EBPFConformanceTests {
        static func makeKit() throws -> (ConformanceKit, String) {
            let pinRoot = "/sys/fs/bpf/tabby-test-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
            do {
                let kit = try ConformanceKit { node in try EBPFDataplane(pinRoot: pinRoot, namespacePath: node) }
                return (kit, pinRoot)
            } catch {
                BPFObject.removePins(at: pinRoot)
                throw error
            }
        }

        @Test func kubernetesCases() throws {
            let (kit, pinRoot) = try Self.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            // Without policies everything is allowed (profiles kns.*), and the grid is not vacuous.
            #expect(try kit.check(kit.grid(), context: "no policy").isEmpty)
            let mismatches = try kit.runKubernetesCases()
            #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        }

        @Test func calicoCases() throws {
            let (kit, pinRoot) = try Self.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            let mismatches = try kit.runCalicoCases()
            #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        }

        /// Egress to named ports (the pods' `serve-81-tcp` and friends), alone, beside a numeric port,
        /// and negated: the port a name stands for differs per destination only in its address.
        @Test func egressNamedPorts() throws {
            let (kit, pinRoot) = try Self.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            let rules = [
                "- {action: Allow, protocol: TCP, destination: {ports: [serve-81-tcp]}}",
                "- {action: Allow, protocol: UDP, destination: {ports: [80, serve-81-udp], selector: pod == 'b'}}",
                "- {action: Deny, protocol: TCP, destination: {notPorts: [serve-80-tcp]}}\n  - {action: Allow}",
            ]
            for (index, rule) in rules.enumerated() {
                try kit.load(
                    """
                    apiVersion: projectcalico.org/v3
                    kind: NetworkPolicy
                    metadata: {name: named-egress, namespace: x}
                    spec:
                      selector: pod in {'a', 'c'}
                      types: [Egress]
                      egress:
                      \(rule)
                    """)
                let mismatches = try kit.check(kit.grid(), context: "egress named ports \(index)")
                #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
                #expect(kit.dataplane.status().healthy, "\(kit.dataplane.status())")
            }
        }

        /// At least 200 seeded random policy/packet cases (20 policy sets x 12 probes).
        @Test func randomCases() throws {
            let (kit, pinRoot) = try Self.makeKit()
            defer {
                kit.tearDown()
                BPFObject.removePins(at: pinRoot)
            }
            let seed =
                ProcessInfo.processInfo.environment["TABBY_CONFORMANCE_SEED"].flatMap(UInt64.init)
                ?? UInt64.random(in: 0...UInt64.max)
            let mismatches = try kit.runRandomCases(seed: seed, count: 20, probesPerCase: 12)
            #expect(
                mismatches.isEmpty,
                "seed \(seed) (rerun with TABBY_CONFORMANCE_SEED=\(seed)):\n\(mismatches.joined(separator: "\n"))")
        }
    }
#endif
