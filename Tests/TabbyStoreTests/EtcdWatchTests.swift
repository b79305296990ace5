import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@testable import TabbyStore

extension EtcdTests {
    @Suite("EtcdStore: watch") struct Watch {
        @Test func eventsComeInOrderWithPreviousValues() async throws {
            try await withEtcd { _, store in
                let start = try await store.currentRevision()
                let watch = WatchCollector(store.watch(prefix: "/w/", after: start))
                defer { watch.cancel() }
                let a1 = try await store.create("/w/a", value: Data(text: "1"))
                try await store.create("/other", value: Data(text: "not watched"))
                let a2 = try await store.update("/w/a", value: Data(text: "2"), expectedRevision: a1.modRevision)
                let gone = try await store.delete("/w/a", expectedRevision: a2.modRevision)
                let b = try await store.create("/w/b", value: Data(text: "b"))
                let deletedAt = b.modRevision - 1
                let events = try await watch.wait(for: 4)
                #expect(
                    events == [
                        .added(a1), .modified(a2, previous: a1),
                        .deleted(key: "/w/a", revision: deletedAt, previous: gone),
                        .added(b),
                    ])
                #expect(events.map(\.revision) == events.map(\.revision).sorted())
            }
        }

        @Test func resumesAfterARevision() async throws {
            try await withEtcd { _, store in
                let one = try await store.create("/r/1", value: Data(text: "1"))
                let two = try await store.create("/r/2", value: Data(text: "2"))
                let three = try await store.create("/r/3", value: Data(text: "3"))
                let watch = WatchCollector(store.watch(prefix: "/r/", after: one.modRevision))
                defer { watch.cancel() }
                #expect(try await watch.wait(for: 2) == [.added(two), .added(three)])
                // Nothing more arrives for revisions already seen.
                try await Task.sleep(for: .milliseconds(200))
                #expect(watch.collected.withLock { $0.events.count } == 2)
            }
        }

        @Test func compactedHistoryAsksForAResync() async throws {
            try await withEtcd { _, store in
                let kv = try await store.create("/c/k", value: Data(text: "1"))
                try await store.update("/c/k", value: Data(text: "2"), expectedRevision: kv.modRevision)
                let now = try await store.currentRevision()
                try await store.compact(through: now)
                let watch = WatchCollector(store.watch(prefix: "/c/", after: kv.modRevision - 1))
                #expect(try await watch.wait(for: 1) == [.resyncRequired(compactedRevision: now)])
                #expect(try await watch.end() == nil)
                // Watching after the compacted revision works.
                let after = WatchCollector(store.watch(prefix: "/c/", after: now))
                defer { after.cancel() }
                let next = try await store.create("/c/new", value: Data(text: "n"))
                #expect(try await after.wait(for: 1) == [.added(next)])
            }
        }

        @Test func aDroppedStreamResumesWithoutDuplicatesOrGaps() async throws {
            try await withEtcd(maxAttempts: 10) { server, store in
                let start = try await store.currentRevision()
                let watch = WatchCollector(store.watch(prefix: "/d/", after: start))
                defer { watch.cancel() }
                var written: [KeyValue] = []
                for index in 1...3 {
                    written.append(try await store.create("/d/\(index)", value: Data(text: "\(index)")))
                }
                _ = try await watch.wait(for: 3)
                // etcd goes away under the open stream and comes back on the same data.
                server.stop(keep: true)
                try server.restart()
                for index in 4...6 {
                    written.append(try await store.create("/d/\(index)", value: Data(text: "\(index)")))
                }
                let events = try await watch.wait(for: 6)
                try await Task.sleep(for: .milliseconds(300))
                #expect(watch.collected.withLock { $0.events } == written.map { WatchEvent.added($0) })
                #expect(events.count == 6)
            }
        }

        @Test func cancellingTheWatchClosesTheHTTPStream() async throws {
            try await withEtcd { server, store in
                let watch = WatchCollector(store.watch(prefix: "/x/", after: try await store.currentRevision()))
                let kv = try await store.create("/x/1", value: Data())
                #expect(try await watch.wait(for: 1) == [.added(kv)])
                #expect(try await watchers(server) == 1)
                watch.cancel()
                #expect(try await watch.end() == nil)
                let deadline = ContinuousClock.now + .seconds(5)
                while try await watchers(server) != 0, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(try await watchers(server) == 0)
            }
        }

        @Test func closingTheStoreEndsItsWatches() async throws {
            try await withEtcd { _, store in
                let watch = WatchCollector(store.watch(prefix: "/y/", after: 0))
                try await Task.sleep(for: .milliseconds(200))
                await store.close()
                _ = try await watch.end()
                await store.close()
                #expect(await storeError { try await store.get("/y/1") } != nil)
            }
        }
    }
}

/// etcd's count of open watchers, from its Prometheus metrics.
func watchers(_ server: EtcdServer) async throws -> Int {
    let (data, _) = try await URLSession.shared.data(from: URL(string: server.endpoint + "/metrics")!)
    let text = String(decoding: data, as: UTF8.self)
    let line = text.split(separator: "\n").first { $0.hasPrefix("etcd_debugging_mvcc_watcher_total ") }
    guard let line, let value = Double(line.split(separator: " ").last ?? "") else {
        throw EtcdTestError("no etcd_debugging_mvcc_watcher_total in \(server.endpoint)/metrics")
    }
    return Int(value)
}
