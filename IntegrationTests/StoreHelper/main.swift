// A child process for TabbyStore's multi-process tests: every CNI call is its own process, so
// the SQLite store is exercised from several processes at once.
//
//   tabby-store-helper increment PATH KEY COUNT   compare-and-swap +1 on KEY, COUNT times
//   tabby-store-helper put PATH KEY VALUE          create or overwrite KEY
//   tabby-store-helper allocate PATH NODE COUNT HANDLE_PREFIX
//                                                  COUNT IPAM assignments of one address each,
//                                                  handles HANDLE_PREFIX-0..., printing each address
//
// PATH is a SQLite file, or `-` for the datastore the environment names (DATASTORE_TYPE,
// TABBY_STORE, ETCD_ENDPOINTS, ...), so the same test runs against etcd. A SQLite file is opened
// with SQLiteStore (GRDB), or with SQLiteOneShotStore (as the CNI plugin does) when the first
// argument is --one-shot (for `-`: `makeStore(shortLived: true)`, as the plugin calls it).
// Prints one line of statistics; exits 1 with the error on stderr on failure.
import Foundation
import TabbyIPAM
import TabbyStore

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("tabby-store-helper: \(message)\n".utf8))
    exit(1)
}

func increment(_ store: any KeyValueStore, key: String, count: Int) async throws(StoreError) -> Int {
    var conflicts = 0
    for _ in 0..<count {
        while true {
            do {
                if let current = try await store.get(key) {
                    let value = Int(String(decoding: current.value, as: UTF8.self)) ?? 0
                    try await store.update(
                        key, value: Data(String(value + 1).utf8), expectedRevision: current.modRevision)
                } else {
                    try await store.create(key, value: Data("1".utf8))
                }
                break
            } catch .conflict, .alreadyExists, .notFound {
                conflicts += 1
            }
        }
    }
    return conflicts
}

func put(_ store: any KeyValueStore, key: String, value: String) async throws(StoreError) {
    while true {
        do {
            if let current = try await store.get(key) {
                try await store.update(key, value: Data(value.utf8), expectedRevision: current.modRevision)
            } else {
                try await store.create(key, value: Data(value.utf8))
            }
            return
        } catch .conflict, .alreadyExists, .notFound {
            continue
        }
    }
}

/// One address per assignment, as one CNI ADD each; prints each as soon as it is assigned, so a
/// test that kills this process knows what it got.
func allocate(_ store: any KeyValueStore, node: String, count: Int, prefix: String) async throws {
    let ipam = IPAM(store: store)
    for index in 0..<count {
        let assigned = try await ipam.assign(
            AssignmentRequest(handleID: "\(prefix)-\(index)", node: node, containerID: "\(prefix)-\(index)"))
        // Unbuffered: a test that kills this process must see every address already assigned.
        for assignment in assigned { FileHandle.standardOutput.write(Data("\(assignment.address)\n".utf8)) }
    }
}

var arguments = CommandLine.arguments
let oneShot = arguments.count > 1 && arguments[1] == "--one-shot"
if oneShot { arguments.remove(at: 1) }

func openSQLite(_ path: String) throws(StoreError) -> any KeyValueStore {
    let configuration = SQLiteStoreConfiguration(path: path)
    return oneShot
        ? try SQLiteOneShotStore(configuration: configuration) : try SQLiteStore(configuration: configuration)
}

if arguments.count == 6 && arguments[1] == "allocate" {
    guard let count = Int(arguments[4]) else { fail("COUNT must be a number, got \(arguments[4])") }
    do {
        let store: any KeyValueStore =
            arguments[2] == "-"
            ? try DatastoreConfiguration.fromEnvironment(ProcessInfo.processInfo.environment).makeStore(
                shortLived: oneShot)
            : try openSQLite(arguments[2])
        try await allocate(store, node: arguments[3], count: count, prefix: arguments[5])
        await store.close()
        exit(0)
    } catch {
        fail("\(error)")
    }
}
guard arguments.count == 5 else {
    fail(
        "usage: tabby-store-helper [--one-shot] increment PATH KEY COUNT | put PATH KEY VALUE | allocate PATH NODE COUNT "
            + "HANDLE_PREFIX"
    )
}
let (command, path, key) = (arguments[1], arguments[2], arguments[3])
let started = ContinuousClock.now
do {
    let store: any KeyValueStore =
        path == "-"
        ? try DatastoreConfiguration.fromEnvironment(ProcessInfo.processInfo.environment).makeStore(
            shortLived: oneShot)
        : try openSQLite(path)
    switch command {
    case "increment":
        guard let count = Int(arguments[4]) else { fail("COUNT must be a number, got \(arguments[4])") }
        let conflicts = try await increment(store, key: key, count: count)
        print("increments=\(count) conflicts=\(conflicts) elapsed=\(ContinuousClock.now - started)")
    case "put":
        try await put(store, key: key, value: arguments[4])
        print("put \(key)")
    default:
        fail("unknown command \(command)")
    }
    await store.close()
} catch {
    fail(error.description)
}
