import CBPF
import Foundation
import Glibc
import Synchronization

/// The libbpf layer: errors, libbpf's log, and the embedded objects.
public enum BPF {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// A libbpf call or bpf(2) command failed; `operation` names it and its arguments, `log` holds
        /// libbpf's last messages (the verifier's complaint, a pinned map's mismatch).
        case system(errno: Int32, operation: String, log: [String] = [])
        /// An embedded object has no map or program of that name.
        case missing(kind: String, name: String)
        /// A key or value of the wrong size for the map.
        case size(map: String, what: String, expected: Int, got: Int)

        public var description: String {
            switch self {
            case .system(let code, let operation, let log):
                let tail = log.isEmpty ? "" : "\nlibbpf: " + log.joined(separator: "\nlibbpf: ")
                return "\(operation): \(String(cString: strerror(code))) (errno \(code))\(tail)"
            case .missing(let kind, let name):
                return "the BPF object has no \(kind) named \(name)"
            case .size(let map, let what, let expected, let got):
                return "map \(map): \(what) is \(got) bytes, the map's is \(expected)"
            }
        }
    }

    /// The `sz` to give a libbpf options struct: the end of its last field (`<type>__last_field`),
    /// not `MemoryLayout.size`. libbpf refuses an options struct whose bytes past its own last
    /// field are not zero, and the trailing padding of a Swift copy is not guaranteed to be
    /// (release builds left garbage there: "bpf_tc_hook has non-zero extra bytes").
    static func optionsSize<T, Field>(_ lastField: KeyPath<T, Field>) -> Int {
        MemoryLayout<T>.offset(of: lastField)! + MemoryLayout<Field>.size
    }

    /// libbpf's recent messages, newest last (libbpf logs through one process-wide callback).
    static let log = Mutex<[String]>([])

    /// Routes libbpf's messages into `log` (kept short) instead of stderr. Idempotent.
    static let installLogger: Void = {
        _ = libbpf_set_print { _, format, arguments in
            guard let format, let arguments else { return 0 }
            var buffer = [CChar](repeating: 0, count: 1024)
            let length = vsnprintf(&buffer, buffer.count, format, arguments)
            guard length > 0 else { return length }
            let line = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: .newlines)
            BPF.log.withLock { log in
                log.append(line)
                if log.count > 40 { log.removeFirst(log.count - 40) }
            }
            return length
        }
    }()

    /// Takes (and clears) libbpf's recent messages, for an error about the call that just failed.
    static func takeLog() -> [String] {
        log.withLock { log in
            defer { log.removeAll() }
            return log
        }
    }

    /// Throws `.system` with the errno of a libbpf call that returned a negative errno.
    static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(BPF.Error) {
        guard result < 0 else { return }
        throw .system(errno: -result, operation: operation(), log: takeLog())
    }

    /// Mounts bpffs at /sys/fs/bpf if nothing is mounted there yet (pins need it). Requires CAP_SYS_ADMIN.
    public static func mountFilesystemIfNeeded(at path: String = "/sys/fs/bpf") throws {
        var info = statfs()
        // BPF_FS_MAGIC
        if statfs(path, &info) == 0 && UInt(bitPattern: Int(info.f_type)) == 0xcafe_4a11 { return }
        guard mount("bpf", path, "bpf", 0, nil) == 0 else {
            throw Error.system(errno: errno, operation: "mount -t bpf bpf \(path)")
        }
    }
}

/// The BPF objects this module embeds, compiled from `bpf/*.bpf.c` by the BPFCompiler plugin.
enum BPFObjectFiles {
    /// `bpf/tabby_tc.bpf.c`: the tc program (conntrack, failsafe ports, policy verdicts from maps).
    static let tabbyTc: [UInt8] = Array(Data(base64Encoded: tabbyTcBase64)!)
}
