import TabbyCore

/// Runs `command` inside the network namespace at `namespace` (nsenter), with `input` on its
/// stdin; returns its exit status and output (stdout, then stderr). The reconcile tests use it to
/// change the kernel behind a backend's back, as an administrator would.
func runInNamespace(_ namespace: String, _ command: [String], input: String = "") -> (Int32, String) {
    do {
        let result = try Command.run(["/usr/bin/nsenter", "--net=\(namespace)"] + command, input: input)
        return (result.status, result.stdout + result.stderr)
    } catch {
        return (-1, "\(error)")
    }
}
