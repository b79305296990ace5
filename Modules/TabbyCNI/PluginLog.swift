import Foundation
import TabbyCore

/// The plugin's log: Calico's `log_level` and `log_file_path` keys. Never stdout (the runtime
/// reads the result there); stderr unless a file is configured. Lines are appended whole with one
/// write each, so concurrent plugin processes do not interleave within a line.
public struct PluginLog: Sendable {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug, info, warning, error
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        /// Calico's names, case-insensitive (`warn` and `warning` both).
        public init?(calicoName: String) {
            switch calicoName.lowercased() {
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warning
            case "error", "fatal", "panic": self = .error
            default: return nil
            }
        }
    }

    public var level: Level
    public var path: String?
    public var context: String

    /// When this process started (CLOCK_MONOTONIC, from /proc/self/stat's start time).
    static let processStart: UInt64 = {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let fields = stat.split(separator: ")").last?.split(separator: " "), fields.count > 20,
            let ticks = UInt64(fields[19])
        else { return clock_gettime_nsec_np_monotonic() }
        return ticks * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }()

    public init(level: Level, path: String? = nil, context: String = "") {
        self.level = level
        self.path = path
        self.context = context
    }

    /// From a network config: `log_level` (default warning) and `log_file_path`.
    public init(config: NetworkConfig, context: String) throws(CNIError) {
        let name = try config.string("log_level") ?? "warning"
        guard let level = Level(calicoName: name) else {
            throw .invalidConfig("log_level must be debug, info, warning or error (got \(name))")
        }
        let path = try config.string("log_file_path").flatMap { $0.isEmpty ? nil : $0 }
        self.init(level: level, path: path, context: context)
    }

    public func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    public func info(_ message: @autoclosure () -> String) { write(.info, message) }
    public func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    public func error(_ message: @autoclosure () -> String) { write(.error, message) }

    private func write(_ level: Level, _ message: () -> String) {
        guard level >= self.level else { return }
        let stamp = Timestamp.format(Date())
        // Milliseconds since the process started: where an ADD spends its time, at debug level.
        let elapsed = Double(clock_gettime_nsec_np_monotonic() - Self.processStart) / 1e6
        let line = Array("\(stamp) +\(Self.oneDecimal(elapsed))ms [\(level)] \(context) \(message())\n".utf8)
        var fd: Int32 = 2
        if let path {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0 { fd = 2 }
        }
        _ = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if fd != 2 { close(fd) }
    }
}

extension PluginLog {
    /// `12.3` (String(format:) goes through Foundation's formatter on every line).
    static func oneDecimal(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock /proc's process start times are measured on).
func clock_gettime_nsec_np_monotonic() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
