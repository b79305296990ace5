// tabby-store-bench: the datastore benchmark. Runs the same operations against the embedded
// SQLite store and etcd in one run and prints a Markdown table with the ratio between them.
//   tabby-store-bench --etcd-endpoints URL [--sqlite-path FILE] [--operations N] [--list-size N]
import Foundation
import TabbyStore

struct Options {
    var etcdEndpoints: [String] = []
    var sqlitePath = FileManager.default.temporaryDirectory.appendingPathComponent("tabby-bench-\(getpid()).db").path
    var operations = 1000
    var listSize = 10_000

    init(_ arguments: ArraySlice<String>) throws {
        var rest = arguments
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { throw StoreError.invalidConfiguration("\(flag) needs a value") }
            switch flag {
            case "--etcd-endpoints": etcdEndpoints = try EtcdConfiguration.parseEndpoints(value)
            case "--sqlite-path": sqlitePath = value
            case "--operations": operations = Int(value) ?? operations
            case "--list-size": listSize = Int(value) ?? listSize
            default: throw StoreError.invalidConfiguration("unknown option \(flag)")
            }
        }
        if etcdEndpoints.isEmpty { throw StoreError.invalidConfiguration("--etcd-endpoints is required") }
    }
}

/// Latencies of one operation, in microseconds.
struct Sample {
    var micros: [Double]

    var median: Double { percentile(0.5) }
    var p99: Double { percentile(0.99) }
    var perSecond: Double { Double(micros.count) / (micros.reduce(0, +) / 1_000_000) }

    func percentile(_ p: Double) -> Double {
        let sorted = micros.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
    }
}

func timed(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) * 1_000_000 + Double(elapsed.components.attoseconds) / 1_000_000_000_000
}

func measure(_ store: any KeyValueStore, options: Options) async throws -> [String: Sample] {
    let run = "/bench/\(UUID().uuidString)/"
    var results: [String: Sample] = [:]

    var creates: [Double] = []
    var written: [KeyValue] = []
    for index in 0..<options.operations {
        let value = Data(repeating: 0x61, count: 512)
        creates.append(try await timed { written.append(try await store.create("\(run)c/\(index)", value: value)) })
    }
    results["create"] = Sample(micros: creates)

    var updates: [Double] = []
    for kv in written {
        updates.append(
            try await timed {
                try await store.update(
                    kv.key, value: Data(repeating: 0x62, count: 512), expectedRevision: kv.modRevision)
            })
    }
    results["CAS update"] = Sample(micros: updates)

    // Fill a prefix to the list size (not timed), then time whole-prefix lists.
    for index in 0..<options.listSize {
        try await store.create("\(run)l/\(index)", value: Data(repeating: 0x63, count: 512))
    }
    var lists: [Double] = []
    for _ in 0..<10 {
        lists.append(
            try await timed {
                let listing = try await store.list(prefix: "\(run)l/")
                precondition(listing.items.count == options.listSize)
            })
    }
    results["list \(options.listSize)"] = Sample(micros: lists)

    // Watch latency: from just before a write to the event's arrival.
    let revision = try await store.currentRevision()
    let stream = store.watch(prefix: "\(run)w/", after: revision)
    var iterator = stream.makeAsyncIterator()
    var latencies: [Double] = []
    for index in 0..<min(options.operations, 300) {
        let start = ContinuousClock.now
        try await store.create("\(run)w/\(index)", value: Data("x".utf8))
        _ = try await iterator.next()
        let elapsed = ContinuousClock.now - start
        latencies.append(
            Double(elapsed.components.seconds) * 1_000_000 + Double(elapsed.components.attoseconds) / 1_000_000_000_000)
    }
    results["watch delivery"] = Sample(micros: latencies)
    return results
}

func format(_ micros: Double) -> String {
    micros >= 1000 ? String(format: "%.2f ms", micros / 1000) : String(format: "%.0f µs", micros)
}

do {
    let options = try Options(CommandLine.arguments.dropFirst())
    defer {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: options.sqlitePath + suffix) }
    }
    let sqlite = try SQLiteStore(configuration: SQLiteStoreConfiguration(path: options.sqlitePath))
    let etcd = try EtcdStore(configuration: EtcdConfiguration(endpoints: options.etcdEndpoints))
    let embedded = try await measure(sqlite, options: options)
    let distributed = try await measure(etcd, options: options)
    await sqlite.close()
    await etcd.close()
    print("| operation | embedded (SQLite) p50 | p99 | etcd p50 | p99 | etcd p50 / embedded p50 |")
    print("|---|---|---|---|---|---|")
    for name in ["create", "CAS update", "list \(options.listSize)", "watch delivery"] {
        let e = embedded[name]!
        let d = distributed[name]!
        print(
            "| \(name) | \(format(e.median)) | \(format(e.p99)) | \(format(d.median)) | \(format(d.p99)) | \(String(format: "%.2f", d.median / e.median)) |"
        )
    }
} catch {
    FileHandle.standardError.write(Data("tabby-store-bench: \(error)\n".utf8))
    exit(1)
}
