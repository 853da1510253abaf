import ControlClient
import ControlProtocol
import Foundation
import Testing

/// PostgreSQL pools against the real throwaway cluster (issue 6). Serialized: some tests
/// stop or restart the server.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct PostgresTests {
    @Test func everyTypeMapsToJSON() throws {
        let daemon = try PG.daemon(PG.application("types"))
        // JSON-typed results, exactly.
        let exact: [(String, JSONValue)] = [
            ("true", .bool(true)),
            ("32767::int2", .int(32767)),
            ("(-2147483648)::int4", .int(-2_147_483_648)),
            ("'x'::char(3)", .string("x  ")),
            ("9007199254740993::int8", .int(9_007_199_254_740_993)),
            ("42::oid", .int(42)),
            ("1.5::float4", .double(1.5)),
            ("-2.25e300::float8", .double(-2.25e300)),
            ("'NaN'::float8", .string("NaN")),
            ("'-Infinity'::float4", .string("-Infinity")),
            ("'{\"a\": [1, 2.5, null, \"x\"]}'::json", .object(["a": .array([.int(1), .double(2.5), .null, .string("x")])])),
            ("'{\"b\": {\"c\": true}}'::jsonb", .object(["b": .object(["c": .bool(true)])])),
            ("'\\x00ff10'::bytea", .object(["base64": .string("AP8Q")])),
            ("'2024-02-29 13:45:30.123456'::timestamp", .string("2024-02-29T13:45:30.123456")),
            ("'2024-02-29 13:45:30+02'::timestamptz", .string("2024-02-29T11:45:30Z")),
            ("'1999-12-31 23:59:59.5+00'::timestamptz", .string("1999-12-31T23:59:59.5Z")),
            ("'infinity'::timestamptz", .string("infinity")),
            ("ARRAY[1, NULL, 3]::int4[]", .array([.int(1), .null, .int(3)])),
            ("ARRAY[['a', 'b'], ['c', 'd']]", .array([.array([.string("a"), .string("b")]), .array([.string("c"), .string("d")])])),
            ("'{}'::int[]", .array([])),
            ("ARRAY['{\"k\": 1}'::jsonb]", .array([.object(["k": .int(1)])])),
            ("NULL::int", .null),
            ("NULL::text", .null),
        ]
        for (expression, expected) in exact {
            let reply = try daemon.sql("SELECT \(expression) AS v")
            #expect(reply.ok, "\(expression): \(reply)")
            #expect(reply.rows?.first?.first == expected, "\(expression) gave \(reply.rows ?? [])")
            #expect(reply["columns"] == .array([.string("v")]))
        }
        // Types shown as text: the same text PostgreSQL itself prints (its output function,
        // which format's %s calls; a cast to text can differ, e.g. inet shows /32).
        let asText = [
            "123456789.000100::numeric", "-0.5::numeric", "'NaN'::numeric", "0.0001::numeric", "1e20::numeric",
            "'héllo wörld'::text", "'ab'::varchar(5)", "'nm'::name",
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
            "'2024-02-29'::date", "'0044-03-15 BC'::date", "'infinity'::date", "'1970-01-01'::date",
            "'13:45:30.25'::time", "'00:00:00'::time", "'13:45:30+05:30'::timetz",
            "'1 year 2 mons 3 days 04:05:06.5'::interval", "'-1 day -02:00:00'::interval", "'0'::interval",
            "'3 days'::interval", "'-00:00:01.25'::interval",
            "'192.168.1.5'::inet", "'192.168.1.5/24'::inet", "'10.0.0.0/8'::cidr", "'2001:db8::1'::inet",
            "'::ffff:1.2.3.4'::inet", "'::1.2.3.4'::inet", "'::1'::inet", "'fe80::/10'::cidr", "'1:0:0:2:0:0:0:3'::inet",
        ]
        for expression in asText {
            let reply = try daemon.sql("SELECT \(expression) AS v, format('%s', \(expression)) AS t")
            guard let row = reply.rows?.first, row.count == 2 else {
                Issue.record("\(expression): \(reply)")
                continue
            }
            #expect(row[0] == row[1], "\(expression): poold gave \(row[0]), PostgreSQL prints \(row[1])")
        }
        // An enum (a type poold does not know) comes back as its label.
        try PG.psql("DROP TYPE IF EXISTS mood CASCADE; CREATE TYPE mood AS ENUM ('sad', 'happy')")
        #expect(try daemon.sql("SELECT 'happy'::mood AS v").rows == [[.string("happy")]])
    }

    @Test func paramsBindWithSensibleTypes() throws {
        let daemon = try PG.daemon(PG.application("params"))
        let reply = try daemon.sql(
            "SELECT $1::int + 1, $2::float8 * 2, $3 || '!', $4::bool, $5::int IS NULL, length($6::bytea), $7::timestamptz",
            [
                .int(41), .double(1.25), .string("hi"), .bool(true), .null, .object(["base64": .string("AAEC")]),
                .string("2024-01-02T03:04:05Z"),
            ])
        #expect(reply.ok, "\(reply)")
        #expect(
            reply.rows == [[.int(42), .double(2.5), .string("hi!"), .bool(true), .bool(true), .int(3), .string("2024-01-02T03:04:05Z")]])

        // A string compared with a column takes the column's type (no "operator does not exist").
        try PG.psql("DROP TABLE IF EXISTS events; CREATE TABLE events (at timestamptz, n bigint); GRANT ALL ON events TO poold")
        #expect(
            try daemon.sql(
                "INSERT INTO events VALUES ($1, $2), ($3, $4)",
                [.string("2024-05-01 10:00:00+00"), .int(1), .string("2024-06-01T10:00:00Z"), .int(2)])["affected"] == .int(2))
        let later = try daemon.sql("SELECT n FROM events WHERE at > $1 ORDER BY n", [.string("2024-05-15T00:00:00Z")])
        #expect(later.rows == [[.int(2)]])
        #expect(try daemon.sql("UPDATE events SET n = n + 10")["affected"] == .int(2))
        #expect(try daemon.sql("DELETE FROM events WHERE n > $1", [.int(11)])["affected"] == .int(1))
        #expect(try daemon.sql("SELECT n FROM events")["affected"] == .null)

        let mismatch = try daemon.sql("SELECT $1::int", [])
        #expect(mismatch.errorCode == "bad_request", "\(mismatch)")
        #expect(mismatch.errorMessage?.contains("requires 1") == true)
        let two = try daemon.sql("SELECT 1; SELECT 2")
        #expect(two.errorCode == "bad_request")
        #expect(two.errorMessage?.contains("batch") == true)
        let missing = try daemon.sql("SELECT * FROM no_such_table")
        #expect(missing.errorCode == "sql_error")
        #expect(missing.errorMessage?.contains("no_such_table") == true)
        guard case .object(let error)? = missing["error"], case .object(let detail)? = error["detail"] else {
            Issue.record("no error detail: \(missing)")
            return
        }
        #expect(detail["sqlstate"] == .string("42P01"))
        // Errors leave the connection usable: one connection served all of this.
        #expect(try daemon.poolState()["open"] == .int(1))
    }

    @Test func preparedStatementsBehaveLikeUnprepared() throws {
        let daemon = try PG.daemon(PG.application("prepared"), max: 1)
        // Params the server typed when it prepared the statement, in their binary format.
        for text in ["123.4500", "-0.00001", "10000", "0", "+7", "0.5", "99999999999999999999.123"] {
            let reply = try daemon.sql("SELECT $1::numeric AS n, format('%s', $1::numeric) AS t", [.string(text)])
            guard let row = reply.rows?.first, row.count == 2 else {
                Issue.record("\(text): \(reply)")
                continue
            }
            #expect(row[0] == row[1], "numeric \(text): \(row)")
        }
        #expect(try daemon.sql("SELECT $1::numeric * 2", [.int(21)]).rows == [[.string("42")]])
        #expect(
            try daemon.sql("SELECT $1::uuid", [.string("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")]).rows == [
                [.string("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
            ])
        #expect(try daemon.sql("SELECT $1::jsonb -> 'a'", [.string("{\"a\": [1, true]}")]).rows == [[.array([.int(1), .bool(true)])]])
        #expect(try daemon.sql("SELECT $1::int2 + 1", [.int(7)]).rows == [[.int(8)]])
        #expect(try daemon.sql("SELECT $1::float4", [.double(0.5)]).rows == [[.double(0.5)]])
        // They were prepared once on the one connection, not parsed per run.
        guard case .int(let count)? = try daemon.sql("SELECT count(*) FROM pg_prepared_statements").rows?.first?.first else {
            Issue.record("no count of prepared statements")
            return
        }
        #expect(count >= 5, "\(count) statements prepared")
        // A value that does not fit the inferred type runs unprepared: the server converts it.
        try PG.psql("DROP TABLE IF EXISTS nums; CREATE TABLE nums (k int PRIMARY KEY, v text); GRANT ALL ON nums TO poold")
        #expect(try daemon.sql("INSERT INTO nums VALUES ($1, $2)", [.int(1), .string("one")])["affected"] == .int(1))
        #expect(try daemon.sql("SELECT v FROM nums WHERE k = $1", [.string("1")]).rows == [[.string("one")]])
        #expect(try daemon.sql("SELECT v FROM nums WHERE k = $1", [.int(5_000_000_000)]).rows == [])
        #expect(try daemon.sql("SELECT v FROM nums WHERE k = $1", [.int(1)]).rows == [[.string("one")]])
        // The table changes under a cached plan: the next run still answers, with the new columns.
        #expect(try daemon.sql("SELECT * FROM nums")["columns"] == .array([.string("k"), .string("v")]))
        try PG.psql("ALTER TABLE nums ADD COLUMN w int DEFAULT 3")
        let altered = try daemon.sql("SELECT * FROM nums")
        #expect(altered["columns"] == .array([.string("k"), .string("v"), .string("w")]), "\(altered)")
        #expect(altered.rows == [[.int(1), .string("one"), .int(3)]])
        // A client that deallocates every statement does not break the cache either.
        #expect(try daemon.sql("DEALLOCATE ALL").ok)
        #expect(try daemon.sql("SELECT v FROM nums WHERE k = $1", [.int(1)]).rows == [[.string("one")]])
        #expect(try daemon.sql("UPDATE nums SET w = w + 1")["affected"] == .int(1))
        #expect(try daemon.sql("SELECT * FROM nums WHERE false")["affected"] == .null)
    }

    @Test func transactionsCommitOrRollBack() throws {
        let daemon = try PG.daemon(PG.application("tx"))
        try PG.psql(
            "DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); GRANT ALL ON accounts TO "
                + "poold"
        )
        let ok = try daemon.request([
            "op": .string("run"), "pool": .string("pg"), "transaction": .bool(true),
            "batch": .array([
                .object(["sql": .string("INSERT INTO accounts VALUES (1, 100)")]),
                .object(["sql": .string("INSERT INTO accounts VALUES ($1, $2)"), "params": .array([.int(2), .int(50)])]),
                .object(["sql": .string("SELECT sum(balance) AS total FROM accounts")]),
            ]),
        ])
        #expect(ok.ok, "\(ok)")
        guard case .array(let results)? = ok["results"], results.count == 3, case .object(let third) = results[2] else {
            Issue.record("batch results: \(ok)")
            return
        }
        #expect(third["rows"] == .array([.array([.int(150)])]))

        let failed = try daemon.request([
            "op": .string("run"), "pool": .string("pg"), "transaction": .bool(true),
            "batch": .array([
                .object(["sql": .string("UPDATE accounts SET balance = balance - 70 WHERE id = 1")]),
                .object(["sql": .string("INSERT INTO accounts VALUES (2, 0)")]),  // duplicate key
            ]),
        ])
        #expect(failed.errorCode == "sql_error")
        guard case .object(let error)? = failed["error"], case .object(let detail)? = error["detail"] else {
            Issue.record("no detail: \(failed)")
            return
        }
        #expect(detail["index"] == .int(1))
        #expect(detail["sqlstate"] == .string("23505"))
        #expect(try PG.psql("SELECT balance FROM accounts WHERE id = 1") == "100", "the first UPDATE was rolled back")

        // A job may not leave its own transaction open on a pooled connection.
        let open = try daemon.sql("BEGIN")
        #expect(open.errorCode == "bad_request", "\(open)")
        #expect(try daemon.sql("INSERT INTO accounts VALUES (3, 1)").ok)
        #expect(try PG.psql("SELECT count(*) FROM accounts WHERE id = 3") == "1", "the next job is not inside a stray transaction")
    }

    @Test func timeoutStopsTheQueryOnTheServer() throws {
        let application = PG.application("timeout")
        let daemon = try PG.daemon(application, max: 1)
        let pid = try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first
        let started = ContinuousClock.now
        let reply = try daemon.sql("SELECT pg_sleep(30)", timeoutMs: 1000)
        #expect(reply.errorCode == "timeout", "\(reply)")
        #expect(started.duration(to: .now) < .seconds(3), "the answer came after \(started.duration(to: .now))")
        #expect(try waitUntil(.seconds(2)) { try PG.connections(application, activeOnly: true) == 0 }, "pg_sleep still runs on the server")
        // The connection was clean: the same server process serves the next job.
        #expect(try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first == pid)

        // Inside a transaction: stopped, rolled back, nothing applied.
        try PG.psql("DROP TABLE IF EXISTS slow; CREATE TABLE slow (n int); GRANT ALL ON slow TO poold")
        let tx = try daemon.sql("INSERT INTO slow SELECT 1 FROM pg_sleep(30)", timeoutMs: 500, transaction: true)
        #expect(tx.errorCode == "timeout")
        #expect(try PG.psql("SELECT count(*) FROM slow") == "0")
        #expect(try daemon.sql("SELECT 1").ok)
    }

    @Test func cancelAndDisconnectRollBack() throws {
        let application = PG.application("cancel")
        let daemon = try PG.daemon(application)
        try PG.psql("DROP TABLE IF EXISTS marks; CREATE TABLE marks (n int); GRANT ALL ON marks TO poold")

        // A client that disconnects mid-transaction.
        let client = try daemon.client()
        try client.send(
            line: JSON.encode(
                .object([
                    "id": .int(1), "op": .string("run"), "pool": .string("pg"), "transaction": .bool(true),
                    "batch": .array([
                        .object(["sql": .string("INSERT INTO marks VALUES (1)")]), .object(["sql": .string("SELECT pg_sleep(30)")]),
                    ]),
                ])))
        #expect(try waitUntil(.seconds(5)) { try PG.connections(application, activeOnly: true) == 1 })
        client.close()
        #expect(try waitUntil(.seconds(3)) { try PG.connections(application, activeOnly: true) == 0 })
        #expect(try PG.psql("SELECT count(*) FROM marks") == "0")

        // `cancel` by id from another connection.
        let runner = try daemon.client()
        try runner.send(
            line: JSON.encode(.object(["id": .int(2), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT pg_sleep(30)")])))
        var job: JSONValue?
        _ = try waitUntil(.seconds(5)) {
            let jobs = try daemon.request(["op": .string("jobs")])
            if case .array(let list)? = jobs["jobs"], case .object(let first)? = list.first, first["state"] == .string("running") {
                job = first["job"]
            }
            return job != nil
        }
        guard let job else {
            Issue.record("the job never ran")
            return
        }
        #expect(try daemon.request(["op": .string("cancel"), "job": job]).ok)
        let answer = try runner.readReply(timeout: .seconds(5))
        #expect(answer?.errorCode == "cancelled", "\(String(describing: answer))")
        #expect(try waitUntil(.seconds(2)) { try PG.connections(application, activeOnly: true) == 0 })
    }

    @Test func exhaustionQueuesThenRefuses() throws {
        let daemon = try PG.daemon(PG.application("exhaust"), max: 1, acquireTimeout: "700ms", pool: "max_waiters = 1")
        let holder = try daemon.client()
        try holder.send(
            line: JSON.encode(
                .object(["id": .int(1), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT pg_sleep(1.5)")])))
        #expect(try waitUntil(.seconds(5)) { try daemon.poolState()["leased"] == .int(1) })
        let waiter = try daemon.client()
        try waiter.send(
            line: JSON.encode(.object(["id": .int(2), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT 2")])))
        #expect(try waitUntil(.seconds(5)) { try daemon.poolState()["waiting"] == .int(1) })
        let third = try daemon.sql("SELECT 3")
        #expect(third.errorCode == "overloaded", "the queue holds one waiter: \(third)")
        let waited = try waiter.readReply(timeout: .seconds(5))
        #expect(waited?.errorCode == "pool_timeout", "\(String(describing: waited))")
        #expect(waited?.errorMessage?.contains("1/1") == true, "names the pool's state: \(String(describing: waited))")
        #expect(try holder.readReply(timeout: .seconds(5))?.ok == true)
        #expect(try daemon.sql("SELECT 4").ok)
    }

    @Test func wrongPasswordFailsAtOnceAsAuthentication() throws {
        let daemon = try PG.daemon(PG.application("badpw"), password: "not-the-password")
        let started = ContinuousClock.now
        let reply = try daemon.sql("SELECT 1")
        #expect(started.duration(to: .now) < .seconds(2), "waited \(started.duration(to: .now)) instead of failing fast")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("authentication failed") == true, "\(reply)")
        let pool = try daemon.poolState()
        #expect(pool["state"] == .string("degraded"))
        guard case .string(let lastError)? = pool["last_error"] else {
            Issue.record("no last_error: \(pool)")
            return
        }
        #expect(lastError.contains("authentication failed"))
        #expect(!daemon.log.contains("not-the-password"), "the password reached the log")
        #expect(!lastError.contains("not-the-password"))
    }

    @Test func sslModeRequireRefusesAServerWithoutTLS() throws {
        // The test cluster has no TLS: the default (prefer) falls back to plain text, which
        // every other test relies on; require must refuse, and say why.
        let cluster = try PG.require()
        let daemon = try PG.daemon(PG.application("tls"), url: cluster.url + "?sslmode=require")
        let reply = try daemon.sql("SELECT 1")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("does not offer TLS") == true, "\(reply)")
        #expect(try daemon.poolState()["state"] == .string("degraded"))
    }

    @Test func credentialFromCredentialsDirectory() throws {
        let cluster = try PG.require()
        let credentials = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: credentials) }
        try (cluster.password + "\n").write(toFile: credentials + "/pg-password", atomically: true, encoding: .utf8)
        let daemon = try PG.daemon(
            PG.application("cred"), environment: ["CREDENTIALS_DIRECTORY": credentials], passwordKey: "credential = \"pg-password\"")
        #expect(try daemon.sql("SELECT current_user").rows == [[.string("poold")]])
    }

    @Test func maxLifetimeRecyclesConnections() throws {
        let application = PG.application("lifetime")
        let daemon = try PG.daemon(application, pool: "max_lifetime = \"1s\"")
        let first = try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first
        #expect(first != nil)
        let replaced = try waitUntil(.seconds(5)) {
            try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first != first
        }
        #expect(replaced, "the connection outlived max_lifetime")
        // The old connection was closed on the server, not leaked.
        #expect(try waitUntil(.seconds(3)) { try PG.connections(application) <= 1 })
    }

    @Test func connectionsCutWhileIdleAreReplaced() throws {
        let application = PG.application("cut")
        let daemon = try PG.daemon(application, min: 2)
        #expect(try waitUntil(.seconds(5)) { try PG.connections(application) == 2 })
        // The server ends both idle connections (as a restart, a failover or a DBA would).
        try PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(application)'")
        #expect(try waitUntil(.seconds(3)) { try PG.connections(application) == 0 })
        for n in 1...5 {
            let reply = try daemon.sql("SELECT $1::int", [.int(Int64(n))])
            #expect(reply.rows == [[.int(Int64(n))]], "job \(n) after the cut: \(reply)")
        }
        #expect(try waitUntil(.seconds(5)) { try daemon.poolState()["open"] == .int(2) }, "min connections reopened")
    }

    @Test func sigtermLeavesNoServerConnections() throws {
        let application = PG.application("sigterm")
        let daemon = try PG.daemon(application, max: 3, grace: "1s")
        let client = try daemon.client()
        for id in 1...3 {
            try client.send(
                line: JSON.encode(
                    .object(["id": .int(Int64(id)), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT pg_sleep(0.5)")])))
        }
        #expect(try waitUntil(.seconds(5)) { try daemon.poolState()["leased"] == .int(3) }, "all three jobs hold a connection")
        daemon.signal(SIGTERM)
        for _ in 1...3 {
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.ok == true, "the running jobs finish within the grace: \(String(describing: reply))")
        }
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
        #expect(try waitUntil(.seconds(2)) { try PG.connections(application) == 0 }, "poold left connections on the server")
    }

    @Test func serverRestartUnderLoad() throws {
        let application = PG.application("restart")
        let daemon = try PG.daemon(application, max: 4, pool: "max_waiters = 256")
        try PG.psql("DROP TABLE IF EXISTS counter; CREATE TABLE counter (n int); GRANT ALL ON counter TO poold")
        // Four clients run short jobs in a loop; one long job is in flight at the restart.
        let stop = Flag()
        let outcomes = Tally()
        let threads = (0..<4).map { _ in
            Thread {
                guard let client = try? daemon.client() else { return }
                while !stop.isSet {
                    let reply = try? client.request(
                        ["op": .string("run"), "pool": .string("pg"), "sql": .string("INSERT INTO counter VALUES (1)")],
                        timeout: .seconds(10))
                    outcomes.add(reply)
                }
            }
        }
        for thread in threads { thread.start() }
        let long = try daemon.client()
        try long.send(
            line: JSON.encode(.object(["id": .int(1), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT pg_sleep(20)")])))
        #expect(try waitUntil(.seconds(5)) { try PG.connections(application, activeOnly: true) >= 1 })
        usleep(300_000)
        try PG.ctl("restart", "-m", "fast")
        let longReply = try long.readReply(timeout: .seconds(10))
        #expect(longReply?.errorCode == "backend", "\(String(describing: longReply))")
        #expect(
            longReply?.errorMessage?.contains("terminating connection") == true || longReply?.errorMessage?.contains("closed") == true,
            "\(String(describing: longReply))")
        // Within a few seconds jobs succeed again, on new connections.
        let before = outcomes.succeeded
        #expect(waitUntil(.seconds(10)) { outcomes.succeeded > before + 20 }, "jobs did not recover: \(outcomes.summary)")
        stop.set()
        #expect(waitUntil(.seconds(15)) { outcomes.finishedThreads(threads) })
        #expect(outcomes.unanswered == 0, "every request got an answer: \(outcomes.summary)")
        #expect(
            outcomes.codes.keys.allSatisfy { ["backend", "pool_timeout"].contains($0) },
            "only backend errors during the restart: \(outcomes.summary)")
        #expect(try daemon.sql("SELECT count(*) FROM counter").ok)
    }

    @Test func serverDownAtStartThenUp() throws {
        let application = PG.application("down")
        try PG.ctl("stop", "-m", "fast")
        var restarted = false
        defer { if !restarted { try? PG.ctl("start") } }
        let started = ContinuousClock.now
        let daemon = try PG.daemon(application, acquireTimeout: "500ms")
        #expect(started.duration(to: .now) < .seconds(5), "poold became ready without its server")
        #expect(try waitUntil(.seconds(5)) { try daemon.poolState()["state"] == .string("degraded") })
        let status = try daemon.request(["op": .string("status")])
        #expect(status["state"] == .string("ready"))
        let refused = try daemon.sql("SELECT 1")
        #expect(refused.errorCode == "backend" || refused.errorCode == "pool_timeout", "\(refused)")
        #expect(refused.errorMessage?.contains("connect") == true, "says why: \(refused)")

        try PG.ctl("start")
        restarted = true
        #expect(try waitUntil(.seconds(40)) { try daemon.poolState()["state"] == .string("ready") }, "the pool did not recover by itself")
        #expect(try daemon.sql("SELECT 1").ok)
    }
}

/// A flag set once, read from other threads.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Answers counted by outcome, from several threads.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var succeededCount = 0
    private var codesCount: [String: Int] = [:]
    private var missing = 0

    func add(_ reply: JSONObject?) {
        lock.withLock {
            guard let reply else {
                missing += 1
                return
            }
            if reply.ok { succeededCount += 1 } else { codesCount[reply.errorCode ?? "?", default: 0] += 1 }
        }
    }

    var succeeded: Int { lock.withLock { succeededCount } }
    var codes: [String: Int] { lock.withLock { codesCount } }
    var unanswered: Int { lock.withLock { missing } }
    var summary: String { lock.withLock { "ok \(succeededCount), errors \(codesCount), unanswered \(missing)" } }

    func finishedThreads(_ threads: [Thread]) -> Bool { threads.allSatisfy(\.isFinished) }
}
