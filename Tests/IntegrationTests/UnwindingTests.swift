import ControlClient
import ControlProtocol
import Foundation
import Testing

/// Cells of the unwinding matrix (docs/UNWINDING.md) that need a test of their own: each
/// checks the resource itself after the path — the write lock free for an outside writer, the
/// worker's whole process group gone, the database file no longer open, `0 leaked` — so that
/// it fails if the resource leaks. PostgreSQL cells are in `UnwindingPostgresTests.swift`.
@Suite(.timeLimit(.minutes(3)))
struct UnwindingTests {
    enum Stop: String, CaseIterable, CustomStringConvertible {
        case timeout, cancel, disconnect
        var description: String { rawValue }
    }

    /// A poold with one SQLite pool "main" of `max = 1` and a table `kv`.
    static func sqliteDaemon(grace: String = "3s") throws -> DaemonProcess {
        let daemon = try DaemonProcess(
            grace: grace,
            pools: """
                [[pool]]
                name = "main"
                kind = "sqlite"
                path = "@DIR@/main.db"
                min = 1
                max = 1
                acquire_timeout = "2s"
                job_timeout = "20s"
                allow_adhoc = true
                """)
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)
        return daemon
    }

    /// A transaction that writes row `k`, then spins until something stops it.
    static func writingTransaction(k: Int, timeoutMs: Int? = nil) -> String {
        let timeout = timeoutMs.map { #","timeout_ms":\#($0)"# } ?? ""
        return
            #"{"id":1,"op":"run","pool":"main","transaction":true\#(timeout),"batch":[{"sql":"INSERT INTO kv VALUES (\#(k), 'x')"},"#
            + #"{"sql":"\#(busySQL(millions: 1000))"}]}"#
    }

    /// Whether a writer outside poold gets the database's write lock within 200 ms.
    static func outsideWriterSucceeds(_ daemon: DaemonProcess, k: Int) throws -> Bool {
        let result = try Program.run(
            "/usr/bin/sqlite3", ["-cmd", ".timeout 200", daemon.database, "INSERT INTO kv VALUES (\(k), 'outside')"])
        return result.status == 0
    }

    /// G1: a SQLite transaction stopped by its timeout, `cancel` or a disconnect, on the one
    /// connection of its pool, gives back the lease and the connection, leaves no row, and
    /// holds no write lock: an outside writer with a 200 ms busy timeout gets in at once.
    @Test(arguments: Stop.allCases)
    func sqliteTransactionUnwinds(stop: Stop) throws {
        let daemon = try Self.sqliteDaemon()
        let client = try daemon.client()
        try client.send(line: Self.writingTransaction(k: 1, timeoutMs: stop == .timeout ? 300 : nil))
        guard let job = AccessTests.runningJob(in: daemon, of: getuid()) else {
            Issue.record("the transaction never showed in jobs")
            return
        }
        switch stop {
        case .timeout: break
        case .cancel: #expect(try daemon.request(["op": .string("cancel"), "job": .int(job)]).ok)
        case .disconnect: client.close()
        }
        if stop != .disconnect {
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.errorCode == (stop == .timeout ? "timeout" : "cancelled"), "\(String(describing: reply))")
        }
        let idle = try waitUntil(.seconds(5)) {
            let pool = try daemon.poolState("main")
            return try ContentionTests.jobEntries(daemon).isEmpty && pool["leased"] == .int(0) && pool["open"] == .int(1)
        }
        let (states, pool) = (try ContentionTests.jobStates(daemon), try daemon.poolState("main"))
        #expect(idle, "after \(stop): jobs \(states), pool \(pool)")
        #expect(try Self.outsideWriterSucceeds(daemon, k: 2), "the write lock is still held after \(stop)")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv WHERE k = 1") == "0", "the stopped transaction's row is there")
        #expect(
            try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("INSERT INTO kv VALUES (3, 'after')")]).ok)
        #expect(try daemon.sqlite("SELECT count(*) FROM kv WHERE k = 3") == "1")
    }

    /// G7: a second SIGTERM skips the grace, and even then the lease, the connection, the
    /// transaction and the socket file are all given back: `0 leaked`, no row, no lock.
    @Test func secondSigtermLeaksNothing() throws {
        let daemon = try Self.sqliteDaemon(grace: "30s")
        let client = try daemon.client()
        try client.send(line: Self.writingTransaction(k: 1))
        guard AccessTests.runningJob(in: daemon, of: getuid()) != nil else {
            Issue.record("the transaction never showed in jobs")
            return
        }
        let signalled = ContinuousClock.now
        daemon.signal(SIGTERM)
        usleep(200_000)
        daemon.signal(SIGTERM)
        #expect(try client.readReply(timeout: .seconds(10))?.errorCode == "cancelled")
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
        #expect(signalled.duration(to: .now) < .seconds(5), "the 30s grace was skipped")
        #expect(daemon.log.contains("cancelled, 0 leaked"), "\(daemon.log.suffix(300))")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket file is left")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "0")
        #expect(try Self.outsideWriterSucceeds(daemon, k: 2))
    }

    // MARK: Exec

    enum ExecStop: String, CaseIterable, CustomStringConvertible {
        case timeout, cancel, disconnect
        /// The worker is killed from outside (SIGKILL) mid-job.
        case workerKilled
        var description: String { rawValue }
    }

    /// G3: a job stopped by its timeout, `cancel`, its client's disconnect or its worker's
    /// death takes the worker's whole process group with it — the child the worker started
    /// included — and the pool replaces the worker.
    @Test(arguments: ExecStop.allCases)
    func execStopKillsTheWorkersGroup(stop: ExecStop) throws {
        let (daemon, ledger) = try ContentionTests.daemon(.exec)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        let (client, pids) = try Self.startJobWithChild(daemon, ledger, workers, sleep: 30, timeoutMs: stop == .timeout ? 1500 : nil)
        let job = try #require(AccessTests.runningJob(in: daemon, of: getuid()), "the job is not listed")
        switch stop {
        case .timeout:
            #expect(try client.readReply(timeout: .seconds(5))?.errorCode == "timeout")
        case .cancel:
            #expect(try daemon.request(["op": .string("cancel"), "job": .int(job)]).ok)
            #expect(try client.readReply(timeout: .seconds(5))?.errorCode == "cancelled")
        case .disconnect:
            client.close()
        case .workerKilled:
            kill(pids.worker, SIGKILL)
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.errorCode == "backend" && reply?.errorMessage?.contains("SIGKILL") == true, "\(String(describing: reply))")
        }
        // kill_grace is 500ms.
        #expect(waitUntil(.milliseconds(1500)) { workers.gone(pids.worker) }, "worker \(pids.worker) still runs after \(stop)")
        #expect(waitUntil(.milliseconds(1500)) { workers.gone(pids.child) }, "the worker's child \(pids.child) still runs after \(stop)")
        #expect(try waitUntil(.seconds(3)) { try daemon.poolState("busy")["leased"] == .int(0) })
        let next = try daemon.request(["op": .string("run"), "pool": .string("busy"), "input": .object(["mark": .string("next")])])
        #expect(next.ok, "\(next)")
    }

    /// SIGKILL of poold mid-job: the worker dies with it (its parent-death signal), and so does
    /// the child the worker started, which that signal does not reach: poold's worker reaper
    /// kills the group when poold's end of its pipe closes, then exits itself.
    @Test func sigkillOfPooldKillsWhatItsWorkersStarted() throws {
        let (daemon, ledger) = try ContentionTests.daemon(.exec)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        // The client stays connected: a disconnect would stop the job and kill the group itself.
        let (client, pids) = try Self.startJobWithChild(daemon, ledger, workers, sleep: 30)
        defer { withExtendedLifetime(client) {} }
        let reapers = workers.current(WorkerReaperFlag.flag)
        #expect(reapers.count == 1, "poold runs one worker reaper: \(reapers.map { workers.describe($0) })")
        daemon.signal(SIGKILL)
        #expect(daemon.waitForExit(timeout: .seconds(5)) != nil, "poold survived SIGKILL")
        #expect(waitUntil(.seconds(2)) { workers.gone(pids.worker) }, "worker \(pids.worker) outlived poold")
        #expect(waitUntil(.seconds(2)) { workers.gone(pids.child) }, "the worker's child \(pids.child) outlived poold")
        for reaper in reapers {
            #expect(waitUntil(.seconds(2)) { workers.gone(reaper) }, "the reaper \(reaper) outlived poold")
        }
    }

    /// A process a worker let go (setsid and a double fork: out of the worker's group) is
    /// adopted by poold and dies with it, whether poold stops (SIGTERM) or is killed (once poold
    /// has seen it: it looks once a second).
    @Test(arguments: [false, true])
    func whatAWorkerLetGoDiesWithPoold(killed: Bool) throws {
        let (daemon, ledger) = try ContentionTests.daemon(.exec)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        #expect(try daemon.request(["op": .string("run"), "pool": .string("busy"), "input": .object(["daemon": .bool(true)])]).ok)
        let line = try #require(ledger.lines.last { $0.contains("daemon_pid") }, "\(ledger.lines)")
        let daemonPid = try #require(
            pid_t(line.split(separator: ":")[1].split(separator: ",")[0].trimmingCharacters(in: .whitespaces)), "\(line)")
        workers.record(daemonPid)
        #expect(Proc.stat(daemonPid)?.ppid == daemon.process.processIdentifier, "poold did not adopt the process its worker let go")
        usleep(1_500_000)  // poold has looked at its children
        daemon.signal(killed ? SIGKILL : SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(10)) != nil)
        #expect(
            waitUntil(.seconds(2)) { workers.gone(daemonPid) },
            "the process a worker let go outlived poold (\(killed ? "SIGKILL" : "SIGTERM"))")
        if !killed { #expect(daemon.log.contains("killed processes exec workers had let go"), "\(daemon.log.suffix(400))") }
    }

    // MARK: Reload

    enum Change: String, CaseIterable, CustomStringConvertible {
        case removed, replaced
        var description: String { rawValue }
    }

    /// G4: a reload that removes or replaces a SQLite pool while a transaction runs on it lets
    /// the transaction commit, then closes the pool: the file is no longer open in poold, its
    /// lock is free, and the stop line counts the retired pool too.
    @Test(arguments: Change.allCases)
    func reloadClosesARetiredSQLitePoolAfterItsTransaction(change: Change) throws {
        let daemon = try Self.sqliteDaemon()
        let client = try daemon.client()
        try client.send(
            line:
                #"{"id":1,"op":"run","pool":"main","transaction":true,"batch":[{"sql":"INSERT INTO kv VALUES (1, 'x')"},"#
                + #"{"sql":"\#(busySQL(millions: 2))"}]}"#
        )
        guard AccessTests.runningJob(in: daemon, of: getuid()) != nil else {
            Issue.record("the transaction never showed in jobs")
            return
        }
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let keep = """

            [[pool]]
            name = "keep"
            kind = "sqlite"
            path = "\(daemon.directory)/keep.db"
            """
        let new =
            switch change {
            case .removed: config.components(separatedBy: "[[pool]]")[0] + keep
            case .replaced: config.replacingOccurrences(of: "main.db", with: "main2.db")
            }
        try new.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.request(["op": .string("reload")])
        #expect(reload.ok, "\(reload)")
        #expect("\(reload)".contains(change == .removed ? "pool main removed" : "pool main replaced"), "\(reload)")
        #expect(try client.readReply(timeout: .seconds(10))?.ok == true, "the running transaction finishes")
        let closed = waitUntil(.seconds(3)) { !Self.opens(daemon, file: daemon.database) }
        #expect(closed, "poold still has \(daemon.database) open after the pool was \(change)")
        #expect(waitUntil(.seconds(3)) { daemon.log.contains("pool closed") }, "\(daemon.log.suffix(500))")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv WHERE k = 1") == "1", "the transaction committed")
        #expect(try Self.outsideWriterSucceeds(daemon, k: 2))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
        #expect(daemon.log.contains(", 0 leaked"), "\(daemon.log.suffix(300))")
    }

    /// G6: a reload that removes or replaces an exec pool while its worker runs a job lets
    /// the job answer, then stops the worker and its child.
    @Test(arguments: Change.allCases)
    func reloadStopsARetiredExecPoolsWorkers(change: Change) throws {
        let (daemon, ledger) = try ContentionTests.daemon(.exec)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        let (client, pids) = try Self.startJobWithChild(daemon, ledger, workers, sleep: 1.0)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let new =
            switch change {
            case .removed:
                config.components(separatedBy: "[[pool]]")[0]
                    + "\n[[pool]]\nname = \"keep\"\nkind = \"sqlite\"\npath = \"\(daemon.directory)/keep.db\"\n"
            case .replaced: config.replacingOccurrences(of: #"["/usr/bin/python3", "#, with: #"["/usr/bin/python3", "-u", "#)
            }
        try new.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.request(["op": .string("reload")])
        #expect("\(reload)".contains(change == .removed ? "pool busy removed" : "pool busy replaced"), "\(reload)")
        #expect(try client.readReply(timeout: .seconds(10))?.ok == true, "the running job finishes")
        #expect(waitUntil(.seconds(2)) { workers.gone(pids.worker) }, "worker \(pids.worker) of the retired pool still runs")
        #expect(waitUntil(.seconds(2)) { workers.gone(pids.child) }, "its child \(pids.child) still runs")
        if change == .replaced {
            let next = try daemon.request(["op": .string("run"), "pool": .string("busy"), "input": .object(["mark": .string("new")])])
            #expect(next.ok, "the replacement pool serves: \(next)")
        }
        #expect(waitUntil(.seconds(3)) { daemon.log.contains("pool closed") }, "\(daemon.log.suffix(500))")
    }

    /// Sends, on a client of its own, a job that makes the ledger worker start a child and then
    /// sleep; returns once the worker has reported both pids (recorded in `workers`).
    static func startJobWithChild(
        _ daemon: DaemonProcess, _ ledger: Ledger, _ workers: WorkerWatch, pool: String = "busy", sleep: Double, timeoutMs: Int? = nil
    ) throws -> (client: ControlClient, pids: (worker: pid_t, child: pid_t)) {
        let client = try daemon.client()
        var job: JSONObject = [
            "id": .int(1), "op": .string("run"), "pool": .string(pool), "input": .object(["child": .bool(true), "sleep": .double(sleep)]),
        ]
        if let timeoutMs { job["timeout_ms"] = .int(Int64(timeoutMs)) }
        try client.send(line: JSON.encode(.object(job)))
        var pids: (worker: pid_t, child: pid_t)?
        _ = waitUntil(.seconds(10)) {
            pids = ledger.childPids()
            return pids != nil
        }
        guard let pids else { throw TestFailure("the worker never started its child: \(ledger.lines)") }
        workers.record(pids.worker)
        workers.record(pids.child)
        return (client, pids)
    }

    /// Whether one of poold's descriptors is `file` (or its -wal or -shm).
    static func opens(_ daemon: DaemonProcess, file: String) -> Bool {
        let directory = "/proc/\(daemon.process.processIdentifier)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.contains { entry in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + entry) else { return false }
            return target == file || target == file + "-wal" || target == file + "-shm"
        }
    }
}

extension Ledger {
    /// The worker and child pids the ledger worker recorded for a `{"child": true}` job.
    func childPids() -> (worker: pid_t, child: pid_t)? {
        for line in lines.reversed() {
            guard let data = line.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let child = object["child_pid"] as? Int, let worker = object["worker_pid"] as? Int
            else { continue }
            return (pid_t(worker), pid_t(child))
        }
        return nil
    }
}

/// The flag poold starts its worker reaper with (see `WorkerReaper`).
enum WorkerReaperFlag {
    static let flag = "--reap-worker-groups"
}
