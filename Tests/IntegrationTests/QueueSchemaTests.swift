import DurableQueues
import Foundation
import NIOCore
import NIOPosix
import PostgresWire
import Testing

extension PostgresTests {
    /// The durable queues' schema (issue 18 step 4): created once, found current after, created by
    /// one of several poold starting together, refused when newer, and its fenced completion.
    @Suite(.timeLimit(.minutes(1)))
    struct QueueSchemaTests {
        static func withClient(_ body: (WireClient) async throws -> Void) async throws {
            try await WireClientTests.withClient(nil, body)
        }

        static func drop(_ schema: String) throws {
            try PG.psql("DROP SCHEMA IF EXISTS \(QueueSchema.quoted(schema)) CASCADE")
        }

        @Test func createdOnceThenCurrent() async throws {
            let schema = "poold_q_once"
            try Self.drop(schema)
            try await Self.withClient { client in
                let first = try await QueueSchema.migrate(client, schema: schema)
                let second = try await QueueSchema.migrate(client, schema: schema)
                #expect(first == .created(version: QueueSchema.version))
                #expect(second == .current(version: QueueSchema.version))
                #expect(client.transactionStatus == .idle)
            }
            #expect(try PG.psql("SELECT version FROM \(schema).schema_version") == "\(QueueSchema.version)")
            #expect(try PG.psql("SELECT count(*) FROM pg_indexes WHERE schemaname = '\(schema)' AND tablename = 'jobs'") == "5")
            try Self.drop(schema)
        }

        @Test func severalPooldStartingTogetherCreateItOnce() async throws {
            let schema = "poold-q \"quoted\""
            try Self.drop(schema)
            let outcomes = try await withThrowingTaskGroup(of: QueueSchema.Outcome.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var outcome: QueueSchema.Outcome?
                        try await Self.withClient { client in outcome = try await QueueSchema.migrate(client, schema: schema) }
                        return try #require(outcome)
                    }
                }
                var all: [QueueSchema.Outcome] = []
                for try await outcome in group { all.append(outcome) }
                return all
            }
            #expect(outcomes.filter { $0 == .created(version: QueueSchema.version) }.count == 1, "\(outcomes)")
            #expect(outcomes.filter { $0 == .current(version: QueueSchema.version) }.count == 3, "\(outcomes)")
            #expect(try PG.psql("SELECT count(*) FROM \(QueueSchema.quoted(schema)).schema_version") == "1")
            try Self.drop(schema)
        }

        @Test func aNewerSchemaIsRefusedAndLeftAlone() async throws {
            let schema = "poold_q_newer"
            try Self.drop(schema)
            try await Self.withClient { client in
                _ = try await QueueSchema.migrate(client, schema: schema)
                try PG.psql("UPDATE \(schema).schema_version SET version = 99")
                await #expect {
                    _ = try await QueueSchema.migrate(client, schema: schema)
                } throws: { error in
                    "\(error)".contains("version 99") && "\(error)".contains("upgrade poold")
                }
                #expect(client.transactionStatus == .idle, "the refused migration was rolled back")
            }
            #expect(try PG.psql("SELECT version FROM \(schema).schema_version") == "99")
            try Self.drop(schema)
        }

        /// The fence: a completion for an attempt or a lease that is no longer the job's raises,
        /// so that the job's own effect, in the same transaction, is rolled back.
        @Test func theFencedCompletionRefusesAStaleAttempt() async throws {
            let schema = "poold_q_fence"
            try Self.drop(schema)
            try await Self.withClient { client in
                _ = try await QueueSchema.migrate(client, schema: schema)
                _ = try await client.execute(
                    "INSERT INTO \(schema).jobs (queue, state, attempt, lease) VALUES ('q', 'running', 2, 7)")
                try PG.psql("CREATE TABLE IF NOT EXISTS \(schema).effects (v int); GRANT ALL ON \(schema).effects TO poold")
                func complete(attempt: Int, lease: Int) async throws {
                    _ = try await client.runPipeline([
                        WireStatement("INSERT INTO \(schema).effects VALUES ($1::int)", TextQuery(["\(attempt)"])),
                        WireStatement(
                            "SELECT \(schema).complete($1::bigint, $2::int, $3::bigint, NULL)",
                            TextQuery(["1", "\(attempt)", "\(lease)"])),
                    ])
                }
                await #expect(throws: PipelineStateMachine.Failure.self) { try await complete(attempt: 1, lease: 7) }
                await #expect(throws: PipelineStateMachine.Failure.self) { try await complete(attempt: 2, lease: 8) }
                try await complete(attempt: 2, lease: 7)
                await #expect(throws: PipelineStateMachine.Failure.self) { try await complete(attempt: 2, lease: 7) }
            }
            #expect(try PG.psql("SELECT string_agg(v::text, ',') FROM \(schema).effects") == "2", "only the fenced attempt's effect")
            #expect(try PG.psql("SELECT state FROM \(schema).jobs WHERE id = 1") == "completed")
            try Self.drop(schema)
        }
    }
}
