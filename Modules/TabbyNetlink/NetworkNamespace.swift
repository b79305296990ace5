import TabbyCore
import CTabbyShims
import Glibc

/// Network namespaces, by path (`/run/netns/NAME` or `/proc/PID/ns/net`).
///
/// setns changes only the calling thread, so namespace work runs on a fresh dedicated thread that
/// exits afterwards and is never reused; never hold a namespace across `await`.
public enum NetworkNamespace {
    /// Where `ip netns` keeps named namespaces.
    public static let directory = "/run/netns"

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// A system call failed; `operation` names it and its arguments.
        case system(errno: Int32, operation: String)
        /// The name is empty, contains "/" or is "." or "..".
        case invalidName(String)

        public var description: String {
            switch self {
            case .system(let code, let operation):
                return "\(operation): \(Netlink.errorText(code)) (errno \(code))"
            case .invalidName(let name):
                return "invalid network namespace name \"\(name)\": use letters, digits, '-', '_' or '.'"
            }
        }
    }

    /// Runs `body` on a new thread that has joined the network namespace at `path`, waits for it and
    /// returns its result (or rethrows its error). Blocks the caller; the thread exits after `body`,
    /// so no other work ever runs in the namespace by accident. Requires CAP_SYS_ADMIN.
    public static func run<T: Sendable>(path: String, _ body: @Sendable () throws -> T) throws -> T {
        let fd = try openFD(path: path)
        defer { close(fd) }
        return try withoutActuallyEscaping(body) { body in
            try onDedicatedThread {
                guard TB_setns_net(fd) == 0 else {
                    throw Error.system(errno: errno, operation: "setns(\(path), CLONE_NEWNET)")
                }
                return try body()
            }
        }
    }

    /// `ip netns add NAME`: a new network namespace kept alive by a bind mount at /run/netns/NAME.
    /// Returns the path. Requires CAP_SYS_ADMIN; fails with EEXIST when the name is taken.
    public static func create(named name: String) throws -> String {
        try validate(name: name)
        try prepareDirectory()
        let path = "\(directory)/\(name)"
        // The mount point: an empty file, created exclusively so two creators cannot share a name.
        let file = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        guard file >= 0 else { throw Error.system(errno: errno, operation: "create \(path)") }
        close(file)
        do {
            try onDedicatedThread {
                guard TB_unshare_net() == 0 else {
                    throw Error.system(errno: errno, operation: "unshare(CLONE_NEWNET)")
                }
                // /proc/thread-self: this thread's namespace, not the process's main thread's.
                guard mount("/proc/thread-self/ns/net", path, "none", UInt(MS_BIND), nil) == 0 else {
                    throw Error.system(errno: errno, operation: "bind-mount /proc/thread-self/ns/net on \(path)")
                }
            }
        } catch {
            unlink(path)
            throw error
        }
        return path
    }

    /// `ip netns delete NAME`: detaches the bind mount and removes the file. Idempotent. The namespace
    /// itself goes away when nothing else (a process, an open fd, a socket) holds it.
    public static func delete(named name: String) throws {
        try validate(name: name)
        let path = "\(directory)/\(name)"
        if umount2(path, Int32(MNT_DETACH)) != 0 && errno != EINVAL && errno != ENOENT {
            throw Error.system(errno: errno, operation: "umount2(\(path), MNT_DETACH)")
        }
        if unlink(path) != 0 && errno != ENOENT {
            throw Error.system(errno: errno, operation: "unlink \(path)")
        }
    }

    /// Opens a namespace file (O_RDONLY|O_CLOEXEC) for setns or IFLA_NET_NS_FD. The caller closes it.
    public static func openFD(path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error.system(errno: errno, operation: "open \(path)") }
        return fd
    }

    private static func validate(name: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else { throw Error.invalidName(name) }
    }

    /// Creates /run/netns and makes it a shared mount point, as iproute2 does, so namespace mounts made
    /// here propagate to other mount namespaces (and unmounts too).
    private static func prepareDirectory() throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw Error.system(errno: errno, operation: "mkdir \(directory)")
        }
        if mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 { return }
        guard errno == EINVAL else { throw Error.system(errno: errno, operation: "make \(directory) shared") }
        // Not a mount point yet: bind it onto itself first.
        guard mount(directory, directory, "none", UInt(MS_BIND | MS_REC), nil) == 0,
            mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0
        else { throw Error.system(errno: errno, operation: "bind-mount \(directory) shared") }
    }
}

/// Runs `body` on a new POSIX thread and waits for it. The thread exits afterwards, taking any
/// namespace it joined with it.
func onDedicatedThread<T>(_ body: () throws -> T) throws -> T {
    try withoutActuallyEscaping(body) { body in
        let job = ThreadJob(body)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(job).toOpaque()
        let created = pthread_create(
            &thread, nil,
            { context in
                let job = Unmanaged<AnyObject>.fromOpaque(context!).takeRetainedValue() as! any RunnableJob
                job.run()
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<ThreadJob<T>>.fromOpaque(context).release()
            throw NetworkNamespace.Error.system(errno: created, operation: "pthread_create")
        }
        pthread_join(thread, nil)
        return try job.result!.get()
    }
}

private protocol RunnableJob: AnyObject {
    func run()
}

/// The body and result of one dedicated thread; only that thread touches it until pthread_join returns.
private final class ThreadJob<T>: RunnableJob {
    let body: () throws -> T
    var result: Result<T, any Swift.Error>?

    init(_ body: @escaping () throws -> T) { self.body = body }

    func run() { result = Result { try body() } }
}
