import ControlClient
import ControlProtocol
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A poold that is one host of durable queues kept in the throwaway cluster: its store pool
/// "pg", `jobs` and `queues` TOML (`@SCHEMA@` becomes the test's schema).
struct QueueHostConfig {
    var schema: String
    var jobs: String
    var queues: String
    var poolMax = 12
    var grace = "3s"
    var extraPools = ""
    /// More `[daemon]` keys, and tables such as `[access]`.
    var daemon = ""
    var allowAdhoc = true

    func start(_ application: String) throws -> DaemonProcess {
        let cluster = try PG.require()
        let directory = try DaemonProcess.makeTemporaryDirectory()
        try cluster.password.write(toFile: directory + "/pg.password", atomically: true, encoding: .utf8)
        return try DaemonProcess(
            grace: grace, extra: daemon,
            pools: """
                [[pool]]
                name = "pg"
                kind = "postgres"
                url = "\(cluster.url)"
                password_file = "@DIR@/pg.password"
                application_name = "\(application)"
                max = \(poolMax)
                max_waiters = 4096
                allow_adhoc = \(allowAdhoc)

                \(extraPools)

                \(jobs)

                \(queues.replacingOccurrences(of: "@SCHEMA@", with: schema))
                """, directory: directory)
    }
}

extension DaemonProcess {
    /// Waits until every queue of this poold has reached its store (schema made, lease held).
    func waitForQueues() throws {
        let ready = try waitUntil(.seconds(15)) {
            let reply = try request(["op": .string("queues")])
            guard case .array(let queues)? = reply["queues"], !queues.isEmpty else { return false }
            return queues.allSatisfy { if case .object(let q) = $0 { q["store_reachable"] == .bool(true) } else { false } }
        }
        if !ready { throw TestFailure("the queues did not reach their store:\n\(log)") }
    }

    /// `enqueue`, checked: the job's id.
    func enqueue(_ queue: String, params: [JSONValue]? = nil, input: JSONValue? = nil, extra: JSONObject = [:]) throws -> Int64 {
        var fields: JSONObject = ["op": .string("enqueue"), "queue": .string(queue)]
        if let params { fields["params"] = .array(params) }
        if let input { fields["input"] = input }
        for entry in extra { fields[entry.key] = entry.value }
        let reply = try request(fields)
        guard case .int(let id)? = reply["job_id"] else { throw TestFailure("enqueue failed: \(reply)") }
        return id
    }

    func jobStatus(_ id: Int64) throws -> JSONObject {
        try request(["op": .string("job_status"), "job_id": .int(id)])
    }

    var pid: Int32 { process.processIdentifier }
}

/// Integers from the superuser's psql.
func psqlInt(_ sql: String) throws -> Int {
    let text = try PG.psql(sql)
    guard let value = Int(text) else { throw TestFailure("not an integer from \(sql): \(text)") }
    return value
}

extension PostgresTests {
    /// Durable queues end to end (issue 18): real poold processes as hosts of one store in the
    /// throwaway cluster, killed with SIGKILL, stopped with SIGTERM, and the cluster restarted
    /// under them.
    @Suite(.timeLimit(.minutes(4)))
    struct DurableQueueTests {
        /// A fresh schema and an effects table `<schema>.effects (n int)` anyone may write.
        static func prepare(_ schema: String) throws {
            try PG.psql("DROP SCHEMA IF EXISTS \(schema) CASCADE")
            try PG.psql(
                "CREATE SCHEMA \(schema); GRANT ALL ON SCHEMA \(schema) TO poold; "
                    + "CREATE TABLE \(schema).effects (n int NOT NULL); GRANT ALL ON \(schema).effects TO poold")
        }

        static func insertJob(_ schema: String, sleep: String = "0") -> String {
            """
            [[job]]
            name = "insert"
            pool = "pg"
            sql = "INSERT INTO \(schema).effects (n) SELECT $1::int FROM pg_sleep(\(sleep))"
            """
        }

        static func queue(_ name: String, job: String = "insert", extra: String = "") -> String {
            """
            [[queue]]
            name = "\(name)"
            store = "pg"
            job = "\(job)"
            schema = "@SCHEMA@"
            \(extra)
            """
        }

        static func enqueueBatches(_ host: DaemonProcess, queue: String, numbers: Range<Int>, batch: Int = 100) throws {
            var start = numbers.lowerBound
            while start < numbers.upperBound {
                let end = min(start + batch, numbers.upperBound)
                let jobs = (start..<end).map { JSONValue.object(["params": .array([.int(Int64($0))])]) }
                let reply = try host.request(["op": .string("enqueue"), "queue": .string(queue), "jobs": .array(jobs)])
                guard case .array(let ids)? = reply["job_ids"], ids.count == end - start else {
                    throw TestFailure("batch enqueue failed: \(reply)")
                }
                start = end
            }
        }

        // MARK: Many hosts, one dies

        @Test func threeHostsRunEveryJobOnceThoughOneIsKilled() throws {
            let schema = "poold_q_three"
            try Self.prepare(schema)
            // One job in a hundred takes 3 s: a host killed while it runs one leaves it to be
            // rescued (the server aborts the statement of a client that is gone within a second).
            // Short jobs in flight at the kill commit anyway: their pipeline, completion
            // included, was sent whole.
            let config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema, sleep: "CASE WHEN $1::int % 100 = 50 THEN 3 ELSE 0.02 END"),
                queues: Self.queue("work", extra: "concurrency = 8"))
            let app = PG.application("q3")
            let hosts = try (0..<3).map { _ in try config.start(app) }
            for host in hosts { try host.waitForQueues() }
            let total = 3000
            try Self.enqueueBatches(hosts[1], queue: "work", numbers: 0..<total)
            // Kill host 0 a third of the way in, while it runs a long job.
            let victim = hosts[0]
            let epochs = try PG.psql("SELECT epoch FROM \(schema).hosts WHERE pid = \(victim.pid)")
            let epoch = try #require(Int(epochs), "host 0 holds no lease: \(epochs)")
            let midway = try waitUntil(.seconds(60)) {
                try psqlInt("SELECT count(*) FROM \(schema).effects") >= total / 3
                    && psqlInt(
                        "SELECT count(*) FROM \(schema).jobs WHERE state = 'running' AND lease = \(epoch) "
                            + "AND (params->>0)::int % 100 = 50 AND attempted_at < now() - interval '100 milliseconds'") > 0
            }
            #expect(midway, "host 0 never ran a long job a third of the way in")
            victim.signal(SIGKILL)
            let killedAt = try PG.psql("SELECT now()")
            #expect(victim.waitForExit(timeout: .seconds(5)) != nil)
            let done = try waitUntil(.seconds(90)) {
                try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state = 'completed'") == total
            }
            let states = try PG.psql("SELECT state, count(*) FROM \(schema).jobs GROUP BY state")
            #expect(done, "not every job completed: \(states)")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == total, "each parameter exactly once")
            #expect(try psqlInt("SELECT count(DISTINCT n) FROM \(schema).effects") == total)
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state = 'running'") == 0)
            // The dead host's jobs: rescued with the attempt counted, and started again within 10 s.
            let rescued = try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE errors::text LIKE '%stopped renewing its lease%'")
            #expect(rescued > 0, "no job of the killed host was rescued")
            let late = try psqlInt(
                "SELECT count(*) FROM \(schema).jobs WHERE errors::text LIKE '%stopped renewing its lease%' "
                    + "AND attempted_at > '\(killedAt)'::timestamptz + interval '10 seconds'")
            #expect(late == 0, "\(late) of the dead host's jobs restarted more than 10 s after the kill")
            let slowest = try PG.psql(
                "SELECT extract(epoch FROM max(attempted_at) - '\(killedAt)'::timestamptz) FROM \(schema).jobs "
                    + "WHERE errors::text LIKE '%stopped renewing its lease%'")
            print("durable queues: \(rescued) jobs of the killed host restarted, the last \(slowest) s after the kill")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE attempt = 2") == rescued, "only rescued jobs ran twice")
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: The store restarts

        @Test func aPostgresRestartMidStreamLosesNothing() throws {
            let schema = "poold_q_restart"
            try Self.prepare(schema)
            let config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema, sleep: "0.005"), queues: Self.queue("work", extra: "concurrency = 8"))
            let app = PG.application("qr")
            let hosts = try (0..<2).map { _ in try config.start(app) }
            for host in hosts { try host.waitForQueues() }
            let total = 1000
            try Self.enqueueBatches(hosts[0], queue: "work", numbers: 0..<total)
            _ = try waitUntil(.seconds(30)) { try psqlInt("SELECT count(*) FROM \(schema).effects") >= total / 4 }
            try PG.ctl("restart", "-m", "fast", "-w")
            let done = waitUntil(.seconds(90)) {
                (try? psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state = 'completed'")) == total
            }
            let states = try PG.psql("SELECT state, count(*) FROM \(schema).jobs GROUP BY state")
            #expect(done, "not every job completed: \(states)")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == total)
            #expect(try psqlInt("SELECT count(DISTINCT n) FROM \(schema).effects") == total)
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state <> 'completed'") == 0)
            // Both hosts went on: new jobs still run after the restart.
            for (index, host) in hosts.enumerated() {
                let id = try host.enqueue("work", params: [.int(Int64(total + index))])
                let ran = try waitUntil(.seconds(20)) { try host.jobStatus(id)["state"] == .string("completed") }
                #expect(ran, "host \(index) runs no jobs after the restart:\n\(host.log.suffix(3000))")
            }
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: Stopping hands jobs back

        @Test func sigtermHandsRunningJobsBackWithoutCountingTheAttempt() throws {
            let schema = "poold_q_handback"
            try Self.prepare(schema)
            let config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema, sleep: "$1::int / 1000.0"), queues: Self.queue("slow"), grace: "1s")
            let app = PG.application("qh")
            let first = try config.start(app)
            try first.waitForQueues()
            // Jobs of 3 s: longer than the grace on the first host, short enough for the second.
            let ids = try (0..<4).map { _ in try first.enqueue("slow", params: [.int(3000)]) }
            let running = try waitUntil(.seconds(10)) {
                try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state = 'running'") == ids.count
            }
            #expect(running)
            let second = try config.start(app)
            try second.waitForQueues()
            first.signal(SIGTERM)
            #expect(first.waitForExit(timeout: .seconds(15)) == 0)
            #expect(first.log.contains("handed_back=4"), "\(first.log.suffix(2000))")
            let resumed = try waitUntil(.seconds(3)) {
                try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE state = 'running' AND attempt = 1") == ids.count
            }
            #expect(resumed, "the jobs did not resume on the other host at once, with their attempt not counted")
            let done = try waitUntil(.seconds(20)) {
                try ids.allSatisfy { try second.jobStatus($0)["state"] == .string("completed") }
            }
            #expect(done)
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == ids.count, "the stopped attempts rolled back")
            for id in ids { #expect(try second.jobStatus(id)["attempt"] == .int(1)) }
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        /// The resource busy: a store pool of one connection, held by a job longer than the
        /// lease. The host's own connection keeps the lease and answers `job_status` meanwhile,
        /// so the job is not rescued from under itself and runs once.
        @Test func aBusyStorePoolDoesNotHoldTheLeaseUp() throws {
            let schema = "poold_q_busy"
            try Self.prepare(schema)
            var config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema, sleep: "$1::int / 1000.0"), queues: Self.queue("slow"))
            config.poolMax = 1
            let host = try config.start(PG.application("qbusy"))
            try host.waitForQueues()
            let long = try host.enqueue("slow", params: [.int(7000)])
            let started = try waitUntil(.seconds(10)) { try host.jobStatus(long)["state"] == .string("running") }
            #expect(started)
            usleep(6_000_000)  // past the 5 s lease, the only connection still busy
            #expect(try host.jobStatus(long)["state"] == .string("running"), "job_status answers while the pool is busy")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).hosts WHERE pid = \(host.pid) AND expires_at > now()") == 1)
            let done = try waitUntil(.seconds(10)) { try host.jobStatus(long)["state"] == .string("completed") }
            #expect(done)
            #expect(try host.jobStatus(long)["attempt"] == .int(1) && host.jobStatus(long)["errors"] == .array([]), "never rescued")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == 1)
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: Retries, schedules, uniqueness, cancel, retention

        @Test func failuresAreRetriedAfterTheBackoffThenDiscardedWithTheirErrors() throws {
            let schema = "poold_q_retry"
            try Self.prepare(schema)
            let config = QueueHostConfig(
                schema: schema,
                jobs: """
                    [[job]]
                    name = "divide"
                    pool = "pg"
                    sql = "INSERT INTO \(schema).effects (n) SELECT 100 / $1::int"
                    """,
                queues: Self.queue("math", job: "divide", extra: "max_attempts = 2"))
            let host = try config.start(PG.application("qf"))
            try host.waitForQueues()
            let bad = try host.enqueue("math", params: [.int(0)])
            let good = try host.enqueue("math", params: [.int(4)])
            let once = try host.enqueue("math", params: [.int(0)], extra: ["max_attempts": .int(1)])
            let discarded = try waitUntil(.seconds(20)) { try host.jobStatus(bad)["state"] == .string("discarded") }
            let status = try host.jobStatus(bad)
            #expect(discarded, "\(status)")
            #expect(status["attempt"] == .int(2) && status["max_attempts"] == .int(2))
            guard case .array(let errors)? = status["errors"] else { throw TestFailure("no errors in \(status)") }
            #expect(errors.count == 2)
            for case .object(let error) in errors {
                guard case .string(let text)? = error["error"] else { throw TestFailure("\(error)") }
                #expect(text.contains("division by zero"))
            }
            #expect(try host.jobStatus(good)["state"] == .string("completed"))
            #expect(try host.jobStatus(once)["state"] == .string("discarded"))
            #expect(try host.jobStatus(once)["attempt"] == .int(1))
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == 1)
            // The attempts are counted in metrics, by how they ended.
            guard case .string(let metrics)? = try host.request(["op": .string("metrics")])["text"] else {
                throw TestFailure("no metrics text")
            }
            #expect(metrics.contains(#"poold_queue_attempts_total{queue="math",outcome="completed"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"poold_queue_attempts_total{queue="math",outcome="discarded"} 2"#))
            #expect(metrics.contains(#"poold_queue_attempts_total{queue="math",outcome="failed"} 1"#))
            // poolctl's tables, as an operator reads them.
            let poolctl = URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl").path
            let queues = try Program.run(poolctl, ["--socket", host.socket, "queues"])
            #expect(queues.status == 0 && queues.out.contains("QUEUE") && queues.out.contains("math"), "\(queues)")
            let shown = try Program.run(poolctl, ["--socket", host.socket, "job", "\(bad)"])
            #expect(shown.status == 0 && shown.out.contains("discarded") && shown.out.contains("attempt 2 failed"), "\(shown)")
            let enqueued = try Program.run(poolctl, ["--socket", host.socket, "enqueue", "math", "5"])
            #expect(enqueued.status == 0 && Int64(enqueued.out.trimmingCharacters(in: .whitespacesAndNewlines)) != nil, "\(enqueued)")
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        @Test func runAtSchedulesAJobAndUniqueKeyAnswersTheExistingJob() async throws {
            let schema = "poold_q_sched"
            try Self.prepare(schema)
            let config = QueueHostConfig(schema: schema, jobs: Self.insertJob(schema), queues: Self.queue("later"))
            let host = try config.start(PG.application("qs"))
            try host.waitForQueues()
            let runAt = try PG.psql(
                "SELECT to_char((now() + interval '2 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            let id = try host.enqueue("later", params: [.int(1)], extra: ["run_at": .string(runAt)])
            #expect(try host.jobStatus(id)["state"] == .string("scheduled"))
            let ran = try waitUntil(.seconds(10)) { try host.jobStatus(id)["state"] == .string("completed") }
            #expect(ran)
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE id = \(id) AND attempted_at >= run_at") == 1)

            // Eight clients enqueue the same unique_key at once: one job, eight times its id.
            let keyText = "once-\(UInt32.random(in: 0 ... .max))"
            let key = JSONValue.string(keyText)
            let far = JSONValue.string("2999-01-01T00:00:00Z")
            let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
                for n in 0..<8 {
                    group.addTask { try host.enqueue("later", params: [.int(Int64(100 + n))], extra: ["unique_key": key, "run_at": far]) }
                }
                return try await group.reduce(into: [Int64]()) { $0.append($1) }
            }
            #expect(ids.count == 8 && Set(ids).count == 1, "\(ids)")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs WHERE unique_key = '\(keyText)'") == 1)
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        @Test func jobCancelStopsAnAvailableJobAndARunningOne() throws {
            let schema = "poold_q_cancel"
            try Self.prepare(schema)
            let config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema, sleep: "$1::int / 1000.0"), queues: Self.queue("slow"))
            let host = try config.start(PG.application("qc"))
            try host.waitForQueues()
            let waiting = try host.enqueue("slow", params: [.int(1)], extra: ["run_at": .string("2999-01-01T00:00:00Z")])
            let cancelled = try host.request(["op": .string("job_cancel"), "job_id": .int(waiting)])
            #expect(cancelled["cancelled"] == .bool(true) && cancelled["was"] == .string("scheduled"), "\(cancelled)")
            #expect(try host.jobStatus(waiting)["state"] == .string("cancelled"))

            let long = try host.enqueue("slow", params: [.int(30_000)])
            let started = try waitUntil(.seconds(10)) { try host.jobStatus(long)["state"] == .string("running") }
            #expect(started)
            let stop = try host.request(["op": .string("job_cancel"), "job_id": .int(long)])
            #expect(stop["cancelled"] == .bool(true) && stop["was"] == .string("running"), "\(stop)")
            // The host stops it: its statement is cancelled on the server, its effect rolled back.
            let gone = try waitUntil(.seconds(10)) {
                let jobs = try host.request(["op": .string("jobs")])
                return jobs["jobs"] == .array([])
            }
            #expect(gone, "the cancelled job still runs on its host")
            #expect(try host.jobStatus(long)["state"] == .string("cancelled"))
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects") == 0)
            let again = try host.request(["op": .string("job_cancel"), "job_id": .int(long)])
            #expect(again["cancelled"] == .bool(false) && again["state"] == .string("cancelled"))
            let unknown = try host.request(["op": .string("job_cancel"), "job_id": .int(999_999)])
            #expect(unknown["ok"] == .bool(false))
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        @Test func finishedJobsAreDeletedAfterTheRetention() throws {
            let schema = "poold_q_retention"
            try Self.prepare(schema)
            let config = QueueHostConfig(
                schema: schema, jobs: Self.insertJob(schema), queues: Self.queue("brief", extra: "retention = \"1s\""))
            let host = try config.start(PG.application("qt"))
            try host.waitForQueues()
            let id = try host.enqueue("brief", params: [.int(7)])
            let kept = try host.enqueue("brief", params: [.int(8)], extra: ["run_at": .string("2999-01-01T00:00:00Z")])
            let deleted = try waitUntil(.seconds(10)) {
                try host.jobStatus(id)["ok"] == .bool(false)
            }
            #expect(deleted, "a finished job outlived its retention")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).effects WHERE n = 7") == 1)
            #expect(try host.jobStatus(kept)["state"] == .string("scheduled"), "unfinished jobs are kept")
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: Exec queues

        @Test func execQueuesGiveWorkersTheJobIdAndAttemptAndKeepTheirOutput() throws {
            let schema = "poold_q_exec"
            try Self.prepare(schema)
            let worker = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("workers/echo.py").path
            let config = QueueHostConfig(
                schema: schema, jobs: "",
                queues: """
                    [[queue]]
                    name = "echo"
                    store = "pg"
                    pool = "workers"
                    schema = "@SCHEMA@"
                    max_attempts = 3
                    """,
                extraPools: """
                    [[pool]]
                    name = "workers"
                    kind = "exec"
                    command = ["/usr/bin/python3", "\(worker)"]
                    max = 2
                    """)
            let host = try config.start(PG.application("qe"))
            try host.waitForQueues()
            let id = try host.enqueue("echo", input: .object(["envelope": .bool(true)]))
            let plain = try host.enqueue("echo", input: .object(["x": .int(1)]))
            let failing = try host.enqueue("echo", input: .object(["fail": .string("no such mailbox")]), extra: ["max_attempts": .int(1)])
            let done = try waitUntil(.seconds(20)) {
                try [id, plain].allSatisfy { try host.jobStatus($0)["state"] == .string("completed") }
                    && host.jobStatus(failing)["state"] == .string("discarded")
            }
            #expect(done)
            #expect(try host.jobStatus(id)["result"] == .object(["job_id": .int(id), "attempt": .int(1)]))
            #expect(try host.jobStatus(plain)["result"] == .object(["x": .int(1)]))
            let errors = try host.jobStatus(failing)["errors"]
            #expect("\(String(describing: errors))".contains("no such mailbox"))
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: Bad input

        @Test func badEnqueuesAreRefusedWithWhatToFix() throws {
            let schema = "poold_q_bad"
            try Self.prepare(schema)
            let config = QueueHostConfig(schema: schema, jobs: Self.insertJob(schema), queues: Self.queue("work"))
            let host = try config.start(PG.application("qb"))
            try host.waitForQueues()
            func refusal(_ fields: JSONObject) throws -> (code: String, message: String) {
                let reply = try host.request(fields)
                guard reply["ok"] == .bool(false), case .object(let error)? = reply["error"], case .string(let code)? = error["code"],
                    case .string(let message)? = error["message"]
                else { throw TestFailure("not refused: \(reply)") }
                return (code, message)
            }
            let enqueue = JSONValue.string("enqueue")
            let unknown = try refusal(["op": enqueue, "queue": .string("wrok"), "params": .array([.int(1)])])
            #expect(unknown.code == "bad_request" && unknown.message.contains("did you mean \"work\""), "\(unknown)")
            let tooMany = try refusal(["op": enqueue, "queue": .string("work"), "params": .array([.int(1), .int(2)])])
            #expect(tooMany.code == "bad_request" && tooMany.message.contains("takes 1 parameter"), "\(tooMany)")
            let none = try refusal(["op": enqueue, "queue": .string("work")])
            #expect(none.code == "bad_request" && none.message.contains("takes 1 parameter"), "\(none)")
            let input = try refusal(["op": enqueue, "queue": .string("work"), "input": .object([:])])
            #expect(input.code == "bad_request" && input.message.contains("not \"input\""), "\(input)")
            let date = try refusal(["op": enqueue, "queue": .string("work"), "params": .array([.int(1)]), "run_at": .string("tomorrow")])
            #expect(date.code == "bad_request" && date.message.contains("RFC 3339"), "\(date)")
            let noOffset = try refusal([
                "op": enqueue, "queue": .string("work"), "params": .array([.int(1)]), "run_at": .string("2026-12-07T18:00:00"),
            ])
            #expect(noOffset.code == "bad_request")
            let huge = (0..<1001).map { JSONValue.object(["params": .array([.int(Int64($0))])]) }
            let big = try refusal(["op": enqueue, "queue": .string("work"), "jobs": .array(huge)])
            #expect(big.code == "too_large" && big.message.contains("at most 1000"), "\(big)")
            // A bad entry in a batch names its index, and nothing of the batch is enqueued.
            let mixed: [JSONValue] = [.object(["params": .array([.int(1)])]), .object(["params": .array([.string("x"), .int(2)])])]
            let entry = try refusal(["op": enqueue, "queue": .string("work"), "jobs": .array(mixed)])
            #expect(entry.message.hasPrefix("jobs[1]"), "\(entry)")
            #expect(try psqlInt("SELECT count(*) FROM \(schema).jobs") == 0)
            let missing = try refusal(["op": .string("job_status"), "job_id": .int(424_242)])
            #expect(missing.code == "no_such_job")
            #expect(host.log.contains("allows ad-hoc SQL"), "a store with allow_adhoc = true is warned about")
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        // MARK: Who may do what

        /// Real users through poolctl: submitters enqueue and see only their own jobs,
        /// observers only look, operators see and cancel everyone's; the store refuses
        /// submitters' ad-hoc SQL, which could otherwise rewrite the queue's tables.
        @Test func rolesAgainstTheQueueOpsWithRealUsers() throws {
            try AccessTests.ensureUsers()
            let schema = "poold_q_roles"
            try Self.prepare(schema)
            var config = QueueHostConfig(schema: schema, jobs: Self.insertJob(schema), queues: Self.queue("work"))
            config.allowAdhoc = false
            config.daemon = """
                socket_mode = "0666"

                [access]
                operators = ["poold-t-op"]
                submitters = ["@\(AccessTests.submitterGroup)"]
                observers = ["poold-t-obs"]
                """
            let host = try config.start(PG.application("qa"))
            try host.waitForQueues()
            let poolctl = try AccessTests.installPoolctl(for: host)
            func poolctlAs(_ user: String, _ arguments: [String]) throws -> (status: Int32, reply: JSONObject) {
                let (status, text) = try AccessTests.poolctl(user, poolctl, host.socket, arguments)
                guard case .object(let reply) = try JSON.parse(Array(text.utf8)) else { throw TestFailure("not JSON: \(text)") }
                return (status, reply)
            }
            func code(_ reply: JSONObject) -> JSONValue? {
                if case .object(let error)? = reply["error"] { return error["code"] }
                return nil
            }
            let (enqueued, mine) = try poolctlAs("poold-t-sub", ["enqueue", "work", "5"])
            #expect(enqueued == 0, "\(mine)")
            guard case .int(let own)? = mine["job_id"] else { throw TestFailure("no job id: \(mine)") }
            let (operatorStatus, theirs) = try poolctlAs("poold-t-op", ["enqueue", "work", "6", "--run-at", "2999-01-01T00:00:00Z"])
            #expect(operatorStatus == 0)
            guard case .int(let other)? = theirs["job_id"] else { throw TestFailure("no job id: \(theirs)") }

            #expect(try poolctlAs("poold-t-sub", ["job", "\(own)"]).reply["queue"] == .string("work"))
            let peek = try poolctlAs("poold-t-sub", ["job", "\(other)"])
            #expect(peek.status == 1 && code(peek.reply) == .string("no_such_job"), "a submitter sees only its own jobs: \(peek.reply)")
            let meddle = try poolctlAs("poold-t-sub", ["job", "\(other)", "--cancel"])
            #expect(meddle.status == 1 && code(meddle.reply) == .string("no_such_job"), "\(meddle.reply)")
            #expect(try host.jobStatus(other)["state"] == .string("scheduled"), "the operator's job is untouched")
            let observer = try poolctlAs("poold-t-obs", ["enqueue", "work", "7"])
            #expect(observer.status == 1 && code(observer.reply) == .string("unauthorized"), "\(observer.reply)")
            let look = try poolctlAs("poold-t-obs", ["queues"])
            #expect(look.status == 0 && look.reply["queues"] != nil)
            let stranger = try poolctlAs("poold-t-none", ["queues"])
            #expect(code(stranger.reply) == .string("unauthorized"))
            #expect(try poolctlAs("poold-t-op", ["job", "\(own)"]).reply["job_id"] == .int(own), "operators see every job")
            let cancelled = try poolctlAs("poold-t-op", ["job", "\(other)", "--cancel"])
            #expect(cancelled.reply["cancelled"] == .bool(true))
            // A hostile submitter's SQL on the store: refused, the queue's tables untouched.
            let tamper = try poolctlAs("poold-t-sub", ["run", "pg", "UPDATE \(schema).jobs SET state = 'completed'"])
            #expect(tamper.status == 1 && code(tamper.reply) == .string("unauthorized"), "\(tamper.reply)")
            #expect(host.log.contains("allows ad-hoc SQL") == false, "no warning for a store without ad-hoc SQL")
            let done = try waitUntil(.seconds(10)) { try host.jobStatus(own)["state"] == .string("completed") }
            #expect(done)
            #expect(
                try psqlInt("SELECT submitter_uid FROM \(schema).jobs WHERE id = \(own)") == Int(getpwnam("poold-t-sub").pointee.pw_uid))
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
        }

        /// `--check-config` reads each store's schema version without changing it: missing and
        /// older are fine (poold makes them current at start), newer is refused.
        @Test func checkConfigReportsTheStoresSchema() throws {
            let schema = "poold_q_check"
            try Self.prepare(schema)
            let config = QueueHostConfig(schema: schema, jobs: Self.insertJob(schema), queues: Self.queue("work"))
            let host = try config.start(PG.application("qk"))
            func check() throws -> (status: Int32, err: String) {
                let result = try Program.run(DaemonProcess.binary, ["--check-config", "--config", host.configPath])
                return (result.status, result.err)
            }
            try host.waitForQueues()
            let current = try check()
            #expect(current.status == 0 && current.err.contains("schema \(schema)): version 2, current"), "\(current.err)")
            try PG.psql("UPDATE \(schema).schema_version SET version = 99")
            let newer = try check()
            #expect(newer.status == 1 && newer.err.contains("version 99 is newer than this poold knows (2)"), "\(newer.err)")
            try PG.psql("DROP SCHEMA \(schema) CASCADE")
            let missing = try check()
            #expect(missing.status == 0 && missing.err.contains("no schema yet"), "\(missing.err)")
        }
    }
}
