import ControlClient
import ControlProtocol
import Foundation
import Testing

/// The real poold, over its socket and with signals (issue 4's end-to-end behaviour).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct DaemonTests {
    @Test func observerOpsAnswer() throws {
        let daemon = try DaemonProcess()
        let ping = try daemon.request(["id": .int(7), "op": .string("ping")])
        #expect(ping.ok)
        #expect(ping["id"] == .int(7))

        let status = try daemon.request(["id": .string("s-1"), "op": .string("status")])
        #expect(status["id"] == .string("s-1"), "ids are echoed with their type")
        #expect(status["state"] == .string("ready"))
        #expect(status["pools"] == .int(1))
        #expect(status["config"] == .string(daemon.configPath))
        #expect(status["last_reload"] == .null)

        let pools = try daemon.request(["op": .string("pools")])
        guard case .array(let list)? = pools["pools"], case .object(let main)? = list.first else {
            Issue.record("pools reply has no pools: \(pools)")
            return
        }
        #expect(main["name"] == .string("main"))
        #expect(main["kind"] == .string("sqlite"))
        #expect(main["state"] == .string("ready"))
        #expect(main["max"] == .int(4))

        let metrics = try daemon.request(["op": .string("metrics")])
        guard case .string(let text)? = metrics["text"] else {
            Issue.record("metrics has no text")
            return
        }
        #expect(text.contains("poold_pool_open{pool=\"main\"}"))
    }

    @Test func sqlJobsRoundTripEveryType() throws {
        let daemon = try DaemonProcess()
        let create = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
        ])
        #expect(create.ok, "\(create)")
        #expect(create["affected"] == .null, "DDL has no affected count")

        let insert = try daemon.request([
            "op": .string("run"), "pool": .string("main"),
            "sql": .string("INSERT INTO kv (k, v) VALUES (?1, ?2), (?3, ?4), (?5, ?6), (?7, ?8), (?9, ?10)"),
            "params": .array([
                .int(1), .int(42), .int(2), .double(1.5), .int(3), .string("text ✓"), .int(4), .null, .int(5),
                .object(["base64": .string("AAEC/w==")]),
            ]),
        ])
        #expect(insert.ok, "\(insert)")
        #expect(insert["affected"] == .int(5))

        let select = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT k, v FROM kv ORDER BY k")])
        #expect(select["columns"] == .array([.string("k"), .string("v")]))
        #expect(
            select.rows == [
                [.int(1), .int(42)], [.int(2), .double(1.5)], [.int(3), .string("text ✓")], [.int(4), .null],
                [.int(5), .object(["base64": .string("AAEC/w==")])],
            ])
        guard case .object(let timing)? = select["timing"] else {
            Issue.record("no timing")
            return
        }
        #expect(timing["exec_us"] != nil && timing["acquire_us"] != nil && timing["queue_us"] != nil)

        let bool = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "sql": .string("SELECT ?1, ?2"), "params": .array([.bool(true), .bool(false)]),
        ])
        #expect(bool.rows == [[.int(1), .int(0)]], "bools bind as 1/0 on SQLite")
    }

    @Test func namedJobsBatchesAndTransactions() throws {
        let daemon = try DaemonProcess()
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)
        let put = try daemon.request(["op": .string("run"), "job": .string("put"), "params": .array([.int(1), .string("one")])])
        #expect(put.ok, "\(put)")
        let count = try daemon.request(["op": .string("run"), "job": .string("count")])
        #expect(count.rows == [[.int(1)]])

        let duplicate = try daemon.request(["op": .string("run"), "job": .string("put"), "params": .array([.int(1), .string("again")])])
        #expect(duplicate.errorCode == "sql_error")
        guard case .object(let error)? = duplicate["error"], case .object(let detail)? = error["detail"] else {
            Issue.record("sql_error without detail: \(duplicate)")
            return
        }
        #expect(detail["sqlite_code"] == .int(19))
        #expect(detail["sqlite_name"] == .string("SQLITE_CONSTRAINT"))

        // A failing batch in a transaction leaves nothing behind.
        let batch = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "transaction": .bool(true),
            "batch": .array([
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (2, 'two')")]),
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (1, 'clash')")]),
            ]),
        ])
        #expect(batch.errorCode == "sql_error")
        if case .object(let error)? = batch["error"], case .object(let detail)? = error["detail"] {
            #expect(detail["index"] == .int(1))
        }
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "1", "the transaction was rolled back")

        // Without a transaction a batch stops at the first failure; earlier statements stay.
        let partial = try daemon.request([
            "op": .string("run"), "pool": .string("main"),
            "batch": .array([
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (3, 'three')")]),
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (1, 'clash')")]),
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (4, 'four')")]),
            ]),
        ])
        #expect(partial.errorCode == "sql_error")
        #expect(try daemon.sqlite("SELECT group_concat(k) FROM (SELECT k FROM kv ORDER BY k)") == "1,3")

        let two = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1; SELECT 2")])
        #expect(two.errorCode == "bad_request")
        let params = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT ?1"), "params": .array([])])
        #expect(params.errorCode == "bad_request")
        let noJob = try daemon.request(["op": .string("run"), "job": .string("nope")])
        #expect(noJob.errorCode == "no_such_job")
        let noPool = try daemon.request(["op": .string("run"), "pool": .string("nope"), "sql": .string("SELECT 1")])
        #expect(noPool.errorCode == "no_such_pool")
    }

    @Test func timeoutStopsTheStatementAndRollsBack() throws {
        let daemon = try DaemonProcess()
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)
        let start = ContinuousClock.now
        let slow = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "transaction": .bool(true), "timeout_ms": .int(300),
            "batch": .array([
                .object(["sql": .string("INSERT INTO kv (k, v) VALUES (1, 'x')")]),
                .object(["sql": .string(busySQL(millions: 1000))]),
            ]),
        ])
        #expect(slow.errorCode == "timeout")
        #expect(slow.errorMessage?.contains("exceeded 300ms") == true)
        #expect(start.duration(to: .now) < .seconds(5), "the statement was interrupted, not run to the end")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "0")
        let after = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")])
        #expect(after.ok, "the connection went back to the pool in working order")
        let tooLong = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1"), "timeout_ms": .int(10_000_000),
        ])
        #expect(tooLong.errorCode == "bad_request")
    }

    @Test func pipelinesAThousandRequestsOnOneConnection() throws {
        let daemon = try DaemonProcess()
        let client = try daemon.client()
        var payload: [UInt8] = []
        for i in 0..<1000 {
            let request =
                i % 2 == 0
                ? #"{"id":\#(i),"op":"ping"}"#
                : #"{"id":\#(i),"op":"run","pool":"main","sql":"SELECT ?1","params":[\#(i)]}"#
            payload += Array((request + "\n").utf8)
        }
        try client.send(payload)
        var seen = Set<Int64>()
        for _ in 0..<1000 {
            guard let reply = try client.readReply(timeout: .seconds(30)), case .int(let id)? = reply["id"] else {
                Issue.record("missing reply")
                return
            }
            #expect(reply.ok, "\(reply)")
            if id % 2 == 1 { #expect(reply.rows == [[.int(id)]]) }
            seen.insert(id)
        }
        #expect(seen.count == 1000, "every request answered exactly once, matched by id")
    }

    @Test func badInputGetsClearErrorsAndTheConnectionStaysUsable() throws {
        let daemon = try DaemonProcess()
        let client = try daemon.client()
        let cases: [(String, String)] = [
            ("{not json", "bad_request"),
            ("[1,2,3]", "bad_request"),
            (#"{"id":1}"#, "bad_request"),
            (#"{"id":2,"op":"fly"}"#, "unknown_op"),
            (#"{"id":3,"op":"run","pool":"main","sql":"SELECT 1","timout_ms":5}"#, "bad_request"),
            (#"{"id":4,"op":"run","pool":"main","sql":7}"#, "bad_request"),
            (#"{"id":1.5,"op":"ping"}"#, "bad_request"),
            (#"{"id":5,"op":"jobs","pool":"nope"}"#, "no_such_pool"),
            (#"{"id":6,"op":"cancel","job":999999}"#, "no_such_job"),
        ]
        for (line, code) in cases {
            try client.send(line: line)
            let reply = try #require(try client.readReply(timeout: .seconds(10)))
            #expect(reply.errorCode == code, "\(line) → \(reply)")
        }
        try client.send([0xFF, 0xFE, 0x00, 0x41, 0x0A])
        #expect(try client.readReply(timeout: .seconds(10))?.errorCode == "bad_request", "binary garbage")
        // A request split across many writes, with \r\n and blank lines around it.
        for byte in Array("\n  \n{\"id\":9,\"op\":\"ping\"}\r\n".utf8) { try client.send([byte]) }
        let split = try #require(try client.readReply(timeout: .seconds(10)))
        #expect(split["id"] == .int(9) && split.ok)

        // Half-close still gets every answer; a last line without "\n" is processed.
        let half = try daemon.client()
        try half.send(Array(#"{"id":1,"op":"run","pool":"main","sql":"SELECT 5"}"#.utf8) + [0x0A] + Array(#"{"id":2,"op":"ping"}"#.utf8))
        half.shutdownWrite()
        let first = try #require(try half.readReply(timeout: .seconds(10)))
        let second = try #require(try half.readReply(timeout: .seconds(10)))
        #expect(Set([first["id"], second["id"]].compactMap { $0 }) == [.int(1), .int(2)])

        // A line over 1 MiB: one too_large, then the connection closes.
        let big = try daemon.client()
        try big.send(Array(repeating: UInt8(ascii: "a"), count: (1 << 20) + 10) + [0x0A])
        let tooLarge = try #require(try big.readReply(timeout: .seconds(10)))
        #expect(tooLarge.errorCode == "too_large")
        #expect(tooLarge["id"] == .null)
        #expect(try big.readLine(timeout: .seconds(10)) == nil, "the connection is closed after too_large")

        // Thousands of connections opening and closing; the daemon keeps answering.
        for _ in 0..<2000 {
            let c = try daemon.client()
            c.close()
        }
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test func reloadAppliesGoodConfigAndKeepsTheOldOneOnError() throws {
        let daemon = try DaemonProcess()
        var config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        config += """

            [[pool]]
            name = "extra"
            path = "\(daemon.directory)/extra.db"
            min = 0
            max = 2
            """
        config = config.replacingOccurrences(of: "max = 4", with: "max = 6")
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.request(["op": .string("reload")])
        #expect(reload.ok, "\(reload)")
        guard case .array(let changes)? = reload["changes"] else {
            Issue.record("reload without changes")
            return
        }
        #expect(changes.contains(.string("pool extra added")))
        #expect(changes.contains(.string("pool main resized to 1..6")))
        #expect(
            try daemon.request(["op": .string("run"), "pool": .string("extra"), "sql": .string("SELECT 1")]).errorCode == "unauthorized",
            "allow_adhoc defaults to false")

        try "[[pool]]\nname = \"main\"\nmax_waiters = \"lots\"\n".write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let bad = try daemon.request(["op": .string("reload")])
        #expect(bad.errorCode == "bad_config")
        #expect(bad.errorMessage?.contains("poold.toml:") == true)
        let status = try daemon.request(["op": .string("status")])
        #expect(status["pools"] == .int(2), "the old config stays")
        if case .object(let last)? = status["last_reload"] {
            #expect(last["ok"] == .bool(false))
        } else {
            Issue.record("no last_reload")
        }

        // SIGHUP reloads too.
        try config.replacingOccurrences(of: "max = 6", with: "max = 5").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        var max: JSONValue?
        for _ in 0..<200 {
            let pools = try daemon.request(["op": .string("pools")])
            if case .array(let list)? = pools["pools"], case .object(let main)? = list.first { max = main["max"] }
            if max == .int(5) { break }
            usleep(20_000)
        }
        #expect(max == .int(5))
    }

    @Test func reloadRemovingAPoolLetsItsRunningJobsFinish() throws {
        let daemon = try DaemonProcess()
        let base = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let withExtra =
            base + """

                [[pool]]
                name = "extra"
                path = "\(daemon.directory)/extra.db"
                min = 0
                max = 1
                allow_adhoc = true
                """
        try withExtra.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.request(["op": .string("reload")]).ok)
        let running = try daemon.client()
        try running.send(line: #"{"id":1,"op":"run","pool":"extra","sql":"\#(busySQL(millions: 1))"}"#)
        var started = false
        for _ in 0..<200 where !started {
            if case .array(let jobs)? = try daemon.request(["op": .string("jobs"), "pool": .string("extra")])["jobs"], !jobs.isEmpty {
                started = true
            }
            usleep(5_000)
        }
        #expect(started)
        try base.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.request(["op": .string("reload")])
        #expect(reload["changes"] == .array([.string("pool extra removed (draining)")]), "\(reload)")
        #expect(
            try daemon.request(["op": .string("run"), "pool": .string("extra"), "sql": .string("SELECT 1")]).errorCode == "no_such_pool")
        let finished = try #require(try running.readReply(timeout: .seconds(10)))
        #expect(finished.ok, "a job running on a removed pool is not disturbed: \(finished)")
        #expect(finished.rows == [[.int(1_000_000)]])
    }

    @Test func sigtermLetsJobsFinishWithinTheGraceAndCancelsTheRest() throws {
        // The grace leaves the quick job (about 0.4 s here) room on a busy machine.
        let daemon = try DaemonProcess(grace: "3s")
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)
        let quick = try daemon.client()
        let slow = try daemon.client()
        try quick.send(line: #"{"id":1,"op":"run","pool":"main","sql":"\#(busySQL(millions: 1))"}"#)
        try slow.send(
            line:
                #"{"id":2,"op":"run","pool":"main","transaction":true,"batch":[{"sql":"INSERT INTO kv VALUES (1, 'x')"},"#
                + #"{"sql":"\#(busySQL(millions: 1000))"}]}"#
        )
        usleep(100_000)
        let start = ContinuousClock.now
        daemon.signal(SIGTERM)
        let quickReply = try #require(try quick.readReply(timeout: .seconds(10)))
        let slowReply = try #require(try slow.readReply(timeout: .seconds(10)))
        let status = daemon.waitForExit(timeout: .seconds(10))
        let elapsed = start.duration(to: .now)
        #expect(quickReply.ok, "a job that ends within the grace succeeds: \(quickReply)")
        #expect(slowReply.errorCode == "cancelled", "\(slowReply)")
        #expect(status == 0)
        #expect(elapsed < .milliseconds(4500), "grace + 1.5s; took \(elapsed)")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket file is gone")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "0", "no half-applied transaction")
        #expect(daemon.log.contains("stopped after"))
        #expect(daemon.log.contains("0 leaked"))
    }

    @Test func secondSigtermSkipsTheGrace() throws {
        let daemon = try DaemonProcess(grace: "30s")
        let slow = try daemon.client()
        try slow.send(line: #"{"id":1,"op":"run","pool":"main","sql":"\#(busySQL(millions: 1000))"}"#)
        usleep(100_000)
        let start = ContinuousClock.now
        daemon.signal(SIGTERM)
        usleep(200_000)
        daemon.signal(SIGTERM)
        let reply = try #require(try slow.readReply(timeout: .seconds(10)))
        #expect(reply.errorCode == "cancelled")
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
        #expect(start.duration(to: .now) < .seconds(5), "the 30s grace was skipped")
    }

    @Test func newJobsDuringShutdownGetShuttingDownWhileObserversStillAnswer() throws {
        let daemon = try DaemonProcess(grace: "2s")
        let slow = try daemon.client()
        let other = try daemon.client()
        try slow.send(line: #"{"id":1,"op":"run","pool":"main","sql":"\#(busySQL(millions: 1000))"}"#)
        usleep(100_000)
        daemon.signal(SIGTERM)
        usleep(100_000)
        let status = try other.request(["op": .string("status")], timeout: .seconds(5))
        #expect(status["state"] == .string("stopping"))
        let refused = try other.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")], timeout: .seconds(5))
        #expect(refused.errorCode == "shutting_down")
        #expect(try slow.readReply(timeout: .seconds(10))?.errorCode == "cancelled")
        #expect(daemon.waitForExit() == 0)
    }

    @Test func disconnectMidTransactionRollsBack() throws {
        let daemon = try DaemonProcess()
        #expect(
            try daemon.request([
                "op": .string("run"), "pool": .string("main"), "sql": .string("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)"),
            ]).ok)
        let client = try daemon.client()
        try client.send(
            line:
                #"{"id":1,"op":"run","pool":"main","transaction":true,"batch":[{"sql":"INSERT INTO kv VALUES (1, 'x')"},"#
                + #"{"sql":"\#(busySQL(millions: 1000))"}]}"#
        )
        var running = false
        for _ in 0..<200 where !running {
            if case .array(let jobs)? = try daemon.request(["op": .string("jobs")])["jobs"], !jobs.isEmpty { running = true }
            usleep(10_000)
        }
        #expect(running)
        client.close()
        var gone = false
        for _ in 0..<500 where !gone {
            if case .array(let jobs)? = try daemon.request(["op": .string("jobs")])["jobs"], jobs.isEmpty { gone = true }
            usleep(10_000)
        }
        #expect(gone, "the disconnected client's job was cancelled")
        #expect(try daemon.sqlite("SELECT count(*) FROM kv") == "0")
        let stats = try daemon.request(["op": .string("stats")])
        if case .object(let pools)? = stats["pools"], case .object(let main)? = pools["main"] {
            #expect(main["cancelled"] == .int(1))
        } else {
            Issue.record("no stats for main: \(stats)")
        }
    }

    @Test func cancelPauseResumeResizeAndDrain() throws {
        let daemon = try DaemonProcess()
        let slow = try daemon.client()
        try slow.send(line: #"{"id":1,"op":"run","pool":"main","sql":"\#(busySQL(millions: 1000))"}"#)
        var job: Int64?
        for _ in 0..<200 where job == nil {
            if case .array(let jobs)? = try daemon.request(["op": .string("jobs")])["jobs"], case .object(let first)? = jobs.first,
                case .int(let id)? = first["job"]
            {
                job = id
            }
            usleep(10_000)
        }
        let id = try #require(job)
        #expect(try daemon.request(["op": .string("cancel"), "job": .int(id)]).ok)
        let cancelled = try #require(try slow.readReply(timeout: .seconds(10)))
        #expect(cancelled.errorCode == "cancelled")
        #expect(cancelled["job"] == .int(id))

        #expect(try daemon.request(["op": .string("pause"), "pool": .string("main")]).ok)
        let paused = try daemon.request(["op": .string("pools")])
        if case .array(let list)? = paused["pools"], case .object(let main)? = list.first {
            #expect(main["state"] == .string("paused"))
        }
        let waiting = try daemon.client()
        try waiting.send(line: #"{"id":2,"op":"run","pool":"main","sql":"SELECT 2"}"#)
        usleep(100_000)
        #expect(try daemon.request(["op": .string("resume")]).ok)
        #expect(try waiting.readReply(timeout: .seconds(10))?.rows == [[.int(2)]])

        let resized = try daemon.request(["op": .string("resize"), "pool": .string("main"), "min": .int(0), "max": .int(2)])
        #expect(resized["max"] == .int(2) && resized["min"] == .int(0))
        #expect(
            try daemon.request(["op": .string("resize"), "pool": .string("main"), "min": .int(3), "max": .int(2)]).errorCode
                == "bad_request")

        let drained = try daemon.request(["op": .string("drain"), "pool": .string("main")])
        #expect(drained.ok)
        #expect(
            try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")]).errorCode == "shutting_down")
        #expect(try daemon.request(["op": .string("resume"), "pool": .string("main")]).ok)
        #expect(try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")]).ok)

        let stop = try daemon.request(["op": .string("drain"), "stop": .bool(true)])
        #expect(stop.ok)
        #expect(daemon.waitForExit() == 0)
    }
}
