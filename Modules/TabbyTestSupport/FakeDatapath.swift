import Synchronization
import TabbyCNI

/// A `PodDatapath` that keeps attachments in memory, for testing the plugin's bookkeeping without
/// a kernel. Failures can be injected per host interface.
public final class FakeDatapath: PodDatapath {
    // Mutex: tests call in from any task.
    private let state = Mutex(State())

    struct State {
        var attached: [String: PodAttachment] = [:]
        var strays: Set<String> = []
        var failAttach: Set<String> = []
        var problems: [String] = []
    }

    public init() {}

    /// The attachments in place, by host interface.
    public var attachments: [String: PodAttachment] { state.withLock { $0.attached } }

    /// A host veth that no endpoint names (left by a killed ADD).
    public func addStray(_ name: String) { state.withLock { _ = $0.strays.insert(name) } }
    /// The next attach of this host interface fails, as a kernel error would.
    public func failAttach(of name: String) { state.withLock { _ = $0.failAttach.insert(name) } }
    /// What `verify` reports.
    public func setProblems(_ problems: [String]) { state.withLock { $0.problems = problems } }

    public func attach(_ attachment: PodAttachment) throws(DatapathError) {
        let result: Result<Void, DatapathError> = state.withLock { state in
            if state.failAttach.remove(attachment.hostInterface) != nil {
                return .failure(.kernel("RTM_NEWLINK veth \(attachment.hostInterface): injected failure"))
            }
            if let existing = state.attached.values.first(where: {
                $0.namespacePath == attachment.namespacePath && $0.interfaceName == attachment.interfaceName
            }), existing.hostInterface != attachment.hostInterface {
                return .failure(.interfaceExists(name: attachment.interfaceName, namespace: attachment.namespacePath))
            }
            state.attached[attachment.hostInterface] = attachment
            return .success(())
        }
        try result.get()
    }

    public func detach(hostInterface: String) throws(DatapathError) {
        state.withLock { state in
            state.attached[hostInterface] = nil
            state.strays.remove(hostInterface)
        }
    }

    public func verify(_ attachment: PodAttachment) throws(DatapathError) -> [String] {
        state.withLock { state in
            var problems = state.problems
            if state.attached[attachment.hostInterface] == nil {
                problems.append("host interface \(attachment.hostInterface) does not exist")
            }
            return problems
        }
    }

    public func hostInterfaces() throws(DatapathError) -> [String] {
        state.withLock { Array($0.attached.keys) + Array($0.strays) }.sorted()
    }
}
