import PostgresWire

/// The durable queues' operations on their store (issue 18, docs/QUEUES.md), each one statement
/// or one pipeline on a `WireClient`. The runner, the protocol ops and housekeeping are built on
/// these; every change to a running job is fenced on its attempt and its host's lease epoch.
package struct QueueStore: Sendable {
    /// The schema, quoted.
    let s: String
    package let schemaName: String

    package init(schema: String) {
        s = QueueSchema.quoted(schema)
        schemaName = schema
    }

    /// A job to enqueue. JSON values are given as their text.
    package struct NewJob: Sendable {
        package var queue: String
        package var params: String?
        package var input: String?
        /// RFC 3339; nil: now.
        package var runAt: String?
        package var priority = 0
        package var uniqueKey: String?
        package var maxAttempts = 20
        package var submitter: Int?

        package init(queue: String, params: String? = nil, input: String? = nil, runAt: String? = nil, uniqueKey: String? = nil) {
            self.queue = queue
            self.params = params
            self.input = input
            self.runAt = runAt
            self.uniqueKey = uniqueKey
        }
    }

    /// A job a host took.
    package struct Taken: Sendable, Equatable {
        package var id: Int64
        package var attempt: Int
        package var maxAttempts: Int
        package var params: String?
        package var input: String?
    }

    /// Enqueues `jobs` in one transaction (one pipeline); their ids in order. A job whose
    /// `uniqueKey` an unfinished job of its queue already has answers that job's id.
    /// `notify`: queues whose hosts to wake (`wakeChannel`) when the transaction commits.
    package func enqueue(_ jobs: [NewJob], notify: [String] = [], on client: WireClient) async throws -> [Int64] {
        let insert = """
            INSERT INTO \(s).jobs (queue, params, input, run_at, state, priority, unique_key, max_attempts, submitter_uid)
            VALUES ($1, $2::jsonb, $3::jsonb, COALESCE($4::timestamptz, now()),
                    CASE WHEN $4::timestamptz > now() THEN 'scheduled' ELSE 'available' END, $5::smallint, $6, $7::int, $8::bigint)
            ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded', 'cancelled')
            DO UPDATE SET unique_key = EXCLUDED.unique_key
            RETURNING id
            """
        let rows = jobs.map { job in
            TextQuery([
                job.queue, job.params, job.input, job.runAt, String(job.priority), job.uniqueKey, String(job.maxAttempts),
                job.submitter.map(String.init),
            ])
        }
        _ = try await client.runPipeline(
            rows.map { WireStatement(insert, $0) } + wake(notify))
        return try rows.map { rows in
            guard let id = rows.rows.first?.first.flatMap({ $0 }).flatMap(Int64.init) else { throw StoreError("an INSERT returned no id") }
            return id
        }
    }

    /// Takes up to `demand` jobs of `queue` that may run now, in priority, run_at, id order, for
    /// the host holding lease `epoch`; jobs other hosts are taking are skipped, not waited for.
    package func fetch(queue: String, demand: Int, epoch: Int64, on client: WireClient) async throws -> [Taken] {
        let rows = TextQuery([queue, String(demand), String(epoch)])
        _ = try await client.run(fetchSQL, rows)
        return try Self.taken(rows)
    }

    private var fetchSQL: String {
        """
        WITH picked AS (
            SELECT id FROM \(s).jobs
            WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable') AND run_at <= now()
            ORDER BY priority, run_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED)
        UPDATE \(s).jobs j SET state = 'running', attempt = j.attempt + 1, lease = $3::bigint, attempted_at = now()
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.attempt, j.max_attempts, j.params::text, j.input::text
        """
    }

    private static func taken(_ rows: TextQuery) throws -> [Taken] {
        try rows.rows.map { row in
            guard row.count == 5, let id = row[0].flatMap({ Int64($0) }), let attempt = row[1].flatMap({ Int($0) }),
                let max = row[2].flatMap({ Int($0) })
            else { throw StoreError("a fetched job's row is malformed") }
            return Taken(id: id, attempt: attempt, maxAttempts: max, params: row[3], input: row[4])
        }.sorted { $0.id < $1.id }
    }

    /// Records a failed attempt: retryable after the backoff (attempt⁴ s, at most an hour, ±10%),
    /// or discarded after `max_attempts`, its error kept either way. False when the attempt was
    /// no longer this lease's (rescued, cancelled or handed back meanwhile): nothing changed.
    package func fail(job: Int64, attempt: Int, epoch: Int64, error: String, on client: WireClient) async throws -> Bool {
        let outcome = try await client.run(
            """
            UPDATE \(s).jobs SET
                state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END,
                errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'error', $4::text)),
                run_at = CASE WHEN attempt >= max_attempts THEN run_at
                    ELSE now() + make_interval(secs => least(power(attempt, 4), 3600) * (0.9 + random() * 0.2)) END,
                finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
                lease = NULL
            WHERE id = $1::bigint AND state = 'running' AND attempt = $2::int AND lease = $3::bigint
            """, TextQuery([String(job), String(attempt), String(epoch), error]))
        return outcome.tag == "UPDATE 1"
    }

    // MARK: Host leases

    /// A new lease for this host, valid for `seconds`; its epoch fences every job it takes.
    package func register(host: String, pid: Int, seconds: Int, on client: WireClient) async throws -> Int64 {
        let rows = TextQuery([host, String(pid), String(seconds)])
        _ = try await client.run(
            "INSERT INTO \(s).hosts (host, pid, expires_at) VALUES ($1, $2::int, now() + make_interval(secs => $3::int)) RETURNING epoch",
            rows)
        guard let epoch = rows.rows.first?.first.flatMap({ $0 }).flatMap(Int64.init) else { throw StoreError("no epoch returned") }
        return epoch
    }

    /// Extends the lease; false when it is gone (another host found it expired and rescued its
    /// jobs): the host must stop working under it and register again.
    package func renew(epoch: Int64, seconds: Int, on client: WireClient) async throws -> Bool {
        let outcome = try await client.run(
            "UPDATE \(s).hosts SET expires_at = now() + make_interval(secs => $2::int) WHERE epoch = $1::bigint",
            TextQuery([String(epoch), String(seconds)]))
        return outcome.tag == "UPDATE 1"
    }

    /// Running jobs whose lease is no longer alive (expired, or gone) become retryable at once,
    /// their attempt counted (discarded if it was the last); expired leases are deleted. The
    /// number of jobs rescued.
    package func rescue(on client: WireClient) async throws -> Int {
        let outcomes = try await client.runPipeline([
            WireStatement(
                """
                UPDATE \(s).jobs j SET
                    state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END,
                    errors = errors || jsonb_build_array(jsonb_build_object(
                        'attempt', attempt, 'at', now(), 'error', 'its host stopped renewing its lease')),
                    finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
                    run_at = now(), lease = NULL
                WHERE state = 'running'
                  AND NOT EXISTS (SELECT 1 FROM \(s).hosts h WHERE h.epoch = j.lease AND h.expires_at >= now())
                """, TextQuery([])),
            WireStatement("DELETE FROM \(s).hosts WHERE expires_at < now()", TextQuery([])),
        ])
        return Self.count(outcomes.first?.tag)
    }

    /// A stopping host's unfinished jobs back to available at once, without counting the
    /// attempt, and its lease deleted; the other hosts of `queues` are woken to take them. The
    /// number of jobs handed back.
    package func handBack(epoch: Int64, queues: [String] = [], on client: WireClient) async throws -> Int {
        let outcomes = try await client.runPipeline(
            [
                WireStatement(
                    "UPDATE \(s).jobs SET state = 'available', attempt = attempt - 1, lease = NULL "
                        + "WHERE lease = $1::bigint AND state = 'running'",
                    TextQuery([String(epoch)])),
                WireStatement("DELETE FROM \(s).hosts WHERE epoch = $1::bigint", TextQuery([String(epoch)])),
            ] + wake(queues))
        return Self.count(outcomes.first?.tag)
    }

    /// After a reconnect: jobs marked running under this host's (still live) lease that it does
    /// not run, because the fetch that took them committed but its answer was lost with the
    /// connection. They go back to available, the attempt not counted (they never started).
    package func releaseStrays(epoch: Int64, running: [Int64], queues: [String], on client: WireClient) async throws -> Int {
        let list = "{" + running.map(String.init).joined(separator: ",") + "}"
        let outcomes = try await client.runPipeline(
            [
                WireStatement(
                    "UPDATE \(s).jobs SET state = 'available', attempt = attempt - 1, lease = NULL "
                        + "WHERE lease = $1::bigint AND state = 'running' AND NOT (id = ANY($2::bigint[]))",
                    TextQuery([String(epoch), list]))
            ] + wake(queues))
        return Self.count(outcomes.first?.tag)
    }

    /// Deletes at most `batch` finished jobs older than `seconds` (of `queue`, or of every
    /// queue); how many it deleted.
    package func deleteFinished(olderThan seconds: Int, batch: Int, queue: String? = nil, on client: WireClient) async throws -> Int {
        let outcome = try await client.run(
            """
            DELETE FROM \(s).jobs WHERE id IN (
                SELECT id FROM \(s).jobs WHERE state IN ('completed', 'discarded', 'cancelled')
                  AND finished_at < now() - make_interval(secs => $1::int) AND ($3::text IS NULL OR queue = $3) LIMIT $2::int)
            """, TextQuery([String(seconds), String(batch), queue]))
        return Self.count(outcome.tag)
    }

    // MARK: Completions, wake-ups, operators

    /// The fenced completion as the last statement of a SQL job's own pipeline (one transaction):
    /// `complete()` raises P0001 when the attempt is no longer this lease's, and the job's
    /// effects roll back with it.
    package func completion(job: Int64, attempt: Int, epoch: Int64) -> (sql: String, params: [String?]) {
        (
            """
            WITH done AS (
                UPDATE \(s).jobs SET state = 'completed', finished_at = now()
                WHERE id = $1::bigint AND state = 'running' AND attempt = $2::int AND lease = $3::bigint RETURNING id)
            SELECT CASE WHEN EXISTS (SELECT 1 FROM done) THEN true ELSE \(s).fence_failed($1::bigint, $2::int) END
            """, [String(job), String(attempt), String(epoch)]
        )
    }

    /// A finished job's completion, for `completeAll`.
    package struct Completion: Sendable {
        package var id: Int64
        package var attempt: Int
        package var epoch: Int64
        /// JSON text; nil: no result.
        package var result: String?

        package init(id: Int64, attempt: Int, epoch: Int64, result: String?) {
            self.id = id
            self.attempt = attempt
            self.epoch = epoch
            self.result = result
        }
    }

    /// Completes exec jobs in one statement, each fenced on its attempt and lease (a job
    /// rescued, cancelled or handed back meanwhile is left as it is). How many it completed.
    package func completeAll(_ completions: [Completion], on client: WireClient) async throws -> Int {
        guard !completions.isEmpty else { return 0 }
        let outcome = try await client.run(completeAllSQL, TextQuery([Self.completionsJSON(completions)]))
        return Self.count(outcome.tag)
    }

    /// `completeAll` and then `fetch`, in one round trip: the shape of a host with exec queues.
    package func completeAndFetch(
        _ completions: [Completion], queue: String, demand: Int, epoch: Int64, on client: WireClient
    ) async throws -> [Taken] {
        guard !completions.isEmpty else { return try await fetch(queue: queue, demand: demand, epoch: epoch, on: client) }
        let rows = TextQuery([queue, String(demand), String(epoch)])
        _ = try await client.runPipeline([
            WireStatement(completeAllSQL, TextQuery([Self.completionsJSON(completions)])), WireStatement(fetchSQL, rows),
        ])
        return try Self.taken(rows)
    }

    private var completeAllSQL: String {
        """
        UPDATE \(s).jobs j SET state = 'completed', result = c.result, finished_at = now()
        FROM jsonb_to_recordset($1::jsonb) AS c(id bigint, attempt int, lease bigint, result jsonb)
        WHERE j.id = c.id AND j.state = 'running' AND j.attempt = c.attempt AND j.lease = c.lease
        """
    }

    static func completionsJSON(_ completions: [Completion]) -> String {
        "["
            + completions.map { "{\"id\":\($0.id),\"attempt\":\($0.attempt),\"lease\":\($0.epoch),\"result\":\($0.result ?? "null")}" }
            .joined(separator: ",") + "]"
    }

    /// Wakes every host's fetchers of `queues` (LISTEN on `wakeChannel`).
    package func notify(queues: [String], on client: WireClient) async throws {
        _ = try await client.runPipeline(wake(queues))
    }

    /// A NOTIFY on `wakeChannel` per queue, for the end of a pipeline: delivered if it commits.
    private func wake(_ queues: some Sequence<String>) -> [WireStatement] {
        queues.map { WireStatement("SELECT pg_notify($1, $2)", TextQuery([wakeChannel, $0])) }
    }

    /// The channel hosts LISTEN on for new jobs; the payload names the queue.
    package var wakeChannel: String { "poold_wake_" + schemaName }
    /// The channel hosts LISTEN on for cancelled running jobs; the payload is the job's id.
    package var cancelChannel: String { "poold_cancel_" + schemaName }

    /// A job's row for `job_status`; nil when there is no such job (or, with `submitter`, not
    /// that user's).
    package func status(job: Int64, submitter: Int?, on client: WireClient) async throws -> [String?]? {
        let rows = TextQuery([String(job), submitter.map(String.init)])
        _ = try await client.run(
            """
            SELECT queue, state, attempt, max_attempts, to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   errors::text, result::text, submitter_uid, priority, unique_key,
                   to_char(inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            FROM \(s).jobs WHERE id = $1::bigint AND ($2::bigint IS NULL OR submitter_uid = $2::bigint)
            """, rows)
        return rows.rows.first
    }

    /// Cancels a job that has not finished: its state before (`running` ones are also
    /// announced on `cancelChannel`, so that the host running it stops it; its effects roll
    /// back, for its completion is fenced). nil when there is no such job (or not `submitter`'s);
    /// a finished job's state comes back unchanged, with `cancelled` false.
    package func cancel(job: Int64, submitter: Int?, on client: WireClient) async throws -> (state: String, cancelled: Bool)? {
        let rows = TextQuery([String(job), submitter.map(String.init), cancelChannel])
        _ = try await client.run(
            """
            WITH found AS (
                SELECT id, state FROM \(s).jobs WHERE id = $1::bigint AND ($2::bigint IS NULL OR submitter_uid = $2::bigint) FOR UPDATE),
            changed AS (
                UPDATE \(s).jobs j SET state = 'cancelled', finished_at = now(), lease = NULL
                FROM found WHERE j.id = found.id AND found.state NOT IN ('completed', 'discarded', 'cancelled')
                RETURNING j.id)
            SELECT found.state, (SELECT count(*) FROM changed) > 0,
                   CASE WHEN found.state = 'running' THEN pg_notify($3, found.id::text) END
            FROM found
            """, rows)
        guard let row = rows.rows.first, row.count == 3, let state = row[0] ?? nil else { return nil }
        return (state, row[1] == "t")
    }

    /// Per queue (of `queues`): unfinished jobs by state, the age of the oldest job that may
    /// run now, and jobs finished within the last `window` seconds, by how they finished. Read
    /// through the partial indexes only: a count of every finished job would scan the whole
    /// table, which retention keeps as large as a day of jobs.
    package func stats(queues: [String], window: Int, on client: WireClient) async throws -> [String: QueueStats] {
        let rows = TextQuery([String(window)])
        _ = try await client.run(
            """
            SELECT queue, state, count(*),
                   extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 * 1000
            FROM \(s).jobs WHERE state IN ('available', 'scheduled', 'retryable') GROUP BY queue, state
            UNION ALL
            SELECT queue, state, count(*), NULL FROM \(s).jobs WHERE state = 'running' GROUP BY queue, state
            UNION ALL
            SELECT queue, 'finished:' || state, count(*), NULL FROM \(s).jobs
            WHERE state IN ('completed', 'discarded', 'cancelled') AND finished_at > now() - make_interval(secs => $1::int)
            GROUP BY queue, state
            """, rows)
        var stats = Dictionary(uniqueKeysWithValues: queues.map { ($0, QueueStats()) })
        for row in rows.rows where row.count == 4 {
            guard let queue = row[0] ?? nil, var entry = stats[queue], let state = row[1] ?? nil,
                let count = (row[2] ?? nil).flatMap({ Int($0) })
            else { continue }
            if state.hasPrefix("finished:") {
                entry.finishedRecently[String(state.dropFirst(9))] = count
            } else {
                entry.counts[state] = count
            }
            if let age = (row[3] ?? nil).flatMap({ Double($0) }) {
                entry.oldestRunnableMs = max(entry.oldestRunnableMs, Int64(age))
            }
            stats[queue] = entry
        }
        return stats
    }

    /// Leadership of housekeeping: the session-level advisory lock of this schema, held as long
    /// as `client`'s connection is (already held: true again).
    package func tryLead(on client: WireClient) async throws -> Bool {
        let rows = TextQuery(["poold.queue_housekeeping:" + schemaName])
        _ = try await client.run("SELECT pg_try_advisory_lock(hashtext($1))", rows)
        return rows.rows.first?.first == "t"
    }

    /// The row count of a tag (`UPDATE 3`, `DELETE 0`).
    static func count(_ tag: String?) -> Int {
        tag.flatMap { $0.split(separator: " ").last.flatMap { Int($0) } } ?? 0
    }
}

/// One queue's figures for `queues`.
package struct QueueStats: Sendable, Equatable {
    /// Unfinished jobs by state (scheduled, available, running, retryable).
    package var counts: [String: Int] = [:]
    /// The age of the oldest job that may run now (available, retryable or scheduled and due).
    package var oldestRunnableMs: Int64 = 0
    /// Jobs finished within the window asked for, by how (completed, discarded, cancelled).
    package var finishedRecently: [String: Int] = [:]
    package var completedRecently: Int { finishedRecently["completed"] ?? 0 }
}

package struct StoreError: Error, Sendable, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}
