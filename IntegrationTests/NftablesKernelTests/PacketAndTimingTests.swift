import Foundation
import Glibc
import Testing

@testable import TabbyNftables

/// Traffic through a forwarding namespace, and commit timings. Namespaces are `tabby-t-nft-*`, made
/// and deleted here; the root namespace's sysctls are read before and after to prove they are untouched.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs CAP_NET_ADMIN to create network namespaces"))
struct PacketAndTimingTests {
    /// a (10.77.1.2/30) -- veth-a | node (forwards) | veth-b -- b (10.77.2.2/30), listeners on b:80, b:81.
    @Test func verdictMapDispatchFiltersForwardedTraffic() throws {
        let rootForwarding = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
        let node = try TestNamespace("node")
        defer { node.delete() }
        let a = try TestNamespace("a")
        defer { a.delete() }
        let b = try TestNamespace("b")
        defer { b.delete() }

        try run([
            "ip", "-n", node.name, "link", "add", "veth-a", "type", "veth", "peer", "name", "eth0", "netns", a.name,
        ])
        try run([
            "ip", "-n", node.name, "link", "add", "veth-b", "type", "veth", "peer", "name", "eth0", "netns", b.name,
        ])
        for (namespace, device, address) in [
            (node, "veth-a", "10.77.1.1/30"), (node, "veth-b", "10.77.2.1/30"), (a, "eth0", "10.77.1.2/30"),
            (b, "eth0", "10.77.2.2/30"),
        ] {
            try run(["ip", "-n", namespace.name, "addr", "add", address, "dev", device])
            try run(["ip", "-n", namespace.name, "link", "set", device, "up"])
            try run(["ip", "-n", namespace.name, "link", "set", "lo", "up"])
        }
        try run(["ip", "-n", a.name, "route", "add", "default", "via", "10.77.1.1"])
        try run(["ip", "-n", b.name, "route", "add", "default", "via", "10.77.2.1"])
        // Net sysctls resolve to the writer's network namespace: this writes node's, not the root's.
        try node.exec(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        #expect(try node.exec(["cat", "/proc/sys/net/ipv4/ip_forward"]).output == "1\n")

        var listeners: [Process] = []
        defer {
            for listener in listeners { stop(listener) }
        }
        for port in ["80", "81"] {
            listeners.append(
                try spawn(["nsenter", "--net=\(b.path)", "python3", "-m", "http.server", port, "--bind", "10.77.2.2"]))
        }
        try waitForListeners(in: b, ports: [":80", ":81"])

        func connects(_ port: Int) throws -> Bool {
            let probe = "exec 3<>/dev/tcp/10.77.2.2/\(port)"
            return try a.exec(["timeout", "-s", "KILL", "1.5", "bash", "-c", probe], check: false).status == 0
        }
        #expect(try connects(80))
        #expect(try connects(81))

        let table = NftTable(name: "tabby")
        let forward = NftChain(table: "tabby", name: "forward", hook: .forward, priority: 0, policy: .accept)
        let fromA = NftChain(table: "tabby", name: "from-a")
        let dispatch = NftSet(table: "tabby", name: "dispatch", keyType: [.ifname], dataType: .verdict)
        let dispatchA = NftSetElement.ifname("veth-a", .jump("from-a"))
        var batch = NftBatch()
        batch.add(table)
        batch.add(forward)
        batch.add(fromA)
        batch.add(dispatch)
        batch.addElements([dispatchA], to: dispatch)
        batch.add(
            NftRule(
                table: "tabby", chain: "forward", comment: "est", .match(.ctStateEstablishedRelated), .verdict(.accept))
        )
        batch.add(
            NftRule(table: "tabby", chain: "forward", comment: "dispatch", NftExpression.interfaceVmap("dispatch")))
        batch.add(
            NftRule(
                table: "tabby", chain: "from-a", comment: "deny-81", .match(.daddr(NftPrefix("10.77.2.2")!)),
                .match(.tcpDport(81)), .verdict(.drop)))
        batch.add(NftRule(table: "tabby", chain: "from-a", comment: "allow", .verdict(.accept)))
        let socket = try NftSocket.open(inNamespaceAt: node.path)
        try socket.commit(batch)

        #expect(try connects(80))
        #expect(!(try connects(81)))

        var undispatch = NftBatch()
        undispatch.deleteElements([dispatchA], from: dispatch)
        try socket.commit(undispatch)
        #expect(try connects(81))
        #expect(try connects(80))

        #expect(try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8) == rootForwarding)
    }

    /// Goal for later: the big batch under 50 ms, one element under 1 ms.
    @Test func commitTimings() throws {
        let namespace = try TestNamespace("time")
        defer { namespace.delete() }
        let socket = try NftSocket.open(inNamespaceAt: namespace.path)
        let clock = ContinuousClock()

        let addresses = NftSet(table: "tabby", name: "addresses", keyType: [.ipv4Addr])
        let cidrs = NftSet(table: "tabby", name: "cidrs", keyType: [.ipv4Addr], isInterval: true)
        func address(_ index: Int) -> [UInt8] {
            [10, UInt8(index >> 16 & 0xff), UInt8(index >> 8 & 0xff), UInt8(index & 0xff)]
        }
        var batch = NftBatch()
        batch.add(NftTable(name: "tabby"))
        for index in 0..<1_000 {
            batch.add(NftChain(table: "tabby", name: "c-\(index)"))
        }
        batch.add(addresses)
        batch.addElements((0..<10_000).map { NftSetElement(.address(address($0))) }, to: addresses)
        let encodeTime = try clock.measure { _ = try batch.encode(sequence: 1) }
        let bigCommit = try clock.measure { try socket.commit(batch) }
        let bytes = try batch.encode(sequence: 1).count

        var intervalBatch = NftBatch()
        intervalBatch.add(cidrs)
        // 10,000 disjoint /30s: 20,000 kernel entries (start + end each).
        intervalBatch.addElements(
            (0..<10_000).map { NftSetElement(.prefix(NftPrefix(address: address($0 * 4), length: 30)!)) }, to: cidrs)
        let intervalCommit = try clock.measure { try socket.commit(intervalBatch) }

        var single: [Duration] = []
        var singleInterval: [Duration] = []
        for round in 0..<20 {
            var add = NftBatch()
            add.addElements([NftSetElement(.address([10, 200, 0, UInt8(round)]))], to: addresses)
            single.append(try clock.measure { try socket.commit(add) })
            var addInterval = NftBatch()
            addInterval.addElements(
                [NftSetElement(.prefix(NftPrefix(address: [10, 201, 0, UInt8(round * 4)], length: 30)!))], to: cidrs)
            singleInterval.append(try clock.measure { try socket.commit(addInterval) })
        }
        #expect(try socket.chains(table: "tabby").count == 1_000)
        #expect(try socket.elements(of: addresses).count == 10_020)
        #expect(try socket.elements(of: cidrs).count == 10_020)

        func median(_ values: [Duration]) -> Duration { values.sorted()[values.count / 2] }
        print(
            """
            TIMING 1,000 chains + 10,000 ipv4 elements: encode \(encodeTime), commit \(bigCommit) (\(bytes) bytes)
            TIMING 10,000 interval /30 elements (new set, same table): commit \(intervalCommit)
            TIMING one element into the loaded hash set: median \(median(single)), min \(single.min()!)
            TIMING one /30 into the loaded interval set: median \(median(singleInterval)), min \(singleInterval.min()!)
            """)
    }

    private func waitForListeners(in namespace: TestNamespace, ports: [String]) throws {
        // Up to 20 s: python3's start took over 5 s once on a machine busy with two builds.
        for _ in 0..<400 {
            let listening = try namespace.exec(["ss", "-ltnH"]).output
            if ports.allSatisfy({ listening.contains("10.77.2.2\($0)") }) { return }
            usleep(50_000)
        }
        Issue.record("listeners did not start")
    }
}
