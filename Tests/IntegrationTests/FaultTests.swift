import ControlClient
import ControlProtocol
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Faults injected into a real poold and the real things around it: a database locked by
/// another process, a full disk, a worker or poold itself killed with SIGKILL, the config
/// file gone at reload, a client that vanishes before reading its answers. Each test checks
/// what an operator expects of a production daemon: a clear error code and message, the
/// daemon keeps serving, nothing half-applied, nothing leaked. (The PostgreSQL fault is in
/// the `PostgresTests` extension below: it crashes the shared test cluster, so it must run
/// serialized with the other PostgreSQL tests.)
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FaultTests {
    @Test func databaseLockedByAnotherProcessFailsAfterBusyTimeoutThenWorks() throws {
        let daemon = try DaemonProcess(pools: Fault.sqlitePool(path: "@DIR@/main.db", extra: #"busy_timeout = "1s""#))
        #expect(try daemon.sql("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)", pool: "main").ok)
        #expect(try daemon.sql("INSERT INTO kv VALUES (1, 'before')", pool: "main").ok)

        let locker = try LockHolder(database: daemon.database, directory: daemon.directory)
        defer { locker.stop() }

        // A write waits busy_timeout for the lock, then fails with SQLITE_BUSY and says what to do.
        let writer = try daemon.client()
        let started = ContinuousClock.now
        try writer.send(line: JSON.encode(.object(Fault.run(id: 1, pool: "main", sql: "INSERT INTO kv VALUES (2, 'during')"))))
        // poold answers other clients while that job waits on the lock.
        let ping = try daemon.request(["op": .string("ping")], timeout: .seconds(5))
        let pinged = started.duration(to: .now)
        #expect(ping.ok)
        #expect(pinged < .milliseconds(900), "ping waited \(pinged) behind a job waiting for a lock")
        let reply = try #require(try writer.readReply(timeout: .seconds(15)))
        let waited = started.duration(to: .now)
        #expect(reply.errorCode == "sql_error", "\(reply)")
        #expect(reply.errorDetail?["sqlite_name"] == .string("SQLITE_BUSY"), "\(reply)")
        #expect(reply.errorDetail?["sqlite_code"] == .int(5), "\(reply)")
        let message = reply.errorMessage ?? ""
        #expect(message.contains("locked"), "says what happened: \(message)")
        #expect(message.contains("busy_timeout") && message.contains("retry"), "says what to do: \(message)")
        #expect(waited >= .milliseconds(900), "failed after \(waited), before busy_timeout (1s)")
        #expect(waited < .seconds(6), "failed only after \(waited), busy_timeout is 1s")

        // A transaction fails the same way (at BEGIN IMMEDIATE) and leaves nothing behind.
        let batch = try daemon.batch(
            ["INSERT INTO kv VALUES (3, 'tx')", "INSERT INTO kv VALUES (4, 'tx')"], transaction: true, pool: "main")
        #expect(batch.errorCode == "sql_error", "\(batch)")
        #expect(batch.errorDetail?["sqlite_name"] == .string("SQLITE_BUSY"), "\(batch)")
        // Reads need no write lock (WAL): they answer, without the locker's uncommitted row.
        #expect(try daemon.sql("SELECT k FROM kv ORDER BY k", pool: "main").rows == [[.int(1)]])
        #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(5)).ok)

        // Once the lock is gone the same write succeeds.
        locker.release()
        #expect(locker.waitForExit(.seconds(10)), "the lock holder did not finish: \(locker.errors)")
        let again = try daemon.sql("INSERT INTO kv VALUES (2, 'during')", pool: "main")
        #expect(again.ok, "\(again)")
        #expect(again["affected"] == .int(1))
        #expect(try daemon.sqlite("SELECT group_concat(k) FROM (SELECT k FROM kv ORDER BY k)") == "1,2")
        let pool = try daemon.poolState("main")
        #expect(pool["leased"] == .int(0) && pool["state"] == .string("ready"), "\(pool)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test func diskFullFailsWritesClearlyAndRecoversWhenSpaceIsFreed() throws {
        guard getuid() == 0 else {
            throw TestFailure("the disk-full test mounts a 2 MiB tmpfs, which needs root: run the tests as root (CI does)")
        }
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let disk = directory + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
        let mounted = try Program.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", disk])
        guard mounted.status == 0 else { throw TestFailure("cannot mount a tmpfs on \(disk): \(mounted.err)") }
        defer {
            Fault.unmount(disk)
            try? FileManager.default.removeItem(atPath: directory)
        }
        // Ballast that an operator can delete to free space: 1.5 MiB of the 2, so that once it
        // is gone there is room for what a DELETE writes (this SQLite has SECURE_DELETE on:
        // freed pages are overwritten, through the WAL) and for the checkpoint after it.
        let ballast = disk + "/ballast"
        guard FileManager.default.createFile(atPath: ballast, contents: Data((0..<1536 * 1024).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        else {
            throw TestFailure("cannot write the ballast file on \(disk)")
        }

        do {
            // A checkpoint is maintenance, which the config's owner runs as a named job: ad-hoc
            // SQL may not set pragmas.
            let daemon = try DaemonProcess(
                pools: Fault.sqlitePool(path: "@DIR@/disk/full.db") + """

                    [[job]]
                    name = "checkpoint"
                    pool = "main"
                    sql = "PRAGMA wal_checkpoint(TRUNCATE)"
                    """, directory: directory)
            defer {
                if daemon.process.isRunning {
                    daemon.signal(SIGTERM)
                    _ = daemon.waitForExit(timeout: .seconds(10))
                }
            }
            #expect(try daemon.sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)", pool: "main").ok)
            let insert = "INSERT INTO blobs (b) VALUES (randomblob(100000))"
            var inserted = 0
            var failure: JSONObject?
            for _ in 0..<40 {
                let reply = try daemon.sql(insert, pool: "main")
                if reply.ok {
                    inserted += 1
                } else {
                    failure = reply
                    break
                }
            }
            let full = try #require(failure, "40 blobs of 100 kB fit in the 0.5 MiB left on the file system")
            #expect(inserted > 0, "not one blob fitted: \(full)")
            #expect(full.errorCode == "sql_error", "\(full)")
            #expect(full.errorDetail?["sqlite_name"] == .string("SQLITE_FULL"), "\(full)")
            #expect(full.errorDetail?["sqlite_code"] == .int(13), "\(full)")
            let message = full.errorMessage ?? ""
            #expect(message.contains("full"), "says what happened: \(message)")
            // As SQLITE_BUSY's message says to retry or raise busy_timeout, this one should say
            // to free space (SQLite's own text, "database or disk is full", does not).
            #expect(message.contains("space"), "says what to do: \(message)")

            // The failed insert left nothing; reads and observers still answer.
            #expect(try daemon.sql("SELECT count(*) FROM blobs", pool: "main").rows == [[.int(Int64(inserted))]])
            #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(5)).ok)
            // A transaction that runs out of space is rolled back whole.
            let batch = try daemon.batch(
                ["INSERT INTO blobs (b) VALUES (x'01')", "INSERT INTO blobs (b) VALUES (randomblob(400000))"], transaction: true,
                pool: "main")
            #expect(batch.errorCode == "sql_error", "\(batch)")
            #expect(batch.errorDetail?["sqlite_name"] == .string("SQLITE_FULL"), "\(batch)")
            #expect(
                try daemon.sql("SELECT count(*) FROM blobs", pool: "main").rows == [[.int(Int64(inserted))]],
                "half of the batch was applied")
            let pool = try daemon.poolState("main")
            #expect(pool["state"] == .string("ready") && pool["leased"] == .int(0), "\(pool)")

            // Space freed: the same write succeeds.
            try FileManager.default.removeItem(atPath: ballast)
            let again = try daemon.sql(insert, pool: "main")
            #expect(again.ok, "after freeing 1.5 MiB: \(again)")
            // Deleting rows and checkpointing gives the space back to the database.
            #expect(try daemon.sql("DELETE FROM blobs", pool: "main").ok)
            let checkpoint = try daemon.request(["op": .string("run"), "job": .string("checkpoint")])
            #expect(checkpoint.rows?.first?.first == .int(0), "the checkpoint did not complete: \(checkpoint)")
            for n in 1...3 {
                let reply = try daemon.sql(insert, pool: "main")
                #expect(reply.ok, "blob \(n) after DELETE: \(reply)")
            }
            #expect(try daemon.sql("SELECT count(*) FROM blobs", pool: "main").rows == [[.int(3)]])
            #expect(try daemon.sql("PRAGMA integrity_check", pool: "main").rows == [[.string("ok")]])
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
            #expect(daemon.log.contains("0 leaked"), "\(daemon.log)")
        }
    }

    @Test func workerKilledMidJobIsReplacedAndTheJobFailsNamingTheSignal() throws {
        let daemon = try execDaemon("echo", min: 1, max: 1, jobTimeout: "20s")
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        #expect(waitUntil(.seconds(5)) { workers.current("echo.py").count == 1 }, "no worker started")
        let pid = try #require(workers.current("echo.py").first)
        let client = try daemon.client()
        try client.send(
            line: JSON.encode(.object(["id": .int(1), "op": .string("run"), "pool": .string("workers"), "input": ["sleep": 30]])))
        #expect(try waitUntil(.seconds(5)) { try daemon.runningJobs() == 1 }, "the job never ran")
        usleep(200_000)  // the worker has read the job and sleeps
        let killed = ContinuousClock.now
        #expect(kill(pid, SIGKILL) == 0, "kill(\(pid)): \(String(cString: strerror(errno)))")

        let reply = try #require(try client.readReply(timeout: .seconds(10)))
        #expect(killed.duration(to: .now) < .seconds(3), "the answer came \(killed.duration(to: .now)) after the kill")
        #expect(reply.errorCode == "backend", "\(reply)")
        let message = reply.errorMessage ?? ""
        #expect(message.contains("SIGKILL"), "names the signal: \(message)")
        #expect(message.contains("exited"), "says the worker ended: \(message)")
        #expect(waitUntil(.seconds(3)) { workers.gone(pid) })

        // A fresh worker takes the next job; exactly one worker runs (none leaked, none doubled).
        let next = try daemon.workerInfo()
        #expect(next.pid != pid)
        #expect(try daemon.runJob("after").ok)
        #expect(workers.current("echo.py") == [next.pid], "workers: \(workers.current("echo.py").map { workers.describe($0) })")
        let pool = try daemon.poolState("workers")
        #expect(pool["open"] == .int(1) && pool["state"] == .string("ready"), "\(pool)")
    }

    @Test func pooldKilledMidTransactionRestartsCleanOnTheSameDirectory() throws {
        let first = try DaemonProcess()
        try withExtendedLifetime(first) {
            #expect(try first.sql("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)", pool: "main").ok)
            for k in 1...10 {
                #expect(
                    try first.request([
                        "op": .string("run"), "job": .string("put"), "params": .array([.int(Int64(k)), .string("committed")]),
                    ]).ok)
            }
            let client = try first.client()
            try client.send(
                line: JSON.encode(
                    .object(
                        Fault.batch(
                            id: 1,
                            [
                                "INSERT INTO kv VALUES (100, 'half')", "INSERT INTO kv VALUES (101, 'half')",
                                busySQL(millions: 1000), "INSERT INTO kv VALUES (102, 'half')",
                            ], transaction: true, pool: "main"))))
            #expect(try waitUntil(.seconds(5)) { try first.runningJobs() == 1 }, "the batch never ran")
            usleep(300_000)  // inside the slow statement, after the first two INSERTs
            first.signal(SIGKILL)
            #expect(first.waitForExit(timeout: .seconds(5)) != nil, "poold survived SIGKILL")
            #expect(
                FileManager.default.fileExists(atPath: first.socket), "the killed poold's socket file is left behind (the fault needs it)")
            #expect((try? client.readReply(timeout: .seconds(5))) == nil, "a killed poold answered")

            // The same config, the same directory, no cleanup: it starts.
            let second = try DaemonProcess(directory: first.directory)
            #expect(try second.sql("PRAGMA integrity_check", pool: "main").rows == [[.string("ok")]])
            #expect(
                try second.sql("SELECT count(*) FROM kv WHERE k >= 100", pool: "main").rows == [[.int(0)]],
                "the killed transaction was half-applied")
            #expect(try second.sql("SELECT count(*) FROM kv WHERE k <= 10", pool: "main").rows == [[.int(10)]], "committed rows were lost")
            #expect(try second.request(["op": .string("run"), "job": .string("put"), "params": .array([.int(11), .string("after")])]).ok)
            #expect(try second.request(["op": .string("run"), "job": .string("count")]).rows == [[.int(11)]])
            #expect(try second.sqlite("PRAGMA integrity_check") == "ok")
            second.signal(SIGTERM)
            #expect(second.waitForExit(timeout: .seconds(10)) == 0)
            #expect(!FileManager.default.fileExists(atPath: second.socket))
        }
    }

    @Test func configDeletedOrUnreadableAtReloadKeepsTheOldConfig() throws {
        let daemon = try DaemonProcess()
        let path = daemon.configPath
        let original = try String(contentsOfFile: path, encoding: .utf8)
        #expect(try daemon.sql("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)", pool: "main").ok)

        /// The old config still serves jobs, and status says the last reload failed, naming the file.
        func expectOldConfigServes(_ what: String, because reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(
                try daemon.sql("SELECT 1", pool: "main").rows == [[.int(1)]], "\(what): the pool stopped serving",
                sourceLocation: sourceLocation)
            #expect(
                try daemon.request(["op": .string("run"), "job": .string("count")]).rows == [[.int(0)]], "\(what)",
                sourceLocation: sourceLocation)
            let status = try daemon.request(["op": .string("status")])
            #expect(status["state"] == .string("ready") && status["pools"] == .int(1), "\(what): \(status)", sourceLocation: sourceLocation)
            guard case .object(let last)? = status["last_reload"], case .string(let error)? = last["error"] else {
                Issue.record("\(what): no failed last_reload in \(status)", sourceLocation: sourceLocation)
                return
            }
            #expect(last["ok"] == .bool(false), "\(what): \(last)", sourceLocation: sourceLocation)
            #expect(error.contains(path) && error.contains(reason), "\(what): \(error)", sourceLocation: sourceLocation)
            #expect(try daemon.poolState("main")["max"] == .int(4), "\(what)", sourceLocation: sourceLocation)
        }

        func expectReloadRefused(_ what: String, because reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let reply = try daemon.request(["op": .string("reload")])
            #expect(reply.errorCode == "bad_config", "\(what): \(reply)", sourceLocation: sourceLocation)
            let message = reply.errorMessage ?? ""
            #expect(message.contains(path), "\(what): names the file: \(message)", sourceLocation: sourceLocation)
            #expect(message.contains(reason), "\(what): says why: \(message)", sourceLocation: sourceLocation)
            try expectOldConfigServes(what, because: reason, sourceLocation: sourceLocation)
        }

        func expectReloadWorks(_ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let reply = try daemon.request(["op": .string("reload")])
            #expect(reply.ok, "\(what): \(reply)", sourceLocation: sourceLocation)
            let status = try daemon.request(["op": .string("status")])
            if case .object(let last)? = status["last_reload"] {
                #expect(last["ok"] == .bool(true) && last["error"] == .null, "\(what): \(last)", sourceLocation: sourceLocation)
            } else {
                Issue.record("\(what): no last_reload in \(status)", sourceLocation: sourceLocation)
            }
        }

        func restore() throws {
            try? FileManager.default.removeItem(atPath: path)
            try original.write(toFile: path, atomically: true, encoding: .utf8)
        }

        // Deleted, then `reload`.
        try FileManager.default.removeItem(atPath: path)
        try expectReloadRefused("deleted", because: "no such file")
        try restore()
        try expectReloadWorks("restored")

        // Deleted, then SIGHUP: nobody gets the reply, so status and the log must tell.
        try FileManager.default.removeItem(atPath: path)
        daemon.signal(SIGHUP)
        let failed = try waitUntil(.seconds(10)) {
            guard case .object(let last)? = try daemon.request(["op": .string("status")])["last_reload"] else { return false }
            return last["ok"] == .bool(false)
        }
        #expect(failed, "SIGHUP with the config deleted did not record a failed reload")
        try expectOldConfigServes("deleted, SIGHUP", because: "no such file")
        #expect(daemon.log.contains("reload failed"), "the failed reload is not logged:\n\(daemon.log)")
        try restore()
        daemon.signal(SIGHUP)
        let recovered = try waitUntil(.seconds(10)) {
            guard case .object(let last)? = try daemon.request(["op": .string("status")])["last_reload"] else { return false }
            return last["ok"] == .bool(true)
        }
        #expect(recovered, "SIGHUP with the config back did not reload")

        // Unreadable even for root: a directory where the file was.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try expectReloadRefused("a directory", because: "is a directory")
        // Unreadable even for root: a symlink loop.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: path + ".loop")
        try FileManager.default.createSymbolicLink(atPath: path + ".loop", withDestinationPath: path)
        defer { try? FileManager.default.removeItem(atPath: path + ".loop") }
        try expectReloadRefused("a symlink loop", because: "symbolic links")

        try restore()
        try expectReloadWorks("restored at last")
        #expect(try daemon.sql("SELECT 2", pool: "main").rows == [[.int(2)]])
    }

    @Test func clientVanishingMidReplyLeavesPooldServingWithoutLeaks() throws {
        let daemon = try DaemonProcess()
        // About 5.3 MB of JSON per answer (4 MB of blob, in base64).
        let big = "SELECT randomblob(4000000) AS b"
        let slow = busySQL(millions: 1000)

        /// One client asks for a slow job and eight big answers, reads nothing, and vanishes.
        func vanish(abortive: Bool) throws {
            let cancelledBefore = try Fault.count("cancelled", daemon)
            let succeededBefore = try Fault.count("succeeded", daemon)
            var lines = [JSON.encode(.object(Fault.run(id: 0, pool: "main", sql: slow)))]
            for id in 1...8 { lines.append(JSON.encode(.object(Fault.run(id: Int64(id), pool: "main", sql: big)))) }
            let client = try RawClient(path: daemon.socket)
            #expect(
                client.sendWithoutBlocking(Array(lines.joined(separator: "\n").utf8) + [0x0A]) == lines.joined(separator: "\n").utf8.count
                    + 1)
            // Answers are in flight, far more than the socket holds, when the client goes.
            let answered = try waitUntil(.seconds(20)) { try Fault.count("succeeded", daemon) >= succeededBefore + 4 }
            #expect(answered, "the big answers were never ready")
            client.close(abortive: abortive)
            try expectServing(after: abortive ? "an abortive close" : "a close")
            #expect(
                try waitUntil(.seconds(10)) { try Fault.count("cancelled", daemon) > cancelledBefore },
                "the vanished client's slow job was not cancelled")
        }

        /// poold is alive, answers at once, and nothing of the vanished client is left running.
        func expectServing(after what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(daemon.process.isRunning, "poold died after \(what) (SIGPIPE?):\n\(daemon.log)", sourceLocation: sourceLocation)
            let started = ContinuousClock.now
            #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(5)).ok, sourceLocation: sourceLocation)
            #expect(
                started.duration(to: .now) < .seconds(1), "ping after \(what) took \(started.duration(to: .now))",
                sourceLocation: sourceLocation)
            let idle = try waitUntil(.seconds(15)) {
                let jobs = try daemon.request(["op": .string("jobs")])
                let leased = try daemon.poolState("main")["leased"]
                return jobs["jobs"] == .array([]) && leased == .int(0)
            }
            let left = try daemon.request(["op": .string("jobs")])
            #expect(idle, "the vanished client's jobs still run after \(what): \(left)", sourceLocation: sourceLocation)
        }

        /// One client pipelines thousands of requests until poold stops reading them (its
        /// answers are not read, so max_inflight_per_connection fills up), then vanishes.
        func pipelineAndVanish(abortive: Bool) throws {
            let client = try RawClient(path: daemon.socket)
            var payload: [UInt8] = []
            for id in 0..<5000 {
                payload += Array(
                    (JSON.encode(.object(Fault.run(id: Int64(id), pool: "main", sql: "SELECT randomblob(20000)"))) + "\n").utf8)
            }
            var sent = 0
            var lastProgress = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(5)
            while sent < payload.count && ContinuousClock.now < deadline && lastProgress.duration(to: .now) < .milliseconds(300) {
                let n = client.sendWithoutBlocking(Array(payload[sent...]))
                if n > 0 { lastProgress = .now }
                sent += n
                usleep(10_000)
            }
            #expect(sent > 128 * 80, "poold read only \(sent) bytes")
            let ranBefore = try Fault.count("succeeded", daemon)
            client.close(abortive: abortive)
            let what = "\(sent / 1024) kB of pipelined requests and \(abortive ? "an abortive close" : "a close")"
            try expectServing(after: what)
            // What it had not read yet was never asked of it by anyone still there: at most
            // the requests in flight (128) may still finish.
            let ranAfter = try Fault.count("succeeded", daemon) - ranBefore
            #expect(ranAfter <= 256, "after \(what), poold ran \(ranAfter) more jobs for the vanished client")
        }

        // Warm up with one round of each kind, so that the allocator has grown to its
        // working size before the baseline.
        try vanish(abortive: false)
        try vanish(abortive: true)
        let baseline = try Fault.settledRSS(of: daemon)

        try vanish(abortive: false)
        try vanish(abortive: true)
        try pipelineAndVanish(abortive: false)
        try pipelineAndVanish(abortive: true)
        let after = try Fault.settledRSS(of: daemon)
        // Each round of big answers left 20 MB or more unread: a leak of one round's worth shows.
        #expect(after < baseline + 16 * 1024, "poold's resident memory grew from \(baseline / 1024) MB to \(after / 1024) MB")

        let reply = try daemon.sql("SELECT 42", pool: "main")
        #expect(reply.rows == [[.int(42)]])
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(15)) == 0)
        #expect(daemon.log.contains("0 leaked"), "\(daemon.log)")
    }
}

extension PostgresTests {

    @Test func aResultOverSixteenMebibytesIsRefused() throws {
        let daemon = try PG.daemon(PG.application("result-bound"))
        let refused = try daemon.sql("SELECT repeat('x', 1000000) FROM generate_series(1, 20)")
        #expect(refused.errorCode == "bad_request", "\(refused.errorCode ?? "ok"): \(refused.errorMessage ?? "")")
        #expect(refused.errorMessage?.contains("over 16 MiB") == true, "\(refused.errorMessage ?? "")")
        // The connection is still good, and a result within the bound comes back whole.
        let fits = try daemon.sql("SELECT repeat('x', 1000000) FROM generate_series(1, 10)")
        #expect(fits.rows?.count == 10, "\(fits)")
        let many = try daemon.sql("SELECT generate_series(1, 100001)")
        #expect(
            many.errorCode == "bad_request" && many.errorMessage?.contains("more than 100000 rows") == true,
            "\(many.errorCode ?? "ok"): \(many.errorMessage ?? "")")
        #expect(try daemon.sql("SELECT count(*) FROM generate_series(1, 100001)").rows == [[.int(100_001)]], "the connection is still good")
    }
    /// SIGKILL of the server process running a job's transaction: the postmaster then ends
    /// every backend and runs crash recovery, so this must not overlap other PostgreSQL tests.
    @Test func backendKilledMidTransactionRollsBackAndThePoolRecovers() throws {
        let application = PG.application("killed")
        let daemon = try PG.daemon(application, min: 1, max: 2, grace: "3s")
        // Whatever happens, the shared cluster accepts connections again before the next test.
        defer { _ = waitUntil(.seconds(60)) { (try? PG.psql("SELECT 1")) == "1" } }
        try PG.psql("DROP TABLE IF EXISTS fault_marks; CREATE TABLE fault_marks (n int); GRANT ALL ON fault_marks TO poold")
        #expect(try daemon.sql("INSERT INTO fault_marks VALUES (1)").ok)
        // The test cluster commits asynchronously (synchronous_commit = off), so crash recovery
        // would lose the last commits: make them durable, as they would be in production.
        try PG.psql("CHECKPOINT")

        let client = try daemon.client()
        try client.send(
            line: JSON.encode(
                .object(Fault.batch(id: 1, ["INSERT INTO fault_marks VALUES (2)", "SELECT pg_sleep(5)"], transaction: true, pool: "pg"))))
        var backend: Int32?
        _ = try waitUntil(.seconds(5)) {
            backend = Int32(
                try PG.psql(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = '\(application)' AND state = 'active' AND query LIKE "
                        + "'%pg_sleep%'"
                ))
            return backend != nil
        }
        let pid = try #require(backend, "the transaction never reached pg_sleep")
        #expect(kill(pid, SIGKILL) == 0, "kill(\(pid)): \(String(cString: strerror(errno)))")

        let reply = try #require(try client.readReply(timeout: .seconds(15)))
        #expect(reply.errorCode == "backend", "\(reply)")
        let message = reply.errorMessage ?? ""
        #expect(message.contains("connection"), "says the connection failed: \(message)")
        #expect(message.contains("closed") || message.contains("terminat"), "says how: \(message)")
        #expect(!message.contains("resource broken"), "an internal error's description leaks into the message: \(message)")

        #expect(waitUntil(.seconds(60)) { (try? PG.psql("SELECT 1")) == "1" }, "the cluster did not come back after crash recovery")
        #expect(try PG.psql("SELECT count(*) FROM fault_marks WHERE n = 2") == "0", "the killed transaction was half-applied")
        #expect(try PG.psql("SELECT count(*) FROM fault_marks WHERE n = 1") == "1", "a committed row was lost")

        // The pool recovers by itself (its connections were all ended by the crash).
        let recovered = try waitUntil(.seconds(30)) { try daemon.sql("SELECT 1").ok }
        #expect(recovered, "the pool did not recover: \(String(describing: try? daemon.poolState()))")
        for n in 3...7 {
            let reply = try daemon.sql("INSERT INTO fault_marks VALUES ($1)", [.int(Int64(n))])
            #expect(reply.ok, "job \(n) after recovery: \(reply)")
        }
        #expect(try PG.psql("SELECT count(*) FROM fault_marks") == "6")
        #expect(try daemon.poolState()["state"] == .string("ready"))

        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(15)) == 0)
        #expect(try waitUntil(.seconds(5)) { try PG.connections(application) == 0 }, "poold left connections on the server")
    }
}

// MARK: - Helpers

enum Fault {
    /// A `[[pool]]` table for one SQLite pool named "main" (`@DIR@` is the daemon's directory).
    static func sqlitePool(path: String, extra: String = "") -> String {
        """
        [[pool]]
        name = "main"
        kind = "sqlite"
        path = "\(path)"
        min = 1
        max = 4
        acquire_timeout = "3s"
        job_timeout = "20s"
        allow_adhoc = true
        \(extra)
        """
    }

    /// A `run` request for one statement.
    static func run(id: Int64, pool: String, sql: String) -> JSONObject {
        ["id": .int(id), "op": .string("run"), "pool": .string(pool), "sql": .string(sql)]
    }

    /// A `run` request for a batch.
    static func batch(id: Int64, _ statements: [String], transaction: Bool, pool: String) -> JSONObject {
        [
            "id": .int(id), "op": .string("run"), "pool": .string(pool), "transaction": .bool(transaction),
            "batch": .array(statements.map { .object(["sql": .string($0)]) }),
        ]
    }

    /// Jobs with this outcome so far ("succeeded", "cancelled", …) on every pool, from `stats`.
    static func count(_ outcome: String, _ daemon: DaemonProcess) throws -> Int64 {
        guard case .object(let pools)? = try daemon.request(["op": .string("stats")])["pools"] else { return 0 }
        return pools.reduce(0) { sum, entry in
            if case .object(let pool) = entry.value, case .int(let n)? = pool[outcome] { sum + n } else { sum }
        }
    }

    /// poold's VmRSS (kB) once it has stopped falling (freed memory can take a moment to go back).
    static func settledRSS(of daemon: DaemonProcess) throws -> Int {
        var last = try Memory.rss(of: daemon)
        for _ in 0..<20 {
            usleep(250_000)
            let now = try Memory.rss(of: daemon)
            if now >= last - 256 { return now }
            last = now
        }
        return last
    }

    /// Unmounts `path`, lazily if something still holds it.
    static func unmount(_ path: String) {
        for _ in 0..<20 {
            if (try? Program.run("/usr/bin/umount", [path]))?.status == 0 { return }
            usleep(100_000)
        }
        _ = try? Program.run("/usr/bin/umount", ["-l", path])
    }
}

extension DaemonProcess {
    /// Runs a batch on a pool.
    func batch(_ statements: [String], transaction: Bool, pool: String) throws -> JSONObject {
        try request(Fault.batch(id: 1, statements, transaction: transaction, pool: pool))
    }
}

extension JSONObject {
    var errorDetail: JSONObject? {
        guard case .object(let error)? = self["error"], case .object(let detail)? = error["detail"] else { return nil }
        return detail
    }
}

/// Another process holding an exclusive SQLite transaction on a database (as a backup tool
/// or a migration might) until `release()`, or 30 s at most.
final class LockHolder {
    let process = Process()
    let readyPath: String
    let releasePath: String
    let errorPath: String

    static let script = """
        import os, sqlite3, sys, time
        db, ready, release = sys.argv[1:4]
        con = sqlite3.connect(db, isolation_level=None, timeout=10)
        con.execute("BEGIN EXCLUSIVE")
        con.execute("INSERT INTO kv (k, v) VALUES (1000, 'held by another process')")
        open(ready, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        con.execute("ROLLBACK")
        con.close()
        """

    init(database: String, directory: String) throws {
        readyPath = directory + "/locker.ready"
        releasePath = directory + "/locker.release"
        errorPath = directory + "/locker.err"
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, database, readyPath, releasePath]
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
        guard waitUntil(.seconds(10), { FileManager.default.fileExists(atPath: readyPath) || !process.isRunning }),
            FileManager.default.fileExists(atPath: readyPath)
        else {
            stop()
            throw TestFailure("the lock holder did not lock \(database): \(errors)")
        }
    }

    var errors: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    func release() {
        _ = FileManager.default.createFile(atPath: releasePath, contents: nil)
    }

    func waitForExit(_ limit: Duration) -> Bool {
        waitUntil(limit) { !process.isRunning }
    }

    /// Releases the lock and makes sure the process is gone.
    func stop() {
        release()
        if !waitForExit(.seconds(5)) && process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(.seconds(5))
        }
    }
}

/// A control-socket client that ControlClient cannot be: it never blocks on a send (a client
/// that does not read would otherwise deadlock with poold's back-pressure), and it can close
/// abortively (SO_LINGER 0).
final class RawClient {
    private let fd: Int32
    private var closed = false

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TestFailure("connect \(path): \(reason)")
        }
    }

    deinit { close(abortive: false) }

    /// Sends what the socket takes now; the bytes sent.
    func sendWithoutBlocking(_ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            sent += n
        }
        return sent
    }

    /// What has arrived so far, without waiting (empty if nothing has).
    func received() -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func close(abortive: Bool) {
        guard !closed else { return }
        closed = true
        if abortive {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        Glibc.close(fd)
    }
}
