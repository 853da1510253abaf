import Foundation
import NIOCore
import NIOPosix
import PostgresWire
import Synchronization
import Testing

/// Issue 16's client against the throwaway clusters: nested in `PostgresTests`, which is
/// serialized because some of its tests restart the server.
extension PostgresTests {
    /// Issue 16's own protocol client against the throwaway cluster: each way PostgreSQL asks for a
    /// password, and what a wrong one gets.
    @Suite(.timeLimit(.minutes(1)))
    struct WireConnectionTests {
        static func tcp(user: String = "poold", password: String?) throws -> WireConnection.Configuration {
            _ = try PG.require()
            let host = PG.environment["POOLD_TEST_PG_HOST"] ?? "127.0.0.1"
            let port = Int(PG.environment["POOLD_TEST_PG_PORT"] ?? "") ?? 5432
            return WireConnection.Configuration(address: .tcp(host: host, port: port), user: user, database: "poold", password: password)
        }

        static func selectOne(_ configuration: WireConnection.Configuration) async throws -> ([[String?]], [String: String]) {
            try await WireConnection.withConnection(configuration, on: MultiThreadedEventLoopGroup.singleton.next()) {
                connection, session in
                (try await session.simpleQuery("SELECT 1, NULL::text, current_user"), connection.parameters)
            }
        }

        @Test func scramOverTCP() async throws {
            let (_, password) = try PG.require()
            let (rows, parameters) = try await Self.selectOne(try Self.tcp(password: password))
            #expect(rows == [["1", nil, "poold"]])
            #expect(parameters["server_version"]?.isEmpty == false, "\(parameters)")
        }

        @Test func aWrongPasswordIsRefusedByTheServer() async throws {
            await #expect {
                _ = try await Self.selectOne(try Self.tcp(password: "not the password"))
            } throws: { error in
                (error as? WireConnection.ServerError)?.fields.sqlState == "28P01"
            }
        }

        @Test func trustOverTheUnixSocket() async throws {
            _ = try PG.require()
            let directory = try #require(PG.environment["POOLD_TEST_PG_SOCKET_DIR"])
            let port = try #require(PG.environment["POOLD_TEST_PG_PORT"])
            let configuration = WireConnection.Configuration(
                address: .unixSocket(path: "\(directory)/.s.PGSQL.\(port)"), user: "poold", database: "poold", password: nil)
            let (rows, _) = try await Self.selectOne(configuration)
            #expect(rows == [["1", nil, "poold"]])
        }

        /// A role whose password is stored as MD5, let in by an `md5` line of pg_hba.conf.
        @Test func md5() async throws {
            _ = try PG.require()
            _ = try PG.psql(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wire_md5') THEN "
                    + "SET password_encryption = 'md5'; CREATE ROLE wire_md5 LOGIN PASSWORD 'md5 secret'; END IF; END $$")
            let hba = try PG.psql("SHOW hba_file").trimmingCharacters(in: .whitespacesAndNewlines)
            let rules = try String(contentsOfFile: hba, encoding: .utf8)
            if !rules.contains("wire_md5") {
                try ("host poold wire_md5 127.0.0.1/32 md5\n" + rules).write(toFile: hba, atomically: true, encoding: .utf8)
                _ = try PG.psql("SELECT pg_reload_conf()")
            }
            let (rows, _) = try await Self.selectOne(try Self.tcp(user: "wire_md5", password: "md5 secret"))
            #expect(rows == [["1", nil, "wire_md5"]])
            await #expect(throws: WireConnection.ServerError.self) {
                _ = try await Self.selectOne(try Self.tcp(user: "wire_md5", password: "wrong"))
            }
        }
    }

    /// The extended protocol on our own client, with the server in unusual states.
    @Suite(.timeLimit(.minutes(1)))
    struct WireQueryTests {
        static func withSession<R: Sendable>(_ body: (inout WireConnection.Session) async throws -> R) async throws -> R {
            let (_, password) = try PG.require()
            return try await WireConnection.withConnection(
                try WireConnectionTests.tcp(password: password), on: MultiThreadedEventLoopGroup.singleton.next()
            ) {
                _, session in try await body(&session)
            }
        }

        static func text(_ result: QueryStateMachine.Result) -> [[String?]] {
            result.rows.map { $0.columns.map { $0.map { String(buffer: $0) } } }
        }

        @Test func aStatementIsPreparedOnceAndBoundEveryTime() async throws {
            try await Self.withSession { session in
                let int4 = Frontend.Parameter(bytes: Array("41".utf8), binary: false)
                let first = try await session.execute("SELECT $1::int + 1", [int4])
                #expect(Self.text(first) == [["42"]])
                #expect(first.parameterTypes == [23])
                #expect(session.statements.count == 1)
                let again = try await session.execute("SELECT $1::int + 1", [Frontend.Parameter(bytes: nil, binary: false)])
                #expect(Self.text(again) == [[nil]])
                #expect(session.statements.count == 1, "cached, not prepared again")
            }
        }

        @Test func noticesAndParameterChangesMidQuery() async throws {
            try await Self.withSession { session in
                _ = try await session.execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
                _ = try await session.execute("SET application_name = 'wire-test'")
                let events = session.events
                #expect(events.contains { if case .notice(let fields) = $0 { fields.message == "hello from plpgsql" } else { false } })
                #expect(events.contains(.parameterChanged(name: "application_name", value: "wire-test")))
                let result1 = try await session.execute("SELECT 1")
                #expect(Self.text(result1) == [["1"]], "still usable")
            }
        }

        @Test func anErrorIsTheAnswerAndTheConnectionStaysUsable() async throws {
            try await Self.withSession { session in
                await #expect {
                    _ = try await session.execute("SELECT * FROM no_such_table")
                } throws: { error in
                    guard case .server(let fields) = error as? QueryStateMachine.Failure else { return false }
                    return fields.sqlState == "42P01"
                }
                let result2 = try await session.execute("SELECT 2")
                #expect(Self.text(result2) == [["2"]])
            }
        }

        @Test func copyIsRefusedBothWays() async throws {
            try await Self.withSession { session in
                await #expect {
                    _ = try await session.execute("COPY (SELECT 1) TO STDOUT")
                } throws: { error in
                    error as? QueryStateMachine.Failure == .copyRefused
                }
                _ = try await session.execute("CREATE TEMP TABLE copied (v int)")
                await #expect {
                    _ = try await session.execute("COPY copied FROM STDIN")
                } throws: { error in
                    error as? QueryStateMachine.Failure == .copyRefused
                }
                let result3 = try await session.execute("SELECT count(*) FROM copied")
                #expect(Self.text(result3) == [["0"]])
            }
        }

        @Test func aRowPastTheCapIsStoppedOnTheServer() async throws {
            try await Self.withSession { session in
                await #expect {
                    _ = try await session.execute("SELECT generate_series(1, 100000)", rowLimit: 5)
                } throws: { error in
                    error as? QueryStateMachine.Failure == .rowLimit(5)
                }
                let result4 = try await session.execute("SELECT generate_series(1, 3)", rowLimit: 5)
                #expect(Self.text(result4).count == 3)
            }
        }

        @Test func discardAllAndAlterTableUnderACachedPlan() async throws {
            try await Self.withSession { session in
                _ = try await session.execute("CREATE TEMP TABLE altered (a int)")
                _ = try await session.execute("INSERT INTO altered VALUES (1)")
                let result5 = try await session.execute("SELECT * FROM altered")
                #expect(Self.text(result5) == [["1"]])
                _ = try await session.execute("ALTER TABLE altered ADD COLUMN b int DEFAULT 7")
                // 0A000 (cached plan must not change result type): prepared again, once.
                let widened = try await session.execute("SELECT * FROM altered")
                #expect(Self.text(widened) == [["1", "7"]])
                #expect(widened.columns?.map(\.name) == ["a", "b"])

                let result6 = try await session.execute("SELECT 3")

                #expect(Self.text(result6) == [["3"]])
                _ = try await session.execute("DISCARD ALL")
                // 26000 (the prepared statement does not exist): prepared again, once.
                let result7 = try await session.execute("SELECT 3")
                #expect(Self.text(result7) == [["3"]])
            }
        }
    }

    /// TLS as libpq's `sslmode` says, against the second throwaway cluster (TLS on, a certificate
    /// for localhost only, signed by a throwaway CA) and the first (no TLS).
    @Suite(.timeLimit(.minutes(1)))
    struct WireTLSTests {
        static func tlsCluster(host: String = "127.0.0.1", _ mode: TLSMode, root: Bool, serverName: String? = nil) throws
            -> WireConnection.Configuration
        {
            let (_, password) = try PG.require()
            let port = try #require(Int(PG.environment["POOLD_TEST_PG_TLS_PORT"] ?? ""), "the TLS cluster of scripts/with-postgres.sh")
            var configuration = WireConnection.Configuration(
                address: .tcp(host: host, port: port), user: "poold", database: "poold", password: password)
            configuration.tls = mode
            configuration.rootCertificate = root ? PG.environment["POOLD_TEST_PG_TLS_CA"] : nil
            configuration.serverName = serverName
            return configuration
        }

        static func sslInUse(_ configuration: WireConnection.Configuration) async throws -> String? {
            try await WireConnection.withConnection(configuration, on: MultiThreadedEventLoopGroup.singleton.next()) { _, session in
                try await session.simpleQuery("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first?.first ?? nil
            }
        }

        @Test func requireAndVerifyFullConnectOverTLS() async throws {
            #expect(try await Self.sslInUse(try Self.tlsCluster(.require, root: false)) == "t")
            #expect(try await Self.sslInUse(try Self.tlsCluster(host: "localhost", .verifyFull, root: true)) == "t")
            #expect(try await Self.sslInUse(try Self.tlsCluster(.verifyCA, root: true, serverName: "any.example")) == "t")
        }

        @Test func verifyFullRefusesAnotherHostName() async throws {
            for configuration in [
                try Self.tlsCluster(.verifyFull, root: true, serverName: "wrong.example"),
                try Self.tlsCluster(.verifyFull, root: true),  // 127.0.0.1: the certificate names localhost only
            ] {
                await #expect {
                    _ = try await Self.sslInUse(configuration)
                } throws: { error in
                    "\(error)".lowercased().contains("certificate") || "\(error)".contains("handshake")
                }
            }
        }

        @Test func verifyCAWithoutARootCertificateIsRefused() async throws {
            await #expect {
                _ = try await Self.sslInUse(try Self.tlsCluster(.verifyCA, root: false))
            } throws: { error in
                "\(error)".contains("needs a root certificate")
            }
        }

        @Test func requireRefusesAServerWithoutTLSAndPreferFallsBack() async throws {
            let (_, password) = try PG.require()
            var plain = try WireConnectionTests.tcp(password: password)
            plain.tls = .require
            await #expect {
                _ = try await Self.sslInUse(plain)
            } throws: { error in
                "\(error)".contains("does not offer TLS")
            }
            plain.tls = .prefer
            #expect(try await Self.sslInUse(plain) == "f")
        }
    }
}

extension PostgresTests {
    /// `require_auth`, enforced before any password goes out: a role the server asks for its
    /// password in cleartext, refused under `scram-sha-256`; trust refused unless `none` is allowed.
    @Suite(.timeLimit(.minutes(1)))
    struct WireRequireAuthTests {
        @Test func aCleartextRequestIsRefusedUnderRequireAuth() async throws {
            _ = try PG.require()
            _ = try PG.psql(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wire_clear') THEN "
                    + "CREATE ROLE wire_clear LOGIN PASSWORD 'clear secret'; END IF; END $$")
            let hba = try PG.psql("SHOW hba_file").trimmingCharacters(in: .whitespacesAndNewlines)
            let rules = try String(contentsOfFile: hba, encoding: .utf8)
            if !rules.contains("wire_clear") {
                try ("host poold wire_clear 127.0.0.1/32 password\n" + rules).write(toFile: hba, atomically: true, encoding: .utf8)
                _ = try PG.psql("SELECT pg_reload_conf()")
            }
            var configuration = try WireConnectionTests.tcp(user: "wire_clear", password: "clear secret")
            let (rows, _) = try await WireConnectionTests.selectOne(configuration)
            #expect(rows.first?.last == "wire_clear", "without require_auth, cleartext works")
            configuration.allowedAuth = [.scramSHA256]
            configuration.requireAuthText = "scram-sha-256"
            await #expect {
                _ = try await WireConnectionTests.selectOne(configuration)
            } throws: { error in
                "\(error)".contains("the server asked for the password in cleartext, which require_auth = \"scram-sha-256\" does not allow")
            }
        }

        @Test func trustIsRefusedUnlessNoneIsAllowed() async throws {
            _ = try PG.require()
            let directory = try #require(PG.environment["POOLD_TEST_PG_SOCKET_DIR"])
            let port = try #require(PG.environment["POOLD_TEST_PG_PORT"])
            var configuration = WireConnection.Configuration(
                address: .unixSocket(path: "\(directory)/.s.PGSQL.\(port)"), user: "poold", database: "poold", password: nil)
            configuration.allowedAuth = [.scramSHA256]
            configuration.requireAuthText = "scram-sha-256"
            await #expect {
                _ = try await WireConnectionTests.selectOne(configuration)
            } throws: { error in
                "\(error)".contains("without authentication (trust or peer)")
            }
            configuration.allowedAuth = [.scramSHA256, .none]
            let (rows, _) = try await WireConnectionTests.selectOne(configuration)
            #expect(rows.first?.first == "1")
        }
    }
}

extension PostgresTests {
    /// The event-loop client (the hot path): the same unusual server states as `WireQueryTests`,
    /// queries queued from many tasks, TLS, and a connection the server ends.
    @Suite(.timeLimit(.minutes(1)))
    struct WireClientTests {
        /// Runs `body` with a client of the test cluster (or of `configuration`), closed after.
        static func withClient(
            _ configuration: WireConnection.Configuration? = nil, _ body: (WireClient) async throws -> Void
        ) async throws {
            let (_, password) = try PG.require()
            try await WireClient.withClient(
                try configuration ?? WireConnectionTests.tcp(password: password), on: MultiThreadedEventLoopGroup.singleton.next(), body)
        }

        static func text(_ result: QueryStateMachine.Result) -> [[String?]] {
            result.rows.map { $0.columns.map { $0.map { String(buffer: $0) } } }
        }

        @Test func queriesAreAnsweredInOrderFromManyTasks() async throws {
            try await Self.withClient { client in
                #expect(client.key != nil)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<8 {
                        group.addTask {
                            for n in 0..<50 {
                                let key = Array(String(task * 1000 + n).utf8)
                                let result = try await client.execute("SELECT $1::int + 1", [Frontend.Parameter(bytes: key, binary: false)])
                                #expect(Self.text(result) == [[String(task * 1000 + n + 1)]])
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }

        @Test func theServerInUnusualStates() async throws {
            try await Self.withClient { client in
                await #expect {
                    _ = try await client.execute("SELECT * FROM no_such_table")
                } throws: { error in
                    guard case .server(let fields) = error as? QueryStateMachine.Failure else { return false }
                    return fields.sqlState == "42P01"
                }
                _ = try await client.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
                await #expect {
                    _ = try await client.execute("COPY (SELECT 1) TO STDOUT")
                } throws: { error in
                    error as? QueryStateMachine.Failure == .copyRefused
                }
                await #expect {
                    _ = try await client.execute("SELECT generate_series(1, 100000)", rowLimit: 5)
                } throws: { error in
                    error as? QueryStateMachine.Failure == .rowLimit(5)
                }
                _ = try await client.execute("CREATE TEMP TABLE altered (a int)")
                _ = try await client.execute("INSERT INTO altered VALUES (1)")
                let before = try await client.execute("SELECT * FROM altered")
                #expect(Self.text(before) == [["1"]])
                _ = try await client.execute("ALTER TABLE altered ADD COLUMN b int DEFAULT 7")
                let after = try await client.execute("SELECT * FROM altered")
                #expect(Self.text(after) == [["1", "7"]], "prepared again after 0A000")
                _ = try await client.execute("DISCARD ALL")
                let again = try await client.execute("SELECT * FROM pg_class LIMIT 0")
                #expect(again.rows.isEmpty)
                let status = client.transactionStatus
                #expect(status == .idle)
            }
        }

        @Test func overTLSWithVerifyFull() async throws {
            try await Self.withClient(try WireTLSTests.tlsCluster(host: "localhost", .verifyFull, root: true)) { client in
                let ssl = try await client.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                #expect(Self.text(ssl) == [["t"]])
            }
        }

        @Test func aConnectionTheServerEndsFailsWhatWaits() async throws {
            try await Self.withClient { client in
                let pid = try #require(client.key?.processID)
                let waiting = try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        do {
                            _ = try await client.execute("SELECT pg_sleep(30)")
                            return false
                        } catch {
                            return true
                        }
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    _ = try PG.psql("SELECT pg_terminate_backend(\(pid))")
                    return try await group.next() ?? false
                }
                #expect(waiting, "the running query failed when the server ended the connection")
                await #expect(throws: (any Error).self, "and what comes after fails at once") {
                    _ = try await client.execute("SELECT 1")
                }
            }
        }
    }
}

extension PostgresTests {
    /// Pipelines (issue 18's runner will send a job's statements and its fenced completion this
    /// way): one write, one implicit transaction, the first error rolls all of it back.
    @Suite(.timeLimit(.minutes(1)))
    struct WirePipelineTests {
        @Test func aPipelineRunsInOneTransactionAndAnErrorRollsItAllBack() async throws {
            try PG.psql(
                "DROP TABLE IF EXISTS wire_pipe; CREATE TABLE wire_pipe (v int); GRANT ALL ON wire_pipe TO poold; "
                    + "CREATE OR REPLACE FUNCTION wire_guard(ok bool) RETURNS int LANGUAGE plpgsql AS "
                    + "$$ BEGIN IF NOT ok THEN RAISE EXCEPTION 'the completion lost its fence'; END IF; RETURN 1; END $$")
            try await WireClientTests.withClient { client in
                let count = TextQuery()
                for _ in 0..<2 {  // the second time every statement is cached: one write, one read
                    let outcomes = try await client.runPipeline([
                        WireStatement("INSERT INTO wire_pipe VALUES ($1::int)", TextQuery(["1"])),
                        WireStatement("INSERT INTO wire_pipe VALUES ($1::int)", TextQuery(["2"])),
                        WireStatement("SELECT count(*) FROM wire_pipe", count),
                    ])
                    #expect(outcomes.map(\.tag) == ["INSERT 0 1", "INSERT 0 1", "SELECT 1"])
                }
                #expect(count.rows == [["4"]])
                // The effect and a completion whose fence fails: neither commits.
                await #expect {
                    _ = try await client.runPipeline([
                        WireStatement("INSERT INTO wire_pipe VALUES ($1::int)", TextQuery(["3"])),
                        WireStatement("SELECT wire_guard($1::bool)", TextQuery(["false"])),
                    ])
                } throws: { error in
                    guard let failure = error as? PipelineStateMachine.Failure, case .server(let fields) = failure.failure else {
                        return false
                    }
                    return failure.index == 1 && fields.message.contains("lost its fence")
                }
                #expect(client.transactionStatus == .idle)
                let after = TextQuery()
                _ = try await client.runPipeline([WireStatement("SELECT count(*), count(*) FILTER (WHERE v = 3) FROM wire_pipe", after)])
                #expect(after.rows == [["4", "0"]], "the failed pipeline's INSERT was rolled back")
                // A statement that does not parse is named by its index; the connection goes on.
                await #expect {
                    _ = try await client.runPipeline([WireStatement("SELECT 1", TextQuery()), WireStatement("SELEC 2", TextQuery())])
                } throws: { error in
                    (error as? PipelineStateMachine.Failure)?.index == 1
                }
                let one = TextQuery()
                _ = try await client.runPipeline([WireStatement("SELECT 1", one)])
                #expect(one.rows == [["1"]])
            }
        }

        /// What a LISTEN connection needs (issue 18's wake-ups): notifications handed out whenever
        /// they arrive, between queries as during them.
        @Test func notificationsAreHandedOutBetweenAndDuringQueries() async throws {
            let (_, password) = try PG.require()
            var configuration = try WireConnectionTests.tcp(password: password)
            let received = Mutex<[String]>([])
            configuration.onNotification = { channel, payload in received.withLock { $0.append("\(channel):\(payload)") } }
            try await WireClientTests.withClient(configuration) { client in
                _ = try await client.execute("LISTEN wire_chan")
                try PG.psql("NOTIFY wire_chan, 'between'")  // the connection is idle: sent at once
                for _ in 0..<100 where !received.withLock({ $0.contains("wire_chan:between") }) {
                    try await Task.sleep(for: .milliseconds(50))
                }
                _ = try await client.runPipeline([WireStatement("SELECT pg_notify('wire_chan', 'during')", TextQuery())])
            }
            let all = received.withLock { $0 }
            #expect(all.contains("wire_chan:between"), "\(all)")
            #expect(all.contains("wire_chan:during"), "\(all)")
        }

        @Test func aStatementTheServerDroppedIsPreparedAgainAndThePipelineSentOnceMore() async throws {
            try await WireClientTests.withClient { client in
                let first = TextQuery(["5"])
                _ = try await client.runPipeline([WireStatement("SELECT $1::int + 1", first)])  // prepared as p1
                _ = try await client.execute("DEALLOCATE p1")  // behind the cache's back: 26000 next time
                let again = TextQuery(["6"])
                let outcomes = try await client.runPipeline([WireStatement("SELECT $1::int + 1", again)])
                #expect(outcomes.map(\.tag) == ["SELECT 1"])
                #expect(first.rows == [["6"]])
                #expect(again.rows == [["7"]])
            }
        }
    }
}
