import ControlClient
import ControlProtocol
import Foundation
import Testing

/// PostgreSQL cells of the unwinding matrix (docs/UNWINDING.md): each test stops a job on a
/// path and then looks at the server itself (the backend's state in `pg_stat_activity`, the
/// row lock from an outside session, the rows, the backend pid), so that it fails if the
/// connection or the transaction leaks on that path. In `PostgresTests`, which is serialized:
/// the tests share the throwaway cluster with the tests that stop and restart it.
extension PostgresTests {
    enum Stop: String, CaseIterable, CustomStringConvertible {
        case timeout, cancel, disconnect
        var description: String { rawValue }
    }

    enum Change: String, CaseIterable, CustomStringConvertible {
        case removed, replaced
        var description: String { rawValue }
    }

    /// A fresh table `name (k int PRIMARY KEY, v int)` owned by poold, holding the row (1, 0).
    static func makeLockTable(_ name: String) throws {
        try PG.psql(
            "DROP TABLE IF EXISTS \(name); CREATE TABLE \(name) (k int PRIMARY KEY, v int NOT NULL); INSERT INTO \(name) VALUES (1, 0); "
                + "ALTER TABLE \(name) OWNER TO poold"
        )
    }

    /// A transactional batch that takes row 1's lock, inserts the marker row 2, then sleeps.
    static func lockingTransaction(_ table: String, sleep: Double, timeoutMs: Int? = nil) -> String {
        var fields: JSONObject = [
            "id": .int(1), "op": .string("run"), "pool": .string("pg"), "transaction": .bool(true),
            "batch": .array([
                .object(["sql": .string("UPDATE \(table) SET v = v + 1 WHERE k = 1")]),
                .object(["sql": .string("INSERT INTO \(table) VALUES (2, 0)")]),
                .object(["sql": .string("SELECT pg_sleep(\(sleep))")]),
            ]),
        ]
        if let timeoutMs { fields["timeout_ms"] = .int(Int64(timeoutMs)) }
        return JSON.encode(.object(fields))
    }

    /// An UPDATE of row 1 from a session outside poold, which gives up after `lockTimeout`:
    /// nil when it got the row lock, else why not (`canceling statement due to lock timeout`).
    static func outsideUpdate(_ table: String, lockTimeout: String = "1s") -> String? {
        do {
            try PG.psql("SET lock_timeout = '\(lockTimeout)'; UPDATE \(table) SET v = v WHERE k = 1")
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Every backend of the application, as `pid:state` (any state: idle, active,
    /// idle in transaction, idle in transaction (aborted)), ordered by pid.
    static func backends(_ application: String) throws -> [String] {
        let text = try PG.psql(
            "SELECT pid || ':' || coalesce(state, '?') FROM pg_stat_activity WHERE application_name = '\(application)' ORDER BY pid")
        return text.split(separator: "\n").map(String.init)
    }

    /// Waits up to 5 s for the application's backend to be running `pg_sleep`: nil once it
    /// is, else the application's backends.
    static func awaitSleep(_ application: String) throws -> [String]? {
        let sleeping = try waitUntil(.seconds(5)) {
            try PG.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '\(application)' AND state = 'active' AND query LIKE "
                    + "'%pg_sleep%'"
            ) == "1"
        }
        return sleeping ? nil : try backends(application)
    }

    /// The id of the one job `jobs` shows running, once it does.
    static func runningJobID(_ daemon: DaemonProcess) throws -> JSONValue? {
        var job: JSONValue?
        _ = try waitUntil(.seconds(5)) {
            guard case .array(let list)? = try daemon.request(["op": .string("jobs")])["jobs"] else { return false }
            for case .object(let entry) in list where entry["state"] == .string("running") { job = entry["job"] }
            return job != nil
        }
        return job
    }

    /// G2 (cells 27, 28 and the PostgreSQL halves of 69, 71, 72): a transaction holding a row
    /// lock, stopped by its timeout, by `cancel` or by its client's disconnect, is rolled back
    /// and ended on the server, and its connection goes back to the pool clean: the one
    /// backend is `idle` (not `idle in transaction`), the row lock is free for an outside
    /// writer, nothing it wrote is left, and the next job runs on the same backend pid.
    @Test(arguments: Stop.allCases)
    func postgresTransactionUnwindsOnTheServer(stop: Stop) throws {
        let application = PG.application("g2-\(stop)")
        let table = "unwind_\(stop)"
        try Self.makeLockTable(table)
        let daemon = try PG.daemon(application, min: 1, max: 1)
        let pid = try #require(try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first, "no backend pid")

        let client = try daemon.client()
        try client.send(line: Self.lockingTransaction(table, sleep: 30, timeoutMs: stop == .timeout ? 2000 : nil))
        let notSleeping = try Self.awaitSleep(application)
        try #require(notSleeping == nil, "the transaction never reached pg_sleep; backends: \(notSleeping ?? [])")
        let held = Self.outsideUpdate(table, lockTimeout: "200ms")
        #expect(
            held?.contains("lock timeout") == true,
            "the job should hold row 1's lock while it sleeps; the outside UPDATE gave: \(held ?? "success")")

        switch stop {
        case .timeout:
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.errorCode == "timeout", "\(String(describing: reply))")
        case .cancel:
            let job = try #require(try Self.runningJobID(daemon), "the job never showed as running")
            let cancel = try daemon.request(["op": .string("cancel"), "job": job])
            #expect(cancel.ok, "\(cancel)")
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.errorCode == "cancelled", "\(String(describing: reply))")
        case .disconnect:
            client.close()
        }

        // The one connection is back and idle outside any transaction, on the same backend.
        var states: [String] = []
        let idle = try waitUntil(.seconds(5)) {
            states = try Self.backends(application)
            return states == ["\(pid.intText):idle"]
        }
        #expect(idle, "after \(stop) the application's backends are \(states); expected only backend \(pid.intText), idle")
        var pool: JSONObject = [:]
        let returned = try waitUntil(.seconds(3)) {
            pool = try daemon.poolState()
            return pool["leased"] == .int(0) && pool["open"] == .int(1)
        }
        #expect(returned, "after \(stop) the pool is \(pool); expected leased 0, open 1")
        #expect(try PG.psql("SELECT count(*) FROM \(table) WHERE k = 2") == "0", "the marker row of the stopped transaction is there")
        #expect(try PG.psql("SELECT v FROM \(table) WHERE k = 1") == "0", "the stopped transaction's UPDATE was applied")
        let outside = Self.outsideUpdate(table)
        #expect(outside == nil, "row 1's lock is still held after \(stop): \(outside ?? "")")
        let next = try daemon.sql("SELECT pg_backend_pid()")
        #expect(
            next.rows?.first?.first == pid,
            "the next job ran on backend \(String(describing: next.rows)), not on \(pid.intText): the connection was replaced")
    }

    /// G5 (cell 30 and the PostgreSQL half of 74): a reload that removes the postgres pool, or
    /// replaces it (a new application_name), while a job runs on it lets the job finish (a
    /// transaction commits: its rows are there and its lock is free), then closes the old
    /// pool's server connections; a replacement serves the next job under its new name.
    @Test(arguments: Change.allCases, [false, true])
    func reloadRetiringAPostgresPoolClosesItsConnectionsAfterItsJob(change: Change, transaction: Bool) throws {
        let cluster = try PG.require()
        let application = PG.application("g5-\(change)")
        let successor = application + "-b"
        let table = "reload_\(change)_\(transaction ? "tx" : "plain")"
        try Self.makeLockTable(table)
        let directory = try DaemonProcess.makeTemporaryDirectory()
        try cluster.password.write(toFile: directory + "/pg.password", atomically: true, encoding: .utf8)
        let keep = """
            [[pool]]
            name = "keep"
            kind = "sqlite"
            path = "\(directory)/keep.db"
            min = 0
            max = 1
            allow_adhoc = true

            """
        let pgPool = """
            [[pool]]
            name = "pg"
            kind = "postgres"
            url = "\(cluster.url)"
            password_file = "\(directory)/pg.password"
            application_name = "\(application)"
            min = 1
            max = 1
            allow_adhoc = true
            """
        let daemon = try DaemonProcess(pools: keep + pgPool, directory: directory)

        let client = try daemon.client()
        if transaction {
            try client.send(line: Self.lockingTransaction(table, sleep: 1.5))
        } else {
            try client.send(
                line: JSON.encode(
                    .object(["id": .int(1), "op": .string("run"), "pool": .string("pg"), "sql": .string("SELECT pg_sleep(1.5)")])))
        }
        let notSleeping = try Self.awaitSleep(application)
        try #require(notSleeping == nil, "the job never reached pg_sleep; backends: \(notSleeping ?? [])")

        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let rewritten =
            switch change {
            case .removed: config.replacingOccurrences(of: pgPool, with: "")
            case .replaced:
                config.replacingOccurrences(of: "application_name = \"\(application)\"", with: "application_name = \"\(successor)\"")
            }
        try #require(rewritten != config, "the test could not rewrite the config")
        try rewritten.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.request(["op": .string("reload")])
        let expected = change == .removed ? "pool pg removed (draining)" : "pool pg replaced"
        #expect(reload["changes"] == .array([.string(expected)]), "\(reload)")

        let answer = try #require(try client.readReply(timeout: .seconds(10)), "no answer to the running job")
        #expect(answer.ok, "a job running on a retired pool finishes: \(answer)")
        let answered = ContinuousClock.now
        var left: [String] = []
        let closed = try waitUntil(.seconds(3)) {
            left = try Self.backends(application)
            return left.isEmpty
        }
        #expect(closed, "\(answered.duration(to: .now)) after the job's answer, the retired pool still has backends \(left)")
        #expect(
            waitUntil(.seconds(3)) { daemon.log.split(separator: "\n").contains { $0.contains("pool closed") && $0.contains("pool=pg") } },
            "no \"pool closed\" line for pg: \(daemon.log.suffix(600))")
        if transaction {
            #expect(try PG.psql("SELECT v FROM \(table) WHERE k = 1") == "1", "the transaction's UPDATE did not commit")
            #expect(try PG.psql("SELECT count(*) FROM \(table) WHERE k = 2") == "1", "the transaction's marker row did not commit")
            let outside = Self.outsideUpdate(table)
            #expect(outside == nil, "row 1's lock is still held: \(outside ?? "")")
        }

        switch change {
        case .removed:
            #expect(try daemon.sql("SELECT 1").errorCode == "no_such_pool")
            #expect(try daemon.sql("SELECT 1", pool: "keep").ok, "the other pool still serves")
        case .replaced:
            let name = try daemon.sql("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            #expect(name.rows == [[.string(successor)]], "the next job ran on \(name)")
            let new = try Self.backends(successor)
            #expect(!new.isEmpty, "the new pool has no connection on the server")
            let old = try Self.backends(application)
            #expect(old.isEmpty, "the old application has backends again: \(old)")
        }
    }

    /// G8 (cell 33 and the PostgreSQL half of 77): when poold is SIGKILLed while a transaction
    /// holds a row lock inside a long statement, the server ends that backend within seconds
    /// (poold asks for `client_connection_check_interval`), not when the statement ends: the
    /// lock is free for an outside writer and nothing of the transaction is kept.
    @Test func pooldKilledWhileAPostgresTransactionHoldsARowLock() throws {
        let application = PG.application("g8-kill")
        let table = "killed"
        try Self.makeLockTable(table)
        let daemon = try PG.daemon(application, min: 1, max: 1)
        let check = try daemon.sql("SHOW client_connection_check_interval")
        #expect(check.rows == [[.string("1s")]], "poold's connection does not ask the server to watch its socket: \(check)")
        let client = try daemon.client()
        try client.send(line: Self.lockingTransaction(table, sleep: 30))
        let notSleeping = try Self.awaitSleep(application)
        try #require(notSleeping == nil, "the transaction never reached pg_sleep; backends: \(notSleeping ?? [])")
        let held = Self.outsideUpdate(table, lockTimeout: "200ms")
        #expect(
            held?.contains("lock timeout") == true,
            "the job should hold row 1's lock while it sleeps; the outside UPDATE gave: \(held ?? "success")")

        daemon.signal(SIGKILL)
        let killed = ContinuousClock.now
        #expect(daemon.waitForExit(timeout: .seconds(5)) != nil, "poold outlived SIGKILL")
        var left: [String] = []
        let gone = try waitUntil(.seconds(5)) {
            left = try Self.backends(application)
            return left.isEmpty
        }
        #expect(gone, "5 s after poold's SIGKILL the server still runs its backends \(left)")
        let outside = Self.outsideUpdate(table)
        #expect(outside == nil, "\(killed.duration(to: .now)) after poold's SIGKILL, row 1's lock is still held: \(outside ?? "")")
        #expect(try PG.psql("SELECT v FROM \(table) WHERE k = 1") == "0", "the killed transaction's UPDATE was kept")
        #expect(try PG.psql("SELECT count(*) FROM \(table) WHERE k = 2") == "0", "the killed transaction's marker row was kept")
    }
}

extension PostgresTests {
    /// A server that refuses `client_connection_check_interval` at startup, as PostgreSQL
    /// before 14 does (FATAL 42704): poold connects without it, and remembers that for the
    /// pool, so that later connections are not refused first. The server is a proxy in front
    /// of the test cluster that refuses any startup packet naming the parameter.
    @Test func aServerThatRefusesTheClientCheckIsUsedWithoutIt() throws {
        let proxy = try RefusingProxy()
        defer { proxy.stop() }
        let application = PG.application("oldserver")
        let daemon = try PG.daemon(application, min: 1, max: 1, url: "postgres://poold@127.0.0.1:\(proxy.port)/poold")
        let first = try daemon.sql("SELECT pg_backend_pid(), current_setting('client_connection_check_interval')")
        #expect(first.ok && first.rows?.first?.last == .string("0"), "the first connection: \(first)")
        #expect(proxy.refusals == 1, "the proxy refused \(proxy.refusals) startups; expected 1 (then poold retried without the parameter)")

        // A new connection after the server ends the old one is not refused first.
        try PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(application)'")
        #expect(try waitUntil(.seconds(3)) { try PG.connections(application) == 0 }, "the backend was not terminated")
        var second: JSONObject = [:]
        let replaced = try waitUntil(.seconds(5)) {
            second = try daemon.sql("SELECT pg_backend_pid()")
            return second.ok && second.rows?.first?.first != first.rows?.first?.first
        }
        #expect(replaced, "no job ran on a new connection: \(second)")
        #expect(proxy.refusals == 1, "the proxy refused \(proxy.refusals) startups: poold did not remember the server's refusal")
        let notices = daemon.log.components(separatedBy: "server refused client_connection_check_interval").count - 1
        #expect(notices == 1, "the refusal was logged \(notices) times: \(daemon.log.suffix(600))")
    }
}

/// A TCP proxy to the test cluster (python3, started and stopped by the test) that answers
/// a startup packet naming `client_connection_check_interval` the way PostgreSQL 13 does.
final class RefusingProxy {
    let port: Int
    private let process: Process
    private let directory: String

    static let script = #"""
        import os, socket, struct, sys, threading
        upstream, directory = (sys.argv[1], int(sys.argv[2])), sys.argv[3]

        def exactly(sock, n):
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return data

        def pipe(source, target):
            try:
                while data := source.recv(65536):
                    target.sendall(data)
            except OSError:
                pass
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def serve(client):
            try:
                while True:
                    head = exactly(client, 8)
                    length, code = struct.unpack("!ii", head)
                    body = exactly(client, length - 8)
                    if code != 80877103:  # not an SSLRequest: a startup or a cancel
                        break
                    client.sendall(b"N")
                if b"client_connection_check_interval" in body:
                    fields = b"SFATAL\0VFATAL\0C42704\0Munrecognized configuration parameter \"client_connection_check_interval\"\0\0"
                    client.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)
                    with open(os.path.join(directory, "refused"), "a") as log:
                        log.write("refused\n")
                    client.close()
                    return
                server = socket.create_connection(upstream)
                server.sendall(head + body)
                threading.Thread(target=pipe, args=(server, client), daemon=True).start()
                pipe(client, server)
            except (EOFError, OSError):
                client.close()

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        with open(os.path.join(directory, "port.tmp"), "w") as f:
            f.write(str(listener.getsockname()[1]))
        os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
        while True:
            client, _ = listener.accept()
            threading.Thread(target=serve, args=(client,), daemon=True).start()
        """#

    init() throws {
        guard let host = PG.environment["POOLD_TEST_PG_HOST"], let upstreamPort = PG.environment["POOLD_TEST_PG_PORT"] else {
            throw TestFailure("POOLD_TEST_PG_HOST/PORT are not set: run under scripts/with-postgres.sh")
        }
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-u", directory + "/proxy.py", host, upstreamPort, directory]
        try Self.script.write(toFile: directory + "/proxy.py", atomically: true, encoding: .utf8)
        try process.run()
        var port: Int?
        _ = waitUntil(.seconds(5)) {
            port = (try? String(contentsOfFile: directory + "/port", encoding: .utf8)).flatMap { Int($0) }
            return port != nil || !process.isRunning
        }
        (self.directory, self.process, self.port) = (directory, process, port ?? 0)
        guard port != nil else {
            stop()
            throw TestFailure("the refusing proxy did not start")
        }
    }

    /// Startup packets refused so far.
    var refusals: Int {
        ((try? String(contentsOfFile: directory + "/refused", encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// SIGKILL: the proxy inherits the test thread's signal mask, in which SIGTERM may be blocked.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension JSONValue {
    /// An integer as bare digits (for a backend pid in a message or a `pid:state` entry).
    fileprivate var intText: String {
        if case .int(let value) = self { return String(value) }
        return "\(self)"
    }
}

extension PostgresTests {
    /// SIGTERM (the running jobs outlive a 1 s grace) and a second SIGTERM (the 30 s grace is
    /// skipped) with every kind of resource held at once: a PostgreSQL transaction holding a row
    /// lock, a SQLite transaction holding the write lock, an exec worker that started a child
    /// process, and two clients (one waiting for its job, one idle). Afterwards nothing of any of
    /// them is left: `0 leaked`, no backend of poold's on the server and the row lock free, the
    /// SQLite write lock free, the worker and its child gone, the socket file gone, and each
    /// client's connection closed by poold after its answer.
    @Test(arguments: [false, true])
    func stoppingReleasesEveryResource(secondSignal: Bool) throws {
        let cluster = try PG.require()
        let application = PG.application("stop-\(secondSignal ? "twice" : "once")")
        let table = "stop_\(secondSignal ? "twice" : "once")"
        try Self.makeLockTable(table)
        let directory = try DaemonProcess.makeTemporaryDirectory()
        try cluster.password.write(toFile: directory + "/pg.password", atomically: true, encoding: .utf8)
        let ledger = Ledger(path: directory + "/ledger.jsonl")
        let daemon = try DaemonProcess(
            grace: secondSignal ? "30s" : "1s",
            pools: """
                [[pool]]
                name = "pg"
                kind = "postgres"
                url = "\(cluster.url)"
                password_file = "@DIR@/pg.password"
                application_name = "\(application)"
                min = 1
                max = 1
                allow_adhoc = true

                [[pool]]
                name = "main"
                kind = "sqlite"
                path = "@DIR@/main.db"
                max = 1
                allow_adhoc = true

                [[pool]]
                name = "workers"
                kind = "exec"
                command = ["/usr/bin/python3", "\(Exec.worker("ledger"))"]
                max = 1
                kill_grace = "500ms"
                environment = { POOLD_TEST_LEDGER = "\(ledger.path)" }
                """, directory: directory)
        let workers = WorkerWatch(daemon)
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)

        let pg = try daemon.client()
        try pg.send(line: Self.lockingTransaction(table, sleep: 30))
        let lite = try daemon.client()
        try lite.send(
            line:
                #"{"id":1,"op":"run","pool":"main","transaction":true,"batch":[{"sql":"INSERT INTO kv VALUES (1, 'x')"},"#
                + #"{"sql":"\#(busySQL(millions: 1000))"}]}"#
        )
        let (exec, children) = try UnwindingTests.startJobWithChild(daemon, ledger, workers, pool: "workers", sleep: 30)
        let idle = try daemon.client()
        #expect(try idle.request(["op": .string("ping")]).ok)

        let notSleeping = try Self.awaitSleep(application)
        try #require(notSleeping == nil, "the PostgreSQL transaction never reached pg_sleep: \(notSleeping ?? [])")
        #expect(try waitUntil(.seconds(5)) { try ContentionTests.jobStates(daemon) == ["running", "running", "running"] })

        let signalled = ContinuousClock.now
        daemon.signal(SIGTERM)
        if secondSignal {
            usleep(200_000)
            daemon.signal(SIGTERM)
        }
        for (name, client) in [("pg", pg), ("main", lite), ("workers", exec)] {
            let reply = try client.readReply(timeout: .seconds(10))
            #expect(reply?.errorCode == "cancelled", "pool \(name): \(String(describing: reply))")
            #expect(try client.readLine(timeout: .seconds(10)) == nil, "pool \(name)'s client connection was not closed after its answer")
        }
        #expect(try idle.readLine(timeout: .seconds(10)) == nil, "the idle client's connection was not closed")
        #expect(daemon.waitForExit(timeout: .seconds(15)) == 0)
        #expect(signalled.duration(to: .now) < .seconds(8), "stopping took \(signalled.duration(to: .now))")
        #expect(daemon.log.contains("cancelled, 0 leaked"), "\(daemon.log.suffix(400))")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket file is left")
        // PostgreSQL: no backend left, the transaction rolled back, its lock free.
        var left: [String] = []
        let gone = try waitUntil(.seconds(3)) {
            left = try Self.backends(application)
            return left.isEmpty
        }
        #expect(gone, "poold's backends after exit: \(left)")
        #expect(try PG.psql("SELECT count(*) FROM \(table) WHERE k = 2") == "0")
        #expect(try PG.psql("SELECT v FROM \(table) WHERE k = 1") == "0")
        #expect(Self.outsideUpdate(table) == nil, "row 1's lock is still held")
        // SQLite: rolled back, the write lock free.
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "0")
        #expect(try UnwindingTests.outsideWriterSucceeds(daemon, k: 2))
        // Exec: the worker and the child it started are gone.
        #expect(
            waitUntil(.seconds(2)) { workers.gone(children.worker) && workers.gone(children.child) },
            "worker \(children.worker) or its child \(children.child) outlived poold")
        workers.expectNoneLeft()
    }
}

extension PostgresTests {
    /// `require_auth` against the real cluster (SCRAM-SHA-256): allowed, the pool works;
    /// required otherwise, the pool refuses to authenticate and says why.
    @Test func requireAuthAgainstTheCluster() throws {
        let scram = PG.application("auth-scram")
        let allowed = try PG.daemon(scram, pool: #"require_auth = "scram-sha-256""#)
        #expect(try allowed.sql("SELECT 1").rows == [[.int(1)]])
        let md5 = PG.application("auth-md5")
        let refusing = try PG.daemon(md5, pool: #"require_auth = "md5""#)
        let reply = try refusing.sql("SELECT 1")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("SCRAM-SHA-256") == true && reply.errorMessage?.contains("require_auth") == true, "\(reply)")
        #expect(try PG.connections(md5) == 0)
    }

    /// A server (or whatever answers on its port) asking for the password in cleartext gets it
    /// by default, and never under `require_auth = "scram-sha-256"`: a fake server that asks
    /// records whether a PasswordMessage came.
    @Test(arguments: [false, true])
    func aCleartextRequestIsRefusedUnderRequireAuth(requireScram: Bool) throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let record = directory + "/password-seen"
        let server = """
            import socket, sys, struct
            listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(8)
            print(listener.getsockname()[1], flush=True)
            while True:
                conn, _ = listener.accept()
                conn.settimeout(3)
                try:
                    data = conn.recv(8)
                    length, code = struct.unpack("!ii", data)
                    if code == 80877103:  # SSLRequest: no TLS here
                        conn.sendall(b"N"); data = conn.recv(8); length, code = struct.unpack("!ii", data)
                    conn.recv(length - 8)
                    conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
                    reply = conn.recv(1)
                    if reply == b"p":
                        open(sys.argv[1], "a").write("password\\n")
                except Exception:
                    pass
                conn.close()
            """
        let fake = Process()
        fake.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        fake.arguments = ["-c", server, record]
        let out = Pipe()
        fake.standardOutput = out
        try fake.run()
        defer {
            kill(fake.processIdentifier, SIGKILL)
            fake.waitUntilExit()
        }
        let port = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try "secret\n".write(toFile: directory + "/pg.password", atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(
            pools: """
                [[pool]]
                name = "pg"
                kind = "postgres"
                url = "postgres://poold@127.0.0.1:\(port)/db?sslmode=prefer"
                password_file = "@DIR@/pg.password"
                min = 1
                max = 1
                acquire_timeout = "1s"
                \(requireScram ? #"require_auth = "scram-sha-256""# : "")
                allow_adhoc = true
                """, directory: directory)
        _ = waitUntil(.seconds(5)) { (try? daemon.poolState()["last_error"]).map { $0 != .null } ?? false }
        let seen = FileManager.default.fileExists(atPath: record)
        if requireScram {
            #expect(!seen, "poold sent the password in cleartext under require_auth")
            let state = try daemon.poolState()
            #expect("\(state["last_error"] ?? .null)".contains("cleartext"), "\(state)")
        } else {
            #expect(seen, "without require_auth the fake server should have got the password: the test proves nothing")
        }
    }
}

extension PostgresTests {
    /// No job changes what a later job (of another client) sees: a job that sets, prepares,
    /// listens, creates a temporary table or changes a reported setting leaves a connection the
    /// pool replaces before it serves again; plain statements keep the same backend.
    @Test func noSessionStateOutlivesAJob() throws {
        let application = PG.application("session")
        let daemon = try PG.daemon(application, min: 1, max: 1)
        func pid() throws -> JSONValue? { try daemon.sql("SELECT pg_backend_pid()").rows?.first?.first }
        let first = try pid()
        #expect(try daemon.sql("SELECT 1").ok)
        #expect(try pid() == first, "a plain SELECT replaced the connection")
        let defaultPath = try daemon.sql("SHOW search_path").rows?.first?.first
        let defaultZone = try daemon.sql("SHOW TimeZone").rows?.first?.first

        #expect(try daemon.sql("SET search_path = pg_catalog").ok)
        #expect(try daemon.sql("SHOW search_path").rows?.first?.first == defaultPath, "the next job saw another job's SET")
        #expect(try pid() != first)

        #expect(try daemon.sql("PREPARE leftover AS SELECT 42").ok)
        #expect(try daemon.sql("EXECUTE leftover").errorCode == "sql_error", "the next job used another job's prepared statement")

        #expect(try daemon.sql("CREATE TEMP TABLE leftover (x int)").ok)
        #expect(try daemon.sql("SELECT * FROM leftover").errorCode == "sql_error", "the next job saw another job's temporary table")

        #expect(try daemon.sql("SELECT set_config('TimeZone', 'America/New_York', false)").ok)
        #expect(try daemon.sql("SHOW TimeZone").rows?.first?.first == defaultZone, "the next job saw another job's set_config")

        #expect(try daemon.sql("LISTEN leftover").ok)
        #expect(try daemon.sql("SELECT count(*) FROM pg_listening_channels()").rows == [[.int(0)]], "the next job inherited a LISTEN")
        #expect(try daemon.poolState()["leased"] == .int(0))
    }
}
