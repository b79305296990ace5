import Glibc

extension TCProgram {
    /// The program's default timeouts per conntrack state (Calico's), used where `tabby_config`
    /// holds zero; the same numbers as `ct_timeout` in `bpf/tabby_tc.bpf.c`.
    static let defaultTimeoutSeconds: [ConntrackState: UInt64] = [
        .tcpSynSent: 20, .tcpEstablished: 3600, .tcpClosing: 30, .tcpReset: 40, .udp: 60, .icmp: 5, .other: 600,
    ]

    /// The timeout (ns) the program applies to each state now: the configured one, else the default.
    func effectiveTimeouts() throws -> [ConntrackState: UInt64] {
        let configured = try config.lookup(key: native(UInt32(0))) ?? []
        // tabby_config: seven u64 in the order of ConntrackState's raw values 1...7.
        func field(_ index: Int) -> UInt64 {
            guard configured.count >= (index + 1) * 8 else { return 0 }
            return UInt64(readNative(configured, index * 8)) | UInt64(readNative(configured, index * 8 + 4)) << 32
        }
        var result: [ConntrackState: UInt64] = [:]
        for (state, seconds) in Self.defaultTimeoutSeconds {
            let value = field(Int(state.rawValue) - 1)
            result[state] = value != 0 ? value : seconds * 1_000_000_000
        }
        return result
    }

    /// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Deletes the conntrack entries (both families) the program already treats as expired (the LRU map evicts only
    /// when full, so without this they stay until pushed out). An entry is read again just before
    /// its delete, so a flow whose packet refreshed it in between keeps it. Returns how many live
    /// entries remain and how many were removed.
    public func removeExpiredConntrack(now: UInt64 = TCProgram.monotonicNanoseconds()) throws -> (
        live: Int, removed: Int
    ) {
        let timeouts = try effectiveTimeouts()
        func expired(_ value: [UInt8]) -> Bool {
            let lastSeen = UInt64(readNative(value, 0)) | UInt64(readNative(value, 4)) << 32
            let state = ConntrackState(rawValue: value[8]) ?? .other
            return now > lastSeen && now - lastSeen > timeouts[state, default: 600 * 1_000_000_000]
        }
        var live = 0
        var removed = 0
        for map in [conntrack, conntrack6] {
            for key in try map.keys() {
                guard let value = try map.lookup(key: key) else { continue }
                if expired(value), let again = try map.lookup(key: key), expired(again) {
                    if try map.delete(key: key) { removed += 1 }
                } else {
                    live += 1
                }
            }
        }
        return (live, removed)
    }
}
