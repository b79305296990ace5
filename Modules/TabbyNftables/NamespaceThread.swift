import CTabbyShims
import Glibc

/// Runs work inside a network namespace on a dedicated thread. setns changes only the calling thread,
/// so the thread joins the namespace, runs the body and exits; it is never reused, so nothing else
/// ever runs in the namespace by accident. (TabbyNetlink's `NetworkNamespace.run` does the same; this
/// copy keeps TabbyNftables free of the TabbyNetlink/TabbyCore dependency.)
enum NamespaceThread {
    static func run<T>(path: String, _ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Nft.Error.socket(errno: errno, operation: "open \(path)") }
        defer { close(fd) }
        return try onDedicatedThread {
            guard TB_setns_net(fd) == 0 else {
                throw Nft.Error.socket(errno: errno, operation: "setns(\(path), CLONE_NEWNET)")
            }
            return try body()
        }
    }

    /// Runs `body` on a new POSIX thread and waits for it.
    private static func onDedicatedThread<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            let job = ThreadJob(body)
            var thread = pthread_t()
            let context = Unmanaged.passRetained(job as AnyObject).toOpaque()
            let created = pthread_create(
                &thread, nil,
                { context in
                    let job = Unmanaged<AnyObject>.fromOpaque(context!).takeRetainedValue() as! any RunnableJob
                    job.run()
                    return nil
                }, context)
            guard created == 0 else {
                Unmanaged<AnyObject>.fromOpaque(context).release()
                throw Nft.Error.socket(errno: created, operation: "pthread_create")
            }
            pthread_join(thread, nil)
            return try job.result!.get()
        }
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
