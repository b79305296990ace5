import TabbyCore
import Glibc

/// Network sysctls through /proc/sys/net. Files under /proc/sys/net show the network namespace of the
/// thread that opens them, so run these inside `NetworkNamespace.run` to reach a namespace's values.
/// Only `net.` keys are accepted: everything else is machine-wide.
public enum Sysctl {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// Reading or writing the key failed (ENOENT: no such key, e.g. the interface does not exist here).
        case system(key: String, errno: Int32, operation: String)
        /// Not under net.: not per namespace, so Tabby never writes it.
        case notPerNamespace(key: String)

        public var description: String {
            switch self {
            case .system(let key, let code, let operation):
                return "sysctl \(key): \(operation) failed: \(Netlink.errorText(code)) (errno \(code))"
            case .notPerNamespace(let key):
                return "sysctl \(key): only net.* sysctls are per network namespace"
            }
        }
    }

    /// Writes `value` to `key`. `key` is dotted (`net.ipv4.conf.cali1234.proxy_arp`) or, for interface
    /// names containing dots, slashed (`net/ipv4/conf/vxlan.calico/rp_filter`).
    public static func set(_ key: String, _ value: String) throws {
        let path = try path(of: key)
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error.system(key: key, errno: errno, operation: "open \(path)") }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        while true {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written == bytes.count { return }
            if written < 0 && errno == EINTR { continue }
            throw Error.system(key: key, errno: written < 0 ? errno : EIO, operation: "write \"\(value)\"")
        }
    }

    /// Reads `key`, without the trailing newline.
    public static func get(_ key: String) throws -> String {
        let path = try path(of: key)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error.system(key: key, errno: errno, operation: "open \(path)") }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw Error.system(key: key, errno: errno, operation: "read") }
            if count == 0 { break }
            contents += chunk.prefix(count)
        }
        var text = String(decoding: contents, as: UTF8.self)
        while text.last == "\n" { text.removeLast() }
        return text
    }

    static func path(of key: String) throws -> String {
        let relative = key.contains("/") ? key : key.replacingOccurrences(of: Character("."), with: Character("/"))
        guard relative.hasPrefix("net/"), !relative.split(separator: "/").contains("..") else {
            throw Error.notPerNamespace(key: key)
        }
        return "/proc/sys/" + relative
    }
}

extension String {
    /// Foundation-free replacement of every `target` character.
    fileprivate func replacingOccurrences(of target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
