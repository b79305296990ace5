import CBPF
import Glibc

/// A map of a loaded `BPFObject` (its fd is valid while the object lives), read and written as raw
/// key and value bytes in the layout the BPF C declares. Typed views (`TCMaps`) sit on top.
public struct BPFMap: Sendable {
    public let name: String
    public let fd: Int32
    public let type: bpf_map_type
    public let keySize: Int
    public let valueSize: Int

    /// Per-CPU maps hold one value (rounded up to 8 bytes) per possible CPU.
    public var isPerCPU: Bool {
        [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH].contains(type)
    }

    /// Bytes a lookup returns: `valueSize`, or one 8-byte-aligned slot per possible CPU.
    public var lookupSize: Int {
        isPerCPU ? (valueSize + 7) / 8 * 8 * Int(max(libbpf_num_possible_cpus(), 1)) : valueSize
    }

    public enum UpdateMode: UInt64, Sendable {
        case any = 0  // BPF_ANY
        case create = 1  // BPF_NOEXIST
        case replace = 2  // BPF_EXIST
    }

    public func update(key: [UInt8], value: [UInt8], mode: UpdateMode = .any) throws(BPF.Error) {
        try checkKey(key)
        guard value.count == valueSize else {
            throw .size(map: name, what: "value", expected: valueSize, got: value.count)
        }
        let result = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in bpf_map_update_elem(fd, k.baseAddress, v.baseAddress, mode.rawValue) }
        }
        try BPF.check(result, "bpf_map_update_elem(\(name))")
    }

    /// The value for `key`, nil if absent. For per-CPU maps, every CPU's slot in turn (`lookupSize`).
    public func lookup(key: [UInt8]) throws(BPF.Error) -> [UInt8]? {
        try checkKey(key)
        var value = [UInt8](repeating: 0, count: lookupSize)
        let result = key.withUnsafeBytes { k in
            value.withUnsafeMutableBytes { v in bpf_map_lookup_elem(fd, k.baseAddress, v.baseAddress) }
        }
        if result == -ENOENT { return nil }
        try BPF.check(result, "bpf_map_lookup_elem(\(name))")
        return value
    }

    /// Deletes `key`; false if it was not there.
    @discardableResult
    public func delete(key: [UInt8]) throws(BPF.Error) -> Bool {
        try checkKey(key)
        let result = key.withUnsafeBytes { k in bpf_map_delete_elem(fd, k.baseAddress) }
        if result == -ENOENT { return false }
        try BPF.check(result, "bpf_map_delete_elem(\(name))")
        return true
    }

    /// Every key, in the kernel's iteration order (not for LPM tries' semantics, only their entries).
    public func keys() throws(BPF.Error) -> [[UInt8]] {
        var keys: [[UInt8]] = []
        var next = [UInt8](repeating: 0, count: keySize)
        var previous: [UInt8]? = nil
        while true {
            let result: Int32
            if let current = previous {
                result = current.withUnsafeBytes { p in
                    next.withUnsafeMutableBytes { n in bpf_map_get_next_key(fd, p.baseAddress, n.baseAddress) }
                }
            } else {
                result = next.withUnsafeMutableBytes { n in bpf_map_get_next_key(fd, nil, n.baseAddress) }
            }
            if result == -ENOENT { return keys }
            try BPF.check(result, "bpf_map_get_next_key(\(name))")
            keys.append(next)
            previous = next
        }
    }

    private func checkKey(_ key: [UInt8]) throws(BPF.Error) {
        guard key.count == keySize else { throw .size(map: name, what: "key", expected: keySize, got: key.count) }
    }
}
