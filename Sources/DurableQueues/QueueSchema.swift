import NIOCore
import PostgresWire

/// The durable queues' tables in their PostgreSQL store (issue 18, docs/QUEUES.md), created and
/// migrated at start. Every poold pointed at one store runs this; an advisory lock held for the
/// migrating transaction lets one of them do the work while the others wait and then find the
/// schema current. A store whose schema is newer than this poold knows is refused, not touched.
package enum QueueSchema {
    /// The newest version this poold knows; `migrations[n - 1]` brings a schema from n - 1 to n.
    package static var version: Int { migrations.count }

    /// What `migrate` found and did.
    package enum Outcome: Sendable, Equatable {
        case created(version: Int)
        case migrated(from: Int, to: Int)
        case current(version: Int)
    }

    package struct Refused: Error, Sendable, CustomStringConvertible {
        package var description: String
    }

    /// Creates or migrates `schema` on `client`'s database, in one transaction.
    package static func migrate(_ client: WireClient, schema: String) async throws -> Outcome {
        let name = quoted(schema)
        _ = try await client.execute("BEGIN")
        do {
            // One migrator per schema at a time, whichever poold gets there first.
            _ = try await client.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [text("poold.queue_schema:" + schema)])
            let found = try await currentVersion(client, schema: schema)
            if found > version {
                throw Refused(
                    description: "schema \(name) is at version \(found), and this poold knows versions up to \(version): "
                        + "upgrade poold on this host, or give its queues another schema")
            }
            for step in found..<version {
                for statement in migrations[step](name) { _ = try await client.execute(statement) }
            }
            if found < version {
                _ = try await client.execute("UPDATE \(name).schema_version SET version = \(version)")
            }
            _ = try await client.execute("COMMIT")
            return found == version
                ? .current(version: found) : found == 0 ? .created(version: version) : .migrated(from: found, to: version)
        } catch {
            _ = try? await client.execute("ROLLBACK")
            throw error
        }
    }

    /// 0 when the schema or its version table does not exist.
    package static func currentVersion(_ client: WireClient, schema: String) async throws -> Int {
        let table = try await client.execute("SELECT to_regclass($1) IS NOT NULL", [text(quoted(schema) + ".schema_version")])
        guard let cell = table.rows.first?.columns.first ?? nil, String(buffer: cell) == "t" else { return 0 }
        let result = try await client.execute("SELECT version FROM \(quoted(schema)).schema_version")
        guard let cell = result.rows.first?.columns.first ?? nil, let version = Int(String(buffer: cell)) else {
            throw Refused(description: "schema \(quoted(schema)) has a schema_version table without a version")
        }
        return version
    }

    /// An identifier as SQL writes it: in double quotes, inner ones doubled.
    package static func quoted(_ identifier: String) -> String {
        "\"" + identifier.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }

    private static func text(_ value: String) -> Frontend.Parameter {
        Frontend.Parameter(bytes: Array(value.utf8), binary: false)
    }

    /// Each migration's statements, given the quoted schema name.
    static let migrations: [@Sendable (String) -> [String]] = [
        { s in
            [
                "CREATE SCHEMA IF NOT EXISTS \(s)",
                "CREATE TABLE \(s).schema_version (version int NOT NULL)",
                "INSERT INTO \(s).schema_version VALUES (0)",
                """
                CREATE TABLE \(s).jobs (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    queue text NOT NULL,
                    state text NOT NULL DEFAULT 'available' CHECK (state IN
                        ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
                    priority smallint NOT NULL DEFAULT 0,
                    run_at timestamptz NOT NULL DEFAULT now(),
                    attempt int NOT NULL DEFAULT 0,
                    max_attempts int NOT NULL DEFAULT 20,
                    lease bigint,
                    params jsonb,
                    input jsonb,
                    unique_key text,
                    submitter_uid bigint,
                    errors jsonb NOT NULL DEFAULT '[]',
                    result jsonb,
                    inserted_at timestamptz NOT NULL DEFAULT now(),
                    attempted_at timestamptz,
                    finished_at timestamptz
                ) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01)
                """,
                "CREATE INDEX jobs_fetch ON \(s).jobs (queue, priority, run_at, id) WHERE state IN ('available', 'scheduled', 'retryable')",
                "CREATE INDEX jobs_running ON \(s).jobs (lease) WHERE state = 'running'",
                "CREATE INDEX jobs_finished ON \(s).jobs (finished_at) WHERE state IN ('completed', 'discarded', 'cancelled')",
                """
                CREATE UNIQUE INDEX jobs_unique ON \(s).jobs (queue, unique_key)
                    WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded', 'cancelled')
                """,
                """
                CREATE TABLE \(s).hosts (
                    epoch bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    host text NOT NULL,
                    pid int NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    expires_at timestamptz NOT NULL
                )
                """,
                // The fenced completion: in the job's own transaction, so that a job rescued
                // meanwhile rolls its effect back instead of committing it twice.
                """
                CREATE FUNCTION \(s).complete(job bigint, job_attempt int, job_lease bigint, job_result jsonb) RETURNS void
                LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE \(s).jobs SET state = 'completed', result = job_result, finished_at = now()
                    WHERE id = job AND state = 'running' AND attempt = job_attempt AND lease = job_lease;
                    IF NOT FOUND THEN
                        RAISE EXCEPTION 'job % attempt % is no longer this host''s to complete', job, job_attempt
                            USING ERRCODE = 'P0001', HINT = 'it was rescued, cancelled or handed back meanwhile';
                    END IF;
                END $$
                """,
            ]
        },
        // 2: the fence without PL/pgSQL on the path of every job (`QueueStore.completion`):
        // the function only raises, when the fence refused a completion.
        { s in
            [
                """
                CREATE FUNCTION \(s).fence_failed(job bigint, job_attempt int) RETURNS boolean
                LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'job % attempt % is no longer this host''s to complete', job, job_attempt
                        USING ERRCODE = 'P0001', HINT = 'it was rescued, cancelled or handed back meanwhile';
                END $$
                """
            ]
        },
    ]
}
