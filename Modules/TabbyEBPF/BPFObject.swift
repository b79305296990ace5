import CBPF
import Glibc

/// A loaded BPF object (ELF bytes opened and loaded through libbpf).
///
/// Maps declared with `LIBBPF_PIN_BY_NAME` are pinned as `<pinRoot>/<map name>`: a map already pinned
/// there with the same type, sizes and flags is reused, not recreated, so a restarted agent keeps its
/// conntrack entries and policy tables. Programs are always loaded anew and pinned (replacing an older
/// pin) as `<pinRoot>/programs/<program name>`. Requires CAP_BPF and CAP_SYS_ADMIN (for pins).
///
/// Immutable after `init`: libbpf's object is only read afterwards (names, fds), and map and program
/// operations are bpf(2) calls on fds, which the kernel serialises; hence `@unchecked Sendable`.
public final class BPFObject: @unchecked Sendable {
    private let object: OpaquePointer
    private let elf: UnsafeMutableRawBufferPointer
    /// Where maps and programs are pinned, or nil when nothing is pinned.
    public let pinRoot: String?
    public let programs: [String: BPFProgram]
    public let maps: [String: BPFMap]

    /// Opens and loads `elf`. `name` names the object in libbpf's messages.
    public init(elf bytes: [UInt8], name: String, pinRoot: String?) throws {
        _ = BPF.installLogger
        if let pinRoot {
            try BPF.mountFilesystemIfNeeded()
            try makeDirectories(pinRoot)
            try makeDirectories(pinRoot + "/programs")
        }
        let elf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        elf.copyBytes(from: bytes)
        self.elf = elf
        var options = bpf_object_open_opts()
        options.sz = BPF.optionsSize(\bpf_object_open_opts.kernel_log_level)
        let opened: OpaquePointer? = name.withCString { name in
            (pinRoot ?? "").withCString { root in
                options.object_name = name
                options.pin_root_path = pinRoot == nil ? nil : root
                return bpf_object__open_mem(elf.baseAddress, elf.count, &options)
            }
        }
        guard let opened else {
            elf.deallocate()
            throw BPF.Error.system(errno: errno, operation: "bpf_object__open_mem(\(name))", log: BPF.takeLog())
        }
        object = opened
        do {
            try BPF.check(bpf_object__load(object), "bpf_object__load(\(name), pin root \(pinRoot ?? "none"))")
            var maps: [String: BPFMap] = [:]
            var map = bpf_object__next_map(object, nil)
            while let current = map {
                let info = BPFMap(
                    name: String(cString: bpf_map__name(current)), fd: bpf_map__fd(current),
                    type: bpf_map__type(current), keySize: Int(bpf_map__key_size(current)),
                    valueSize: Int(bpf_map__value_size(current)))
                maps[info.name] = info
                map = bpf_object__next_map(object, current)
            }
            var programs: [String: BPFProgram] = [:]
            var program = bpf_object__next_program(object, nil)
            while let current = program {
                let programName = String(cString: bpf_program__name(current))
                if let pinRoot {
                    let path = "\(pinRoot)/programs/\(programName)"
                    unlink(path)
                    try BPF.check(bpf_program__pin(current, path), "bpf_program__pin(\(path))")
                }
                programs[programName] = BPFProgram(name: programName, fd: bpf_program__fd(current))
                program = bpf_object__next_program(object, current)
            }
            self.maps = maps
            self.programs = programs
            self.pinRoot = pinRoot
        } catch {
            bpf_object__close(object)
            elf.deallocate()
            throw error
        }
    }

    deinit {
        bpf_object__close(object)
        elf.deallocate()
    }

    public func map(_ name: String) throws(BPF.Error) -> BPFMap {
        guard let map = maps[name] else { throw .missing(kind: "map", name: name) }
        return map
    }

    public func program(_ name: String) throws(BPF.Error) -> BPFProgram {
        guard let program = programs[name] else { throw .missing(kind: "program", name: name) }
        return program
    }

    /// Removes everything under a pin root (the pins, not the objects: a map or program stays alive
    /// while a tc filter or an fd still holds it). Idempotent.
    public static func removePins(at pinRoot: String) {
        removeTree(pinRoot)
    }
}

private func makeDirectories(_ path: String) throws {
    var prefix = ""
    for component in path.split(separator: "/") {
        prefix += "/" + component
        if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
            throw BPF.Error.system(errno: errno, operation: "mkdir \(prefix)")
        }
    }
}

private func removeTree(_ path: String) {
    if let directory = opendir(path) {
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            removeTree(path + "/" + name)
        }
        closedir(directory)
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// A loaded program, valid while its `BPFObject` lives.
public struct BPFProgram: Sendable {
    public let name: String
    public let fd: Int32

    /// The result of one BPF_PROG_TEST_RUN.
    public struct TestRun: Sendable, Equatable {
        /// The program's return value (for tc: `TC_ACT_OK` 0, `TC_ACT_SHOT` 2).
        public var returnValue: UInt32
        /// The packet as the program left it.
        public var packet: [UInt8]
        /// The kernel's mean time per run, in nanoseconds (over `repeat` runs).
        public var nanosecondsPerRun: UInt32 = 0
        /// skb->mark as the program left it.
        public var mark: UInt32 = 0
    }

    /// Runs the program once on `packet` (starting with its Ethernet header) with BPF_PROG_TEST_RUN,
    /// the skb's device being `ifindex` in the calling thread's network namespace (run it inside
    /// `NetworkNamespace.run`); nil leaves the namespace's loopback as the device. `repeat` runs it
    /// that many times on the same input (the kernel times them: `nanosecondsPerRun`); maps keep
    /// what each run wrote. `mark` is the skb's mark on entry.
    public func testRun(packet: [UInt8], ifindex: Int32? = nil, mark: UInt32 = 0, repeat: UInt32 = 1)
        throws(BPF.Error) -> TestRun
    {
        var context = __sk_buff()
        if let ifindex { context.ifindex = UInt32(ifindex) }
        context.mark = mark
        var contextOut = __sk_buff()
        var output = [UInt8](repeating: 0, count: packet.count + 256)
        var options = bpf_test_run_opts()
        options.sz = BPF.optionsSize(\bpf_test_run_opts.batch_size)
        options.data_size_in = UInt32(packet.count)
        options.data_size_out = UInt32(output.count)
        options.ctx_size_in = UInt32(MemoryLayout<__sk_buff>.size)
        options.ctx_size_out = UInt32(MemoryLayout<__sk_buff>.size)
        options.repeat = Int32(clamping: max(1, `repeat`))
        let result = packet.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                withUnsafePointer(to: &context) { context in
                    withUnsafeMutablePointer(to: &contextOut) { contextOut in
                        options.data_in = input.baseAddress
                        options.data_out = out.baseAddress
                        options.ctx_in = UnsafeRawPointer(context)
                        options.ctx_out = UnsafeMutableRawPointer(contextOut)
                        return bpf_prog_test_run_opts(fd, &options)
                    }
                }
            }
        }
        try BPF.check(result, "BPF_PROG_TEST_RUN(\(name), \(packet.count) bytes, ifindex \(ifindex ?? 0))")
        return TestRun(
            returnValue: options.retval, packet: Array(output.prefix(Int(options.data_size_out))),
            nanosecondsPerRun: options.duration, mark: contextOut.mark)
    }
}
