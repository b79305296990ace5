import Foundation

/// Runs `command` inside the network namespace at `namespace` (nsenter), with `input` on its
/// stdin; returns its exit status and output (stdout and stderr together). The reconcile tests
/// use it to change the kernel behind a backend's back, as an administrator would.
func runInNamespace(_ namespace: String, _ command: [String], input: String = "") -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
    process.arguments = ["--net=\(namespace)"] + command
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stdout
    try? process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try? stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}
