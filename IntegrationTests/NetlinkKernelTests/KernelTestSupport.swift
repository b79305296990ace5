import TabbyCore
import Foundation
import Glibc
import TabbyNetlink

/// Creates `count` fresh network namespaces named `tabby-t-nl-<random>-<n>`, runs `body` with their
/// paths and deletes them afterwards, also when `body` throws. Nothing here touches the root namespace.
func withNamespaces<T>(_ count: Int, _ body: ([String]) throws -> T) throws -> T {
    let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    var names: [String] = []
    defer {
        for name in names { try? NetworkNamespace.delete(named: name) }
    }
    var paths: [String] = []
    for number in 0..<count {
        let name = "tabby-t-nl-\(tag)-\(number)"
        paths.append(try NetworkNamespace.create(named: name))
        names.append(name)
    }
    return try body(paths)
}

/// Opens a namespace fd for the duration of `body`.
func withNamespaceFD<T>(_ path: String, _ body: (Int32) throws -> T) throws -> T {
    let fd = try NetworkNamespace.openFD(path: path)
    defer { close(fd) }
    return try body(fd)
}

/// Runs `command` inside the namespace at `path` with nsenter; returns the exit status and output.
func runInNamespace(_ path: String, _ command: [String]) throws -> (status: Int32, output: String) {
    let result = try Command.run(["/usr/bin/nsenter", "--net=\(path)"] + command)
    return (result.status, result.stdout + result.stderr)
}

/// The link called `name`, or a test failure.
struct MissingLink: Error, CustomStringConvertible {
    let name: String
    var description: String { "no link \(name)" }
}

extension RouteSocket {
    func requireLink(_ name: String) throws -> Link {
        guard let link = try link(named: name) else { throw MissingLink(name: name) }
        return link
    }
}
