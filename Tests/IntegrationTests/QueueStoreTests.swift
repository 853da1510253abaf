import DurableQueues
import Foundation
import PostgresWire
import Testing

extension PostgresTests {
    /// The durable queues' store operations (issue 18 step 5) against the cluster: order,
    /// concurrent fetches, uniqueness under concurrent enqueuers, retries and discard, the rescue
    /// of a dead host's jobs and a stopping host's hand-back, all fenced on attempt and lease.
    @Suite(.timeLimit(.minutes(1)))
    struct QueueStoreTests {
        /// A fresh schema, a store on it, and `body` with a connected client.
        static func withStore(_ name: String, _ body: (QueueStore, WireClientBox) async throws -> Void) async throws {
            try PG.psql("DROP SCHEMA IF EXISTS \(name) CASCADE")
            try await WireClientTests.withClient(nil) { client in
                _ = try await QueueSchema.migrate(client, schema: name)
                try await body(QueueStore(schema: name), WireClientBox(client: client))
            }
            try PG.psql("DROP SCHEMA IF EXISTS \(name) CASCADE")
        }

        @Test func jobsComeOutByPriorityThenRunAtAndScheduledOnesWait() async throws {
            try await Self.withStore("poold_qs_order") { store, box in
                let client = box.client
                var late = QueueStore.NewJob(queue: "q", params: "[1]")
                late.priority = 1
                let future = QueueStore.NewJob(queue: "q", params: "[2]", runAt: "2999-01-01T00:00:00Z")
                let first = QueueStore.NewJob(queue: "q", params: "[3]")
                let other = QueueStore.NewJob(queue: "other", params: "[4]")
                let ids = try await store.enqueue([late, future, first, other], on: client)
                #expect(ids.count == 4 && Set(ids).count == 4)
                #expect(ids == ids.sorted(), "ids in the order the jobs were given")
                let epoch = try await store.register(host: "test", pid: 1, seconds: 30, on: client)
                let firstOut = try await store.fetch(queue: "q", demand: 1, epoch: epoch, on: client)
                #expect(firstOut.map(\.id) == [ids[2]], "priority 0 before priority 1, though enqueued later")
                let rest = try await store.fetch(queue: "q", demand: 10, epoch: epoch, on: client)
                #expect(rest.map(\.id) == [ids[0]], "the scheduled job waits; other queues are not taken")
                #expect((firstOut + rest).allSatisfy { $0.attempt == 1 })
                let again = try await store.fetch(queue: "q", demand: 10, epoch: epoch, on: client)
                #expect(again.isEmpty, "running jobs are not taken twice")
            }
        }

        @Test func concurrentFetchersTakeDisjointJobsAndEveryOne() async throws {
            try await Self.withStore("poold_qs_fetch") { store, box in
                let jobs = (0..<200).map { QueueStore.NewJob(queue: "q", params: "[\($0)]") }
                let ids = try await store.enqueue(jobs, on: box.client)
                let taken = try await withThrowingTaskGroup(of: [Int64].self) { group in
                    for host in 0..<4 {
                        group.addTask {
                            var mine: [Int64] = []
                            try await WireClientTests.withClient(nil) { client in
                                let epoch = try await store.register(host: "h\(host)", pid: host, seconds: 30, on: client)
                                while true {
                                    let batch = try await store.fetch(queue: "q", demand: 8, epoch: epoch, on: client)
                                    if batch.isEmpty { break }
                                    mine += batch.map(\.id)
                                }
                            }
                            return mine
                        }
                    }
                    var all: [Int64] = []
                    for try await mine in group { all += mine }
                    return all
                }
                #expect(taken.count == 200 && Set(taken) == Set(ids), "each job taken exactly once")
            }
        }

        @Test func aUniqueKeyUnderEightConcurrentEnqueuersMakesOneJob() async throws {
            try await Self.withStore("poold_qs_unique") { store, _ in
                let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
                    for n in 0..<8 {
                        group.addTask {
                            var id: Int64 = -1
                            try await WireClientTests.withClient(nil) { client in
                                id =
                                    try await store.enqueue(
                                        [QueueStore.NewJob(queue: "q", params: "[\(n)]", uniqueKey: "report-2026-12-07")], on: client
                                    ).first ?? -1
                            }
                            return id
                        }
                    }
                    var all: [Int64] = []
                    for try await id in group { all.append(id) }
                    return all
                }
                #expect(Set(ids).count == 1 && ids.first ?? -1 > 0, "\(ids)")
                #expect(try PG.psql("SELECT count(*) FROM poold_qs_unique.jobs") == "1")
            }
        }

        @Test func failuresRetryWithBackoffThenDiscardKeepingErrors() async throws {
            try await Self.withStore("poold_qs_fail") { store, box in
                let client = box.client
                var once = QueueStore.NewJob(queue: "q", params: "[1]")
                once.maxAttempts = 2
                let id = try #require(try await store.enqueue([once], on: client).first)
                let epoch = try await store.register(host: "test", pid: 1, seconds: 30, on: client)
                let first = try await store.fetch(queue: "q", demand: 1, epoch: epoch, on: client)
                #expect(try await store.fail(job: id, attempt: 1, epoch: epoch + 1, error: "wrong lease", on: client) == false)
                #expect(try await store.fail(job: id, attempt: 1, epoch: epoch, error: "boom 1", on: client))
                #expect(first.count == 1)
                #expect(try PG.psql("SELECT state, run_at > now() FROM poold_qs_fail.jobs WHERE id = \(id)") == "retryable|t")
                #expect(try await store.fetch(queue: "q", demand: 1, epoch: epoch, on: client).isEmpty, "it waits for its backoff")
                try PG.psql("UPDATE poold_qs_fail.jobs SET run_at = now() WHERE id = \(id)")
                let second = try await store.fetch(queue: "q", demand: 1, epoch: epoch, on: client)
                #expect(second.first?.attempt == 2)
                #expect(try await store.fail(job: id, attempt: 2, epoch: epoch, error: "boom 2", on: client))
                #expect(
                    try PG.psql("SELECT state, jsonb_array_length(errors), errors->1->>'error' FROM poold_qs_fail.jobs WHERE id = \(id)")
                        == "discarded|2|boom 2")
            }
        }

        @Test func aDeadHostsJobsAreRescuedAndItsLateCompletionRefused() async throws {
            try await Self.withStore("poold_qs_rescue") { store, box in
                let client = box.client
                let ids = try await store.enqueue([QueueStore.NewJob(queue: "q", params: "[1]")], on: client)
                let dead = try await store.register(host: "dead", pid: 1, seconds: 30, on: client)
                let alive = try await store.register(host: "alive", pid: 2, seconds: 30, on: client)
                _ = try await store.fetch(queue: "q", demand: 1, epoch: dead, on: client)
                #expect(try await store.rescue(on: client) == 0, "a live lease's jobs stay")
                try PG.psql("UPDATE poold_qs_rescue.hosts SET expires_at = now() - interval '1 second' WHERE epoch = \(dead)")
                #expect(try await store.rescue(on: client) == 1)
                #expect(try await store.renew(epoch: dead, seconds: 30, on: client) == false, "the dead host learns it lost its lease")
                #expect(try await store.renew(epoch: alive, seconds: 30, on: client))
                let retaken = try await store.fetch(queue: "q", demand: 1, epoch: alive, on: client)
                #expect(retaken.map(\.id) == ids && retaken.first?.attempt == 2, "rescued with its attempt counted")
                // The dead host's late completion is refused by the fence, and so is its effect.
                await #expect(throws: (any Error).self) {
                    _ = try await client.execute("SELECT poold_qs_rescue.complete(\(ids[0]), 1, \(dead), NULL)")
                }
                _ = try await client.execute("SELECT poold_qs_rescue.complete(\(ids[0]), 2, \(alive), '{\"ok\": true}')")
                #expect(try PG.psql("SELECT state, result->>'ok' FROM poold_qs_rescue.jobs") == "completed|true")
            }
        }

        @Test func aStoppingHostHandsItsJobsBackWithoutBurningAnAttempt() async throws {
            try await Self.withStore("poold_qs_handback") { store, box in
                let client = box.client
                _ = try await store.enqueue((0..<3).map { QueueStore.NewJob(queue: "q", params: "[\($0)]") }, on: client)
                let stopping = try await store.register(host: "stopping", pid: 1, seconds: 30, on: client)
                #expect(try await store.fetch(queue: "q", demand: 2, epoch: stopping, on: client).count == 2)
                #expect(try await store.handBack(epoch: stopping, on: client) == 2)
                #expect(
                    try PG.psql("SELECT string_agg(state || ':' || attempt, ',' ORDER BY id) FROM poold_qs_handback.jobs")
                        == "available:0,available:0,available:0")
                #expect(try PG.psql("SELECT count(*) FROM poold_qs_handback.hosts") == "0")
            }
        }

        @Test func retentionDeletesOldFinishedJobsInBatches() async throws {
            try await Self.withStore("poold_qs_retention") { store, box in
                let client = box.client
                _ = try await store.enqueue((0..<5).map { QueueStore.NewJob(queue: "q", params: "[\($0)]") }, on: client)
                try PG.psql(
                    "UPDATE poold_qs_retention.jobs SET state = 'completed', finished_at = now() - interval '2 days' WHERE id <= 4")
                #expect(try await store.deleteFinished(olderThan: 86_400, batch: 3, on: client) == 3)
                #expect(try await store.deleteFinished(olderThan: 86_400, batch: 3, on: client) == 1)
                #expect(try await store.deleteFinished(olderThan: 86_400, batch: 3, on: client) == 0)
                #expect(try PG.psql("SELECT count(*) FROM poold_qs_retention.jobs") == "1", "the unfinished job stays")
            }
        }
    }
}

/// A client handed to a test body (the store tests pass it with the store).
struct WireClientBox: Sendable {
    let client: WireClient
}
