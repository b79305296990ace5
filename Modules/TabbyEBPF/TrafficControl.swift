import CBPF
import Glibc
import TabbyNetlink

/// tc clsact attachment of BPF programs (libbpf 1.1 has no tcx API). Tabby's filter is always
/// handle `handle`, priority `priority`, so a restarted agent replaces its own filter in place and
/// never touches another program's.
public enum TrafficControl {
    public enum Hook: Sendable, CaseIterable {
        /// Packets the interface receives (on a workload's host-side veth: from the workload).
        case ingress
        /// Packets the interface sends (on a workload's host-side veth: to the workload).
        case egress

        var attachPoint: bpf_tc_attach_point { self == .ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS }
    }

    /// Tabby's tc filter handle ("7ab": tab) and priority.
    public static let handle: UInt32 = 0x7ab
    public static let priority: UInt32 = 1

    /// Attaches `program` to `interface` at `hook`, creating the clsact qdisc if needed and replacing
    /// Tabby's earlier filter there. `namespace` is a network namespace path (`/run/netns/X`); the
    /// work runs on a dedicated thread inside it. nil: the calling thread's namespace. Requires
    /// CAP_NET_ADMIN and CAP_BPF.
    public static func attach(
        _ program: BPFProgram, to interface: String, hook: Hook, namespace: String?
    ) throws {
        let fd = program.fd
        try inNamespace(namespace) {
            let both = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
            var tcHook = try makeHook(interface, attachPoint: both)
            let created = bpf_tc_hook_create(&tcHook)
            if created != -EEXIST { try BPF.check(created, "bpf_tc_hook_create(\(interface), clsact)") }
            tcHook.attach_point = hook.attachPoint
            var options = bpf_tc_opts()
            options.sz = BPF.optionsSize(\bpf_tc_opts.priority)
            options.prog_fd = fd
            options.handle = handle
            options.priority = priority
            options.flags = BPF_TC_F_REPLACE.rawValue
            try BPF.check(bpf_tc_attach(&tcHook, &options), "bpf_tc_attach(\(interface), \(hook), \(program.name))")
        }
    }

    /// Removes Tabby's filter from `interface` at `hook`. Idempotent: a missing filter, qdisc or
    /// interface is not an error. The clsact qdisc stays (other programs may use it).
    public static func detach(from interface: String, hook: Hook, namespace: String?) throws {
        try inNamespace(namespace) {
            guard var tcHook = try? makeHook(interface, attachPoint: hook.attachPoint) else { return }
            var options = bpf_tc_opts()
            options.sz = BPF.optionsSize(\bpf_tc_opts.priority)
            options.handle = handle
            options.priority = priority
            let result = bpf_tc_detach(&tcHook, &options)
            if result == -ENOENT || result == -EINVAL { return }
            try BPF.check(result, "bpf_tc_detach(\(interface), \(hook))")
        }
    }

    /// The id of the program in Tabby's filter on `interface` at `hook`, nil when there is none.
    public static func attachedProgramID(on interface: String, hook: Hook, namespace: String?) throws -> UInt32? {
        try inNamespace(namespace) {
            var tcHook = try makeHook(interface, attachPoint: hook.attachPoint)
            var options = bpf_tc_opts()
            options.sz = BPF.optionsSize(\bpf_tc_opts.priority)
            options.handle = handle
            options.priority = priority
            let result = bpf_tc_query(&tcHook, &options)
            if result == -ENOENT || result == -EINVAL { return nil }
            try BPF.check(result, "bpf_tc_query(\(interface), \(hook))")
            return options.prog_id
        }
    }

    /// The interface's index in the calling thread's namespace.
    private static func makeHook(_ interface: String, attachPoint: bpf_tc_attach_point) throws -> bpf_tc_hook {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw BPF.Error.system(errno: errno, operation: "if_nametoindex(\(interface))") }
        var hook = bpf_tc_hook()
        hook.sz = BPF.optionsSize(\bpf_tc_hook.parent)
        hook.ifindex = Int32(index)
        hook.attach_point = attachPoint
        return hook
    }

    private static func inNamespace<T: Sendable>(_ path: String?, _ body: @Sendable () throws -> T) throws -> T {
        guard let path else { return try body() }
        return try NetworkNamespace.run(path: path, body)
    }
}

/// The id of a loaded program (as `bpftool prog` and `bpf_tc_query` show it).
extension BPFProgram {
    public var id: UInt32 {
        get throws {
            var info = bpf_prog_info()
            var length = UInt32(MemoryLayout<bpf_prog_info>.size)
            try BPF.check(bpf_obj_get_info_by_fd(fd, &info, &length), "bpf_obj_get_info_by_fd(\(name))")
            return info.id
        }
    }
}
