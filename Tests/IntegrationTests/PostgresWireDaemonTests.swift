import ControlClient
import ControlProtocol
import Foundation
import Testing

extension PostgresTests {
    /// The wire client under poold (issue 16), as a hostile submitter drives it: ad-hoc SQL on a
    /// pool of one connection, so that every statement lands on the connection the last one left.
    @Test func theServerInUnusualStatesThroughPoold() throws {
        try PG.psql(
            "CREATE OR REPLACE FUNCTION wire_noisy() RETURNS int LANGUAGE plpgsql AS "
                + "$$ BEGIN RAISE NOTICE 'wire_noisy says hello'; RETURN 7; END $$")
        let application = PG.application("unusual")
        let daemon = try PG.daemon(application, min: 1, max: 1)

        // A notice in the middle of a query: the job goes on, and the notice is logged.
        #expect(try daemon.sql("SELECT wire_noisy() AS n").rows == [[.int(7)]])
        #expect(waitUntil(.seconds(5)) { daemon.log.contains("wire_noisy says hello") }, "the notice was not logged")
        // A notice of a megabyte is logged cut, not whole (before the flood uses up the budget).
        let before = daemon.log.utf8.count
        #expect(try daemon.sql("DO $$ BEGIN RAISE NOTICE 'wire_long %', repeat('x', 1000000); END $$").ok)
        #expect(waitUntil(.seconds(5)) { daemon.log.contains("bytes in all") }, "the long notice was not logged cut")
        #expect(daemon.log.utf8.count - before < 100_000, "the log grew by \(daemon.log.utf8.count - before) bytes")

        // So is an error of a megabyte, in the reply.
        let huge = try daemon.sql("DO $$ BEGIN RAISE EXCEPTION 'wire_huge %', repeat('y', 1000000); END $$")
        #expect(huge.errorCode == "sql_error")
        #expect((huge.errorMessage?.utf8.count ?? 0) < 10_000 && huge.errorMessage?.hasSuffix("bytes in all)") == true)

        // A flood of notices is logged at a bounded rate.
        let flood = try daemon.sql("DO $$ BEGIN FOR i IN 1..500 LOOP RAISE NOTICE 'wire flood %', i; END LOOP; END $$")
        #expect(flood.ok, "\(flood)")
        let logged = daemon.log.components(separatedBy: "wire flood").count - 1
        #expect(logged >= 1 && logged <= 40, "\(logged) of 500 notices logged")

        // SET inside a batch: the batch sees it, the next job gets a fresh connection.
        let batch = try daemon.batch([
            ("SELECT 1 AS one", []), ("SET application_name = 'wire_changed'", []),
            ("SELECT current_setting('application_name') AS name", []),
        ])
        #expect(batch.ok, "\(batch)")
        #expect(batch.lastRows == [[.string("wire_changed")]], "\(batch)")
        #expect(try daemon.sql("SELECT current_setting('application_name') AS name").rows == [[.string(application)]])

        // COPY, both ways: refused as a bad request, and the connection serves the next job.
        try PG.psql("DROP TABLE IF EXISTS wire_copied")
        #expect(try daemon.sql("CREATE TABLE wire_copied (v int)").ok)
        for copy in ["COPY (SELECT 1) TO STDOUT", "COPY wire_copied FROM STDIN"] {
            let refused = try daemon.sql(copy)
            #expect(refused.errorCode == "bad_request", "\(copy): \(refused)")
            #expect(refused.errorMessage?.contains("COPY") == true, "\(refused)")
        }
        #expect(try daemon.sql("SELECT count(*) AS n FROM wire_copied").rows == [[.int(0)]])

        // A row past the cap is stopped on the server: a billion rows answer bad_request well
        // before the job's timeout, which reading them all would take.
        let capped = try daemon.sql("SELECT generate_series(1, 1000000000) AS g", timeoutMs: 60_000)
        #expect(capped.errorCode == "bad_request", "\(capped)")
        #expect(capped.errorMessage?.contains("more than 100000 rows") == true, "\(capped)")
        #expect(try daemon.sql("SELECT 2 AS two").rows == [[.int(2)]])
        #expect(try PG.connections(application, activeOnly: true) == 0, "the capped query still runs on the server")

        // DISCARD ALL between two runs of a cached statement: prepared again, once.
        let discarded = try daemon.batch([("SELECT $1::int AS a", [.int(1)]), ("DISCARD ALL", []), ("SELECT $1::int AS a", [.int(2)])])
        #expect(discarded.ok, "\(discarded)")
        #expect(discarded.lastRows == [[.int(2)]], "\(discarded)")

        // ALTER TABLE under a cached plan: the result type changed (0A000), prepared again.
        try PG.psql("DROP TABLE IF EXISTS wire_altered")
        #expect(try daemon.sql("CREATE TABLE wire_altered (a int)").ok)
        #expect(try daemon.sql("INSERT INTO wire_altered VALUES (1)").ok)
        #expect(try daemon.sql("SELECT * FROM wire_altered").rows == [[.int(1)]])
        try PG.psql("ALTER TABLE wire_altered ADD COLUMN b text DEFAULT 'x'")
        let altered = try daemon.sql("SELECT * FROM wire_altered")
        #expect(altered.rows == [[.int(1), .string("x")]], "\(altered)")
        #expect(altered["columns"] == .array([.string("a"), .string("b")]))
    }

    /// A pool over TLS: verify-full with the CA connects; with a host the certificate does not
    /// name, and verify-ca without a root certificate, the pool says why it cannot.
    @Test func aPoolOverTLS() throws {
        let port = try #require(PG.environment["POOLD_TEST_PG_TLS_PORT"], "the TLS cluster of scripts/with-postgres.sh")
        let ca = try #require(PG.environment["POOLD_TEST_PG_TLS_CA"])
        let good = try PG.daemon(
            PG.application("tls"), url: "postgres://poold@localhost:\(port)/poold?sslmode=verify-full&sslrootcert=\(ca)")
        let ssl = try good.sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        #expect(ssl.rows == [[.bool(true)]], "\(ssl)")

        let wrongName = try PG.daemon(
            PG.application("tls-name"), min: 0, acquireTimeout: "1s",
            url: "postgres://poold@127.0.0.1:\(port)/poold?sslmode=verify-full&sslrootcert=\(ca)")
        let refused = try wrongName.sql("SELECT 1")
        #expect(refused.ok == false)
        #expect(refused.errorMessage?.lowercased().contains("certificate") == true, "\(refused)")

        let noRoot = try PG.daemon(
            PG.application("tls-noroot"), min: 0, acquireTimeout: "1s", url: "postgres://poold@localhost:\(port)/poold?sslmode=verify-ca")
        let unverifiable = try noRoot.sql("SELECT 1")
        #expect(unverifiable.errorMessage?.contains("sslrootcert") == true, "\(unverifiable)")
    }
}

extension DaemonProcess {
    /// Runs a batch of ad-hoc statements (SQL and params) on the pool "pg", outside a transaction.
    func batch(_ statements: [(String, [JSONValue])]) throws -> JSONObject {
        let items: [JSONValue] = statements.map { sql, params in
            params.isEmpty ? .object(["sql": .string(sql)]) : .object(["sql": .string(sql), "params": .array(params)])
        }
        return try request(["op": .string("run"), "pool": .string("pg"), "batch": .array(items)])
    }
}

extension JSONObject {
    /// The rows of a batch's last statement.
    var lastRows: [[JSONValue]]? {
        guard case .array(let results)? = self["results"], case .object(let last)? = results.last else { return nil }
        return last.rows
    }
}
