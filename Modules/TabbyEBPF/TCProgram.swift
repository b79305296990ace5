import Glibc
import TabbyCore

/// The tc program (`bpf/tabby_tc.bpf.c`) loaded once per node, with typed access to its maps.
///
/// The byte layouts here mirror the C structs; `TCProgramLayoutTests` pins them. Map names are
/// the pin names under the pin root (`/sys/fs/bpf/tabby/<node>/` for the agent).
public final class TCProgram: Sendable {
    public let object: BPFObject
    /// Attach at tc ingress (on a workload's veth: its egress policy).
    public let ingress: BPFProgram
    /// Attach at tc egress (on a workload's veth: its ingress policy).
    public let egress: BPFProgram
    let endpoints: BPFMap
    let ports: BPFMap
    let addresses: BPFMap
    /// IPv6 peers (`tabby_addrs6`): the address tables of IPv6 policy programs.
    let addresses6: BPFMap
    let verdicts: BPFMap
    let sourcePorts: BPFMap
    let failsafe: BPFMap
    let conntrack: BPFMap
    /// IPv6 flows (`tabby_ct6`): the same values and states as `conntrack`.
    let conntrack6: BPFMap
    let config: BPFMap
    let counterMap: BPFMap
    let hostAddressMap: BPFMap
    let overlayPeerMap: BPFMap

    /// Pins an earlier Tabby left whose layout this program no longer has (libbpf refused to reuse
    /// them): removed before the load went through, so their maps start empty. Empty for most loads.
    public let replacedPins: [String]

    /// Loads the embedded object; maps pinned under `pinRoot` are reused (see `BPFObject`). A
    /// pinned map of another layout (a node upgraded from an older Tabby: the endpoint entry grew
    /// with IPv6) is unpinned and made anew, that map alone: the others, conntrack included, are
    /// still reused, so established flows survive the upgrade (`replacedPins` names what went).
    public init(pinRoot: String?) throws {
        var replaced: [String] = []
        while true {
            do {
                object = try BPFObject(elf: BPFObjectFiles.tabbyTc, name: "tabby_tc", pinRoot: pinRoot)
                break
            } catch BPF.Error.system(let code, let operation, let log) {
                // libbpf: "couldn't reuse pinned map at '<path>': parameter mismatch".
                let marker = "couldn't reuse pinned map at '"
                guard let pinRoot, let line = log.last(where: { $0.contains(marker) }),
                    let path = line.components(separatedBy: marker).last?.components(separatedBy: "'").first,
                    path.hasPrefix(pinRoot + "/"), !replaced.contains(path), unlink(path) == 0
                else { throw BPF.Error.system(errno: code, operation: operation, log: log) }
                replaced.append(path)
            }
        }
        replacedPins = replaced
        ingress = try object.program("tabby_tc_ingress")
        egress = try object.program("tabby_tc_egress")
        endpoints = try object.map("tabby_endpoints")
        ports = try object.map("tabby_ports")
        addresses = try object.map("tabby_addrs")
        addresses6 = try object.map("tabby_addrs6")
        verdicts = try object.map("tabby_verdicts")
        sourcePorts = try object.map("tabby_sports")
        failsafe = try object.map("tabby_failsafe")
        conntrack = try object.map("tabby_ct")
        conntrack6 = try object.map("tabby_ct6")
        config = try object.map("tabby_config")
        counterMap = try object.map("tabby_counters")
        hostAddressMap = try object.map("tabby_host_addrs")
        overlayPeerMap = try object.map("tabby_overlay_peers")
    }

    // MARK: Endpoints

    /// What the program knows about an interface; an interface without an entry drops everything.
    public struct Endpoint: Equatable, Sendable {
        /// Policy program for IPv4 traffic to the endpoint (0: none, which drops).
        public var ingressProgram: UInt32
        /// Policy program for IPv4 traffic from the endpoint.
        public var egressProgram: UInt32
        /// A host endpoint: hooks keep their natural direction and failsafe ports apply (and IPv6
        /// drops: the program knows the host's IPv4 addresses only).
        public var isHost: Bool
        /// Policy program for IPv6 traffic to the endpoint (0: none, which drops all but neighbour
        /// discovery); its address table is in `tabby_addrs6`.
        public var ingress6Program: UInt32
        /// Policy program for IPv6 traffic from the endpoint.
        public var egress6Program: UInt32

        public init(
            ingressProgram: UInt32, egressProgram: UInt32, isHost: Bool = false, ingress6Program: UInt32 = 0,
            egress6Program: UInt32 = 0
        ) {
            self.ingressProgram = ingressProgram
            self.egressProgram = egressProgram
            self.isHost = isHost
            self.ingress6Program = ingress6Program
            self.egress6Program = egress6Program
        }

        var bytes: [UInt8] {
            native(ingressProgram) + native(egressProgram) + native(UInt32(isHost ? 1 : 0)) + native(ingress6Program)
                + native(egress6Program)
        }

        /// The policy program ids it names (zeros too).
        var programs: [UInt32] { [ingressProgram, egressProgram, ingress6Program, egress6Program] }
    }

    public func setEndpoint(ifindex: Int32, _ endpoint: Endpoint) throws {
        try endpoints.update(key: native(UInt32(ifindex)), value: endpoint.bytes)
    }

    @discardableResult
    public func removeEndpoint(ifindex: Int32) throws -> Bool {
        try endpoints.delete(key: native(UInt32(ifindex)))
    }

    // MARK: Policy tables

    /// A class id meaning "every other combination" in `setVerdict`: the program's default.
    public static let anyClass: UInt32 = 0xffff_ffff
    /// Set in a port class (`setPortClass`): the class depends on the source port too, and the
    /// program refines it through `setSourcePortClass` before the verdict.
    public static let bySourcePort: UInt32 = 0x8000_0000

    public struct Verdict: Hashable, Sendable, CustomStringConvertible {
        public enum Action: UInt32, Hashable, Sendable {
            case allow = 1
            case deny = 2
        }
        public var action: Action
        /// An id user space maps back to the tier, policy and rule that decided.
        public var rule: UInt32

        public init(_ action: Action, rule: UInt32 = 0) {
            self.action = action
            self.rule = rule
        }

        public var description: String { "\(action == .allow ? "allow" : "deny") (rule 0x\(String(rule, radix: 16)))" }
    }

    /// Maps `protocol` (nil: every protocol) and the destination ports in `ports` (nil: every port;
    /// for ICMP the value is type << 8 | code) of policy program `program` to `portClass`. The most
    /// specific entry wins, so a program's catch-all is `protocol: nil`.
    public func setPortClass(program: UInt32, protocol: UInt8?, ports: ClosedRange<UInt16>?, portClass: UInt32) throws {
        for key in Self.portKeys(program: program, protocol: `protocol`, ports: ports) {
            try self.ports.update(key: key, value: native(portClass))
        }
    }

    /// Refines `portClass` (as `setPortClass` wrote it, with `bySourcePort`) of policy program
    /// `program`, for `protocol` (nil: every protocol) and the source ports in `ports` (nil: every
    /// port), to `refinedClass`: the port class the verdicts name. The program reads source ports
    /// of TCP and UDP only (any other protocol finds the `protocol: nil` entry).
    public func setSourcePortClass(
        program: UInt32, portClass: UInt32, protocol: UInt8?, ports: ClosedRange<UInt16>?, refinedClass: UInt32
    ) throws {
        for key in Self.sourcePortKeys(program: program, portClass: portClass, protocol: `protocol`, ports: ports) {
            try sourcePorts.update(key: key, value: native(refinedClass))
        }
    }

    /// LPM keys of `tabby_sports`: prefixlen (host order), program, port class, protocol (16 bits),
    /// source port, the last four big endian; prefix 64 is the class's catch-all, 80 a protocol.
    static func sourcePortKeys(program: UInt32, portClass: UInt32, protocol: UInt8?, ports: ClosedRange<UInt16>?)
        -> [[UInt8]]
    {
        let head = big(program) + big(portClass)
        guard let `protocol` else { return [native(UInt32(64)) + head + [0, 0, 0, 0]] }
        guard let ports else { return [native(UInt32(80)) + head + big(UInt16(`protocol`)) + [0, 0]] }
        return portPrefixes(ports).map { value, bits in
            native(UInt32(80 + bits)) + head + big(UInt16(`protocol`)) + big(value)
        }
    }

    /// Maps the peer addresses in `cidr` (the source for ingress, the destination for egress) of
    /// `program` to `addressClass`; longest prefix wins. `0.0.0.0/0` is the program's catch-all,
    /// `::/0` an IPv6 program's (IPv6 CIDRs go to `tabby_addrs6`).
    public func setAddressClass(program: UInt32, cidr: CIDR, addressClass: UInt32) throws {
        try addressMap(cidr).update(key: Self.addressKey(program: program, cidr: cidr), value: native(addressClass))
    }

    func addressMap(_ cidr: CIDR) -> BPFMap { cidr.family == .v4 ? addresses : addresses6 }

    /// The verdict of `program` for a packet in `portClass` and `addressClass` (both `anyClass`:
    /// the default for combinations not listed).
    public func setVerdict(program: UInt32, portClass: UInt32, addressClass: UInt32, _ verdict: Verdict) throws {
        try verdicts.update(
            key: native(program) + native(portClass) + native(addressClass),
            value: native(verdict.action.rawValue) + native(verdict.rule))
    }

    /// LPM keys for a port class entry: prefixlen (host order), program, protocol (16 bits), port, the
    /// last three big endian. A port range becomes the fewest aligned prefixes that cover it.
    static func portKeys(program: UInt32, protocol: UInt8?, ports: ClosedRange<UInt16>?) -> [[UInt8]] {
        guard let `protocol` else { return [native(UInt32(32)) + big(program) + [0, 0, 0, 0]] }
        guard let ports else { return [native(UInt32(48)) + big(program) + big(UInt16(`protocol`)) + [0, 0]] }
        return portPrefixes(ports).map { value, bits in
            native(UInt32(48 + bits)) + big(program) + big(UInt16(`protocol`)) + big(value)
        }
    }

    /// The fewest (value, prefix bits) pairs whose 16-bit prefixes cover exactly `range`.
    static func portPrefixes(_ range: ClosedRange<UInt16>) -> [(value: UInt16, bits: Int)] {
        var result: [(UInt16, Int)] = []
        var low = UInt32(range.lowerBound)
        let high = UInt32(range.upperBound)
        while low <= high {
            var size = low == 0 ? 16 : min(16, low.trailingZeroBitCount)
            while size > 0 && low + (1 << size) - 1 > high { size -= 1 }
            result.append((UInt16(low), 16 - size))
            low += 1 << size
        }
        return result
    }

    /// The key in `tabby_addrs` (IPv4: 12 bytes) or `tabby_addrs6` (IPv6: 24 bytes): prefixlen
    /// (host order), program (big endian), the address in network order.
    static func addressKey(program: UInt32, cidr: CIDR) -> [UInt8] {
        switch cidr.network {
        case .v4(let network): return native(UInt32(32 + cidr.prefixLength)) + big(program) + network.bytes
        case .v6(let network): return native(UInt32(32 + cidr.prefixLength)) + big(program) + network.bytes
        }
    }

    // MARK: Failsafe ports

    public enum Direction: UInt8, Sendable {
        /// Traffic to the host.
        case inbound = 0
        /// Traffic from the host.
        case outbound = 1
    }

    /// Opens `protocol` (6 or 17) destination `port` in `direction` on every host endpoint, ahead of policy.
    public func setFailsafe(_ direction: Direction, protocol: UInt8, port: UInt16) throws {
        try failsafe.update(key: [direction.rawValue, `protocol`] + native(port), value: [1])
    }

    // MARK: Host endpoints

    /// The skb->mark bit the program sets on every packet a workload sends (tc ingress of its veth),
    /// so that a host endpoint knows the packet was forwarded even after masquerade gave it the
    /// host's address.
    public static let fromWorkloadMark: UInt32 = 0x0800_0000

    /// The node's own addresses (`tabby_host_addrs`): a packet on a host endpoint is to the host
    /// when its destination is one of them (or multicast), from the host when its source is one and
    /// it does not carry `fromWorkloadMark`. Everything else is forwarded and passes without policy.
    public func hostAddresses() throws -> Set<IPv4Address> {
        Set(try hostAddressMap.keys().map { IPv4Address(readBig($0, 0)) })
    }

    /// Makes `tabby_host_addrs` hold exactly `addresses`: adds the missing ones first, then deletes
    /// the others (an address present in both is never briefly missing). Returns whether it changed.
    @discardableResult
    public func setHostAddresses(_ addresses: Set<IPv4Address>) throws -> Bool {
        let present = try hostAddresses()
        for address in addresses.subtracting(present).sorted() {
            try hostAddressMap.update(key: address.bytes, value: [1])
        }
        for address in present.subtracting(addresses) { try hostAddressMap.delete(key: address.bytes) }
        return present != addresses
    }

    /// One other node's overlay traffic (`tabby_overlay_peers`): UDP to `port` from `address` (to
    /// the host) or from the host to `address` at `port` passes on host endpoints ahead of policy.
    public struct OverlayPeer: Hashable, Sendable, Comparable {
        public var address: IPv4Address
        public var port: UInt16

        public init(address: IPv4Address, port: UInt16) {
            self.address = address
            self.port = port
        }

        public static func < (a: OverlayPeer, b: OverlayPeer) -> Bool { (a.address, a.port) < (b.address, b.port) }

        /// The key: the address in network order, the port in host order, two bytes of padding.
        var key: [UInt8] { address.bytes + native(port) + [0, 0] }
    }

    public func overlayPeers() throws -> Set<OverlayPeer> {
        Set(
            try overlayPeerMap.keys().map {
                OverlayPeer(address: IPv4Address(readBig($0, 0)), port: UInt16($0[4]) | UInt16($0[5]) << 8)
            })
    }

    /// Makes `tabby_overlay_peers` hold exactly `peers` (added first, then the others deleted).
    /// Returns whether it changed.
    @discardableResult
    public func setOverlayPeers(_ peers: Set<OverlayPeer>) throws -> Bool {
        let present = try overlayPeers()
        for peer in peers.subtracting(present).sorted() { try overlayPeerMap.update(key: peer.key, value: [1]) }
        for peer in present.subtracting(peers) { try overlayPeerMap.delete(key: peer.key) }
        return present != peers
    }

    // MARK: Conntrack

    public enum ConntrackState: UInt8, Sendable {
        case tcpSynSent = 1
        case tcpEstablished = 2
        case tcpClosing = 3
        case tcpReset = 4
        case udp = 5
        case icmp = 6
        case other = 7
    }

    /// One flow on one endpoint interface; (addressA, portA) <= (addressB, portB). IPv4 flows are
    /// in `tabby_ct`, IPv6 ones in `tabby_ct6`.
    public struct ConntrackEntry: Equatable, Sendable {
        public var ifindex: Int32
        public var protocolNumber: UInt8
        public var addressA: IPAddress
        public var portA: UInt16
        public var addressB: IPAddress
        public var portB: UInt16
        public var state: ConntrackState?
        /// The first packet came from side b.
        public var openedByB: Bool
        /// The side that did not open the flow has sent a packet.
        public var replied: Bool
        /// bpf_ktime_get_ns (CLOCK_MONOTONIC) of the last packet.
        public var lastSeen: UInt64
    }

    /// The flows of both families, IPv4 first.
    public func conntrackEntries() throws -> [ConntrackEntry] {
        func entry(_ key: [UInt8], _ value: [UInt8], a: IPAddress, b: IPAddress, ports: Int) -> ConntrackEntry {
            ConntrackEntry(
                ifindex: Int32(bitPattern: readNative(key, 0)), protocolNumber: key[ports + 4],
                addressA: a, portA: UInt16(key[ports]) << 8 | UInt16(key[ports + 1]),
                addressB: b, portB: UInt16(key[ports + 2]) << 8 | UInt16(key[ports + 3]),
                state: ConntrackState(rawValue: value[8]), openedByB: value[9] != 0, replied: value[10] != 0,
                lastSeen: UInt64(readNative(value, 0)) | UInt64(readNative(value, 4)) << 32)
        }
        let v4 = try conntrack.keys().compactMap { key -> ConntrackEntry? in
            guard let value = try conntrack.lookup(key: key) else { return nil }
            return entry(
                key, value, a: .v4(IPv4Address(readBig(key, 4))), b: .v4(IPv4Address(readBig(key, 8))), ports: 12)
        }
        let v6 = try conntrack6.keys().compactMap { key -> ConntrackEntry? in
            guard let value = try conntrack6.lookup(key: key),
                let a = IPv6Address(bytes: key[4..<20]), let b = IPv6Address(bytes: key[20..<36])
            else { return nil }
            return entry(key, value, a: .v6(a), b: .v6(b), ports: 36)
        }
        return v4 + v6
    }

    /// Conntrack timeouts; nil keeps the program's default (Calico's: SYN 20 s, established 1 h,
    /// FIN 30 s, RST 40 s, UDP 60 s, ICMP 5 s, other 600 s).
    public struct Timeouts: Equatable, Sendable {
        public var tcpSyn: Duration?
        public var tcpEstablished: Duration?
        public var tcpClosing: Duration?
        public var tcpReset: Duration?
        public var udp: Duration?
        public var icmp: Duration?
        public var other: Duration?

        public init(
            tcpSyn: Duration? = nil, tcpEstablished: Duration? = nil, tcpClosing: Duration? = nil,
            tcpReset: Duration? = nil, udp: Duration? = nil, icmp: Duration? = nil, other: Duration? = nil
        ) {
            self.tcpSyn = tcpSyn
            self.tcpEstablished = tcpEstablished
            self.tcpClosing = tcpClosing
            self.tcpReset = tcpReset
            self.udp = udp
            self.icmp = icmp
            self.other = other
        }

        var bytes: [UInt8] {
            [tcpSyn, tcpEstablished, tcpClosing, tcpReset, udp, icmp, other].flatMap { duration -> [UInt8] in
                guard let duration else { return native(UInt64(0)) }
                let (seconds, attoseconds) = duration.components
                return native(UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
            }
        }
    }

    public func setTimeouts(_ timeouts: Timeouts) throws {
        try config.update(key: native(UInt32(0)), value: timeouts.bytes)
    }

    // MARK: Counters

    /// Why packets passed or were dropped (`tabby_counters`, summed over CPUs).
    public enum Counter: UInt32, CaseIterable, Sendable {
        case conntrackHit = 0
        case policyAllow = 1
        case policyDeny = 2
        case unknownInterface = 3
        case failsafe = 4
        case nonIP = 5
        case unsupported = 6
        case malformed = 7
        case noProgram = 8
        case conntrackRelated = 9
        /// On a host endpoint, a packet neither to nor from the host (forwarded): passed without policy.
        case hostForwarded = 10
        /// On a host endpoint, VXLAN from or to another node of the cluster: passed ahead of policy.
        case overlayPeer = 11

        /// The case name in snake case (`policyDeny` -> `policy_deny`), for metrics.
        public var metricName: String {
            String("\(self)".flatMap { $0.isUppercase ? ["_"] + $0.lowercased() : [$0] })
        }
    }

    /// The counters, summed over CPUs; those never counted are absent.
    public func counters() throws -> [Counter: UInt64] {
        var result: [Counter: UInt64] = [:]
        for counter in Counter.allCases {
            guard let slots = try counterMap.lookup(key: native(counter.rawValue)) else { continue }
            result[counter] = stride(from: 0, to: slots.count, by: 8).reduce(UInt64(0)) { sum, offset in
                sum + (UInt64(readNative(slots, offset)) | UInt64(readNative(slots, offset + 4)) << 32)
            }
        }
        return result
    }

}

/// A value's bytes in host order (the order of the C struct's host-order fields).
func native<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

/// A value's bytes in network order.
func big<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

func readNative(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
}

func readBig(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bigEndian: readNative(bytes, offset))
}

extension TCProgram {
    /// Writes policy program `program`'s tables. Write a new id's tables before an endpoint entry
    /// points at it, and remove the old id's after: no packet meets a half-written program.
    public func writePolicy(_ tables: PolicyTables, program: UInt32) throws {
        for entry in tables.ports {
            try setPortClass(
                program: program, protocol: entry.protocolNumber, ports: entry.ports, portClass: entry.portClass)
        }
        for entry in tables.sourcePorts {
            try setSourcePortClass(
                program: program, portClass: entry.portClass, protocol: entry.protocolNumber, ports: entry.ports,
                refinedClass: entry.refinedClass)
        }
        for entry in tables.addresses {
            try setAddressClass(program: program, cidr: entry.cidr, addressClass: entry.addressClass)
        }
        for entry in tables.verdicts {
            try setVerdict(
                program: program, portClass: entry.portClass, addressClass: entry.addressClass, entry.verdict)
        }
        try setVerdict(program: program, portClass: Self.anyClass, addressClass: Self.anyClass, tables.defaultVerdict)
    }

    /// Moves policy program `program`'s address table from `old`'s entries to `new`'s: writes the
    /// new and changed entries, then deletes those `new` lacks. For tables that differ only in
    /// addresses (`differsOnlyInAddresses`): each entry change is atomic on its own.
    public func updateAddresses(from old: PolicyTables, to new: PolicyTables, program: UInt32) throws {
        let before = Dictionary(old.addresses.map { ($0.cidr, $0.addressClass) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.addresses.map { ($0.cidr, $0.addressClass) }, uniquingKeysWith: { a, _ in a })
        for (cidr, addressClass) in after where before[cidr] != addressClass {
            try setAddressClass(program: program, cidr: cidr, addressClass: addressClass)
        }
        for cidr in before.keys where after[cidr] == nil {
            try addressMap(cidr).delete(key: Self.addressKey(program: program, cidr: cidr))
        }
    }

    /// Deletes what `writePolicy(tables, program:)` wrote. Entries already gone are not an error.
    public func removePolicy(_ tables: PolicyTables, program: UInt32) throws {
        try verdicts.delete(key: native(program) + native(Self.anyClass) + native(Self.anyClass))
        for entry in tables.verdicts {
            try verdicts.delete(key: native(program) + native(entry.portClass) + native(entry.addressClass))
        }
        for entry in tables.addresses {
            try addressMap(entry.cidr).delete(key: Self.addressKey(program: program, cidr: entry.cidr))
        }
        for entry in tables.ports {
            for key in Self.portKeys(program: program, protocol: entry.protocolNumber, ports: entry.ports) {
                try ports.delete(key: key)
            }
        }
        for entry in tables.sourcePorts {
            for key in Self.sourcePortKeys(
                program: program, portClass: entry.portClass, protocol: entry.protocolNumber, ports: entry.ports)
            {
                try sourcePorts.delete(key: key)
            }
        }
    }
}

extension TCProgram {
    /// One key and value of a policy program's tables, in the map it belongs to.
    public struct PolicyEntry: Hashable, Sendable {
        public var map: String
        public var key: [UInt8]
        public var value: [UInt8]
    }

    /// Exactly what `writePolicy(tables, program:)` writes.
    public func policyEntries(_ tables: PolicyTables, program: UInt32) throws -> Set<PolicyEntry> {
        var entries = Set<PolicyEntry>()
        for entry in tables.ports {
            for key in Self.portKeys(program: program, protocol: entry.protocolNumber, ports: entry.ports) {
                entries.insert(.init(map: ports.name, key: key, value: native(entry.portClass)))
            }
        }
        for entry in tables.sourcePorts {
            for key in Self.sourcePortKeys(
                program: program, portClass: entry.portClass, protocol: entry.protocolNumber, ports: entry.ports)
            {
                entries.insert(.init(map: sourcePorts.name, key: key, value: native(entry.refinedClass)))
            }
        }
        for entry in tables.addresses {
            entries.insert(
                .init(
                    map: addressMap(entry.cidr).name, key: Self.addressKey(program: program, cidr: entry.cidr),
                    value: native(entry.addressClass)))
        }
        for entry in tables.verdicts + [
            .init(portClass: Self.anyClass, addressClass: Self.anyClass, verdict: tables.defaultVerdict)
        ] {
            entries.insert(
                .init(
                    map: verdicts.name, key: native(program) + native(entry.portClass) + native(entry.addressClass),
                    value: native(entry.verdict.action.rawValue) + native(entry.verdict.rule)))
        }
        return entries
    }

    /// Every entry of policy program `program` in the maps (to compare with `policyEntries`).
    public func readPolicy(_ program: UInt32) throws -> Set<PolicyEntry> {
        var entries = Set<PolicyEntry>()
        for (map, matches) in policyMaps(program) {
            for key in try map.keys() where matches(key) {
                if let value = try map.lookup(key: key) { entries.insert(.init(map: map.name, key: key, value: value)) }
            }
        }
        return entries
    }

    /// Deletes every entry of policy program `program`, whatever wrote it.
    public func removePolicy(program: UInt32) throws {
        for (map, matches) in policyMaps(program) {
            for key in try map.keys() where matches(key) { try map.delete(key: key) }
        }
    }

    /// The ids of every policy program with entries in the maps.
    public func policyProgramIDs() throws -> Set<UInt32> {
        var ids = Set<UInt32>()
        for key in try ports.keys() + sourcePorts.keys() + addresses.keys() + addresses6.keys() {
            ids.insert(UInt32(bigEndian: load(key, 4)))
        }
        for key in try verdicts.keys() { ids.insert(load(key, 0)) }
        return ids
    }

    /// The endpoint entries, by ifindex.
    public func endpointEntries() throws -> [Int32: Endpoint] {
        var result: [Int32: Endpoint] = [:]
        for key in try endpoints.keys() {
            guard let value = try endpoints.lookup(key: key) else { continue }
            result[Int32(bitPattern: load(key, 0))] = Endpoint(
                ingressProgram: load(value, 0), egressProgram: load(value, 4), isHost: load(value, 8) & 1 != 0,
                ingress6Program: load(value, 12), egress6Program: load(value, 16))
        }
        return result
    }

    private func policyMaps(_ program: UInt32) -> [(BPFMap, ([UInt8]) -> Bool)] {
        let bigID = big(program)
        let nativeID = native(program)
        return [
            (ports, { Array($0[4..<8]) == bigID }), (sourcePorts, { Array($0[4..<8]) == bigID }),
            (addresses, { Array($0[4..<8]) == bigID }), (addresses6, { Array($0[4..<8]) == bigID }),
            (verdicts, { Array($0[0..<4]) == nativeID }),
        ]
    }
}

private func load(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
}
