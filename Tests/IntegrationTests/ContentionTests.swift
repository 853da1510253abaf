import ControlClient
import ControlProtocol
import Foundation
import Synchronization
import Testing

/// The moment a pool exists for: every resource busy (issue 13). Each test holds the only
/// resource of a `max = 1` pool with a long job, SQLite and exec alike, and checks that a job
/// waiting behind it is the pool's: `acquire_timeout`, `jobs`, `max_waiters`, `cancel`, a
/// disconnect, `drain` and SIGTERM all reach it, and its timing tells the truth.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ContentionTests {
    enum Kind: String, CaseIterable, CustomStringConvertible {
        case sqlite, exec
        var description: String { rawValue }
    }

    /// A poold whose pool "busy" has one resource of `kind`; `other` adds pool tables.
    static func daemon(
        _ kind: Kind, maxWaiters: Int = 16, acquireTimeout: String = "5s", grace: String = "3s", other: String = ""
    ) throws -> (DaemonProcess, Ledger) {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let ledger = Ledger(path: directory + "/ledger.jsonl")
        let backend: String
        switch kind {
        case .sqlite:
            backend = """
                kind = "sqlite"
                path = "@DIR@/main.db"
                """
        case .exec:
            backend = """
                kind = "exec"
                command = ["/usr/bin/python3", "\(Exec.worker("ledger"))"]
                kill_grace = "500ms"
                environment = { POOLD_TEST_LEDGER = "\(ledger.path)" }
                """
        }
        let daemon = try DaemonProcess(
            grace: grace,
            pools: """
                [[pool]]
                name = "busy"
                \(backend)
                min = 1
                max = 1
                max_waiters = \(maxWaiters)
                acquire_timeout = "\(acquireTimeout)"
                job_timeout = "20s"
                allow_adhoc = true
                \(other)
                """, directory: directory)
        if kind == .sqlite {
            _ = try daemon.sqlite("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS marks (v TEXT)")
        }
        return (daemon, ledger)
    }

    /// A job that holds the pool's one resource for about `seconds`: SQLite spins until its own
    /// timeout stops it (`timeout`), a worker sleeps (`ok`).
    static func hold(_ kind: Kind, seconds: Double, id: Int64 = 1) -> JSONObject {
        switch kind {
        case .sqlite:
            [
                "id": .int(id), "op": .string("run"), "pool": .string("busy"), "sql": .string(busySQL(millions: 1000)),
                "timeout_ms": .int(Int64(seconds * 1000)),
            ]
        case .exec:
            [
                "id": .int(id), "op": .string("run"), "pool": .string("busy"),
                "input": .object(["sleep": .double(seconds), "mark": .string("hold")]),
            ]
        }
    }

    /// A quick job that leaves `mark` behind if it ever runs.
    static func quick(_ kind: Kind, mark: String, id: Int64 = 2) -> JSONObject {
        switch kind {
        case .sqlite:
            [
                "id": .int(id), "op": .string("run"), "pool": .string("busy"), "sql": .string("INSERT INTO marks (v) VALUES (?1)"),
                "params": .array([.string(mark)]),
            ]
        case .exec:
            ["id": .int(id), "op": .string("run"), "pool": .string("busy"), "input": .object(["mark": .string(mark)])]
        }
    }

    /// Whether a quick job with `mark` ever ran.
    static func ran(_ kind: Kind, _ mark: String, daemon: DaemonProcess, ledger: Ledger) throws -> Bool {
        switch kind {
        case .sqlite: try daemon.sqlite("SELECT count(*) FROM marks WHERE v = '\(mark)'") != "0"
        case .exec: ledger.contains(mark)
        }
    }

    /// Starts the hold on its own connection and returns once `jobs` shows it running.
    static func startHold(_ kind: Kind, seconds: Double, daemon: DaemonProcess) throws -> ControlClient {
        let client = try daemon.client()
        try client.send(line: JSON.encode(.object(hold(kind, seconds: seconds))))
        let running = try waitUntil(.seconds(10)) { try jobStates(daemon).contains("running") }
        guard running else { throw TestFailure("the holding job never ran: \(try daemon.request(["op": .string("jobs")]))") }
        return client
    }

    /// The states `jobs` lists, oldest first.
    static func jobStates(_ daemon: DaemonProcess) throws -> [String] {
        try jobEntries(daemon).compactMap { if case .string(let state)? = $0["state"] { state } else { nil } }
    }

    static func jobEntries(_ daemon: DaemonProcess) throws -> [JSONObject] {
        guard case .array(let list)? = try daemon.request(["op": .string("jobs")])["jobs"] else { return [] }
        return list.compactMap { if case .object(let entry) = $0 { entry } else { nil } }
    }

    /// Waits until `jobs` lists a waiting job besides the hold; its id.
    static func waitingJob(_ daemon: DaemonProcess, count: Int = 1) throws -> [Int64] {
        var waiting: [Int64] = []
        _ = try waitUntil(.seconds(5)) {
            waiting = try jobEntries(daemon).compactMap { entry in
                guard case .string(let state)? = entry["state"], state == "queued" || state == "acquiring",
                    case .int(let id)? = entry["job"]
                else { return nil }
                return id
            }
            return waiting.count >= count
        }
        return waiting
    }

    static func timing(_ reply: JSONObject) -> (queue: Duration, acquire: Duration, exec: Duration)? {
        guard case .object(let timing)? = reply["timing"], case .int(let q)? = timing["queue_us"], case .int(let a)? = timing["acquire_us"],
            case .int(let e)? = timing["exec_us"]
        else { return nil }
        return (.microseconds(q), .microseconds(a), .microseconds(e))
    }

    static func statsMax(_ daemon: DaemonProcess, _ key: String) throws -> Int64 {
        guard case .object(let pools)? = try daemon.request(["op": .string("stats")])["pools"], case .object(let busy)? = pools["busy"],
            case .object(let percentiles)? = busy[key], case .int(let max)? = percentiles["max"]
        else { return -1 }
        return max
    }

    // MARK: acquire_timeout

    @Test(arguments: Kind.allCases)
    func poolTimeoutArrivesWithinAcquireTimeout(kind: Kind) throws {
        let (daemon, _) = try Self.daemon(kind, acquireTimeout: "300ms")
        let holder = try Self.startHold(kind, seconds: 3, daemon: daemon)
        let started = ContinuousClock.now
        let reply = try daemon.request(Self.quick(kind, mark: "late"))
        let waited = started.duration(to: .now)
        #expect(reply.errorCode == "pool_timeout", "\(reply)")
        #expect(waited >= .milliseconds(280) && waited < .milliseconds(500), "pool_timeout after \(waited), acquire_timeout is 300ms")
        #expect(reply.errorMessage?.contains("300ms") == true, "\(reply)")
        #expect(try Self.statsMax(daemon, "acquire_us") >= 280_000, "stats records the wait")
        _ = try holder.readReply(timeout: .seconds(10))
        #expect(try !Self.ran(kind, "late", daemon: daemon, ledger: Ledger(path: daemon.directory + "/ledger.jsonl")))
    }

    // MARK: jobs and timing

    @Test(arguments: Kind.allCases)
    func aWaitingJobIsListedAndItsTimingTellsTheTruth(kind: Kind) throws {
        let (daemon, _) = try Self.daemon(kind)
        let holder = try Self.startHold(kind, seconds: 1.2, daemon: daemon)
        let waiter = try daemon.client()
        let sent = ContinuousClock.now
        try waiter.send(line: JSON.encode(.object(Self.quick(kind, mark: "patient"))))
        let listed = try Self.waitingJob(daemon)
        let jobs = try daemon.request(["op": .string("jobs")])
        #expect(listed.count == 1, "jobs does not show the waiting job: \(jobs)")
        guard let reply = try waiter.readReply(timeout: .seconds(10)) else {
            Issue.record("no answer")
            return
        }
        let waited = sent.duration(to: .now)
        #expect(reply.ok, "\(reply)")
        guard let timing = Self.timing(reply) else {
            Issue.record("no timing in \(reply)")
            return
        }
        let accounted = timing.queue + timing.acquire + timing.exec
        #expect(timing.queue + timing.acquire >= .milliseconds(700), "it waited about a second behind the hold: \(timing)")
        #expect(accounted <= waited, "timing \(timing) exceeds what the client waited, \(waited)")
        #expect(
            waited - accounted < .milliseconds(30), "timing \(timing) leaves \(waited - accounted) of the client's \(waited) unaccounted")
        #expect(try Self.statsMax(daemon, "acquire_us") + Self.statsMax(daemon, "queue_us") >= 700_000, "stats records the wait")
        _ = try holder.readReply(timeout: .seconds(10))
    }

    // MARK: max_waiters

    @Test(arguments: Kind.allCases)
    func pastMaxWaitersIsOverloadedAtOnce(kind: Kind) throws {
        let (daemon, ledger) = try Self.daemon(kind, maxWaiters: 2)
        let holder = try Self.startHold(kind, seconds: 1.5, daemon: daemon)
        let waiters = try (0..<2).map { n in
            let client = try daemon.client()
            try client.send(line: JSON.encode(.object(Self.quick(kind, mark: "waiter-\(n)"))))
            return client
        }
        #expect(try Self.waitingJob(daemon, count: 2).count == 2)
        let started = ContinuousClock.now
        let refused = try daemon.request(Self.quick(kind, mark: "one-too-many"))
        #expect(refused.errorCode == "overloaded", "\(refused)")
        #expect(started.duration(to: .now) < .milliseconds(200), "overloaded took \(started.duration(to: .now))")
        #expect(refused.errorMessage?.contains("max_waiters = 2") == true, "\(refused)")
        for client in waiters {
            #expect(try client.readReply(timeout: .seconds(10))?.ok == true)
        }
        _ = try holder.readReply(timeout: .seconds(10))
        #expect(try Self.ran(kind, "waiter-0", daemon: daemon, ledger: ledger))
        #expect(try !Self.ran(kind, "one-too-many", daemon: daemon, ledger: ledger))
    }

    // MARK: cancel and disconnect

    @Test(arguments: Kind.allCases)
    func cancelAndDisconnectEndAQueuedJobThatNeverRuns(kind: Kind) throws {
        let (daemon, ledger) = try Self.daemon(kind)
        let holder = try Self.startHold(kind, seconds: 1.5, daemon: daemon)
        // cancel
        let cancelled = try daemon.client()
        try cancelled.send(line: JSON.encode(.object(Self.quick(kind, mark: "cancelled"))))
        guard let job = try Self.waitingJob(daemon).first else {
            Issue.record("the waiting job is not listed")
            return
        }
        let started = ContinuousClock.now
        #expect(try daemon.request(["op": .string("cancel"), "job": .int(job)]).ok)
        let answer = try cancelled.readReply(timeout: .seconds(5))
        #expect(answer?.errorCode == "cancelled", "\(String(describing: answer))")
        #expect(started.duration(to: .now) < .milliseconds(300), "the queued job's cancel took \(started.duration(to: .now))")
        // disconnect
        let vanishing = try daemon.client()
        try vanishing.send(line: JSON.encode(.object(Self.quick(kind, mark: "vanished"))))
        #expect(try Self.waitingJob(daemon).count == 1)
        vanishing.close()
        let gone = try waitUntil(.seconds(2)) { try Self.jobStates(daemon) == ["running"] }
        let states = try Self.jobStates(daemon)
        #expect(gone, "the vanished client's job is still listed: \(states)")
        _ = try holder.readReply(timeout: .seconds(10))
        // The pool works, and neither job ever ran.
        #expect(try daemon.request(Self.quick(kind, mark: "after")).ok)
        #expect(try Self.ran(kind, "after", daemon: daemon, ledger: ledger))
        #expect(try !Self.ran(kind, "cancelled", daemon: daemon, ledger: ledger), "the cancelled job ran")
        #expect(try !Self.ran(kind, "vanished", daemon: daemon, ledger: ledger), "the vanished client's job ran")
        #expect(try daemon.poolState("busy")["leased"] == .int(0))
    }

    // MARK: SIGTERM

    @Test(arguments: Kind.allCases)
    func sigtermRefusesQueuedJobsAtOnceAndTheRunningOneKeepsItsGrace(kind: Kind) throws {
        let (daemon, ledger) = try Self.daemon(kind, grace: "2s")
        let holder = try Self.startHold(kind, seconds: 10, daemon: daemon)
        let waiters = try (0..<3).map { n in
            let client = try daemon.client()
            try client.send(line: JSON.encode(.object(Self.quick(kind, mark: "queued-\(n)"))))
            return client
        }
        #expect(try Self.waitingJob(daemon, count: 3).count == 3)
        let signalled = ContinuousClock.now
        daemon.signal(SIGTERM)
        for client in waiters {
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.errorCode == "shutting_down", "\(String(describing: reply))")
        }
        let refused = signalled.duration(to: .now)
        #expect(refused < .milliseconds(300), "queued jobs were refused \(refused) after SIGTERM")
        let held = try holder.readReply(timeout: .seconds(10))
        let answered = signalled.duration(to: .now)
        #expect(held?.errorCode == "cancelled", "\(String(describing: held))")
        #expect(answered >= .milliseconds(1900), "the running job was stopped \(answered) after SIGTERM, within its 2s grace")
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
        #expect(daemon.log.contains(", 0 leaked"), "\(daemon.log.suffix(400))")
        for n in 0..<3 { #expect(try !Self.ran(kind, "queued-\(n)", daemon: daemon, ledger: ledger)) }
    }

    // MARK: drain

    @Test(arguments: Kind.allCases)
    func drainOfEveryPoolRefusesNewJobsAtOnce(kind: Kind) throws {
        let (daemon, _) = try Self.daemon(
            kind,
            other: """

                [[pool]]
                name = "other"
                kind = "sqlite"
                path = "@DIR@/other.db"
                allow_adhoc = true
                """)
        let holder = try Self.startHold(kind, seconds: 1.5, daemon: daemon)
        let drainer = try daemon.client()
        let drained = ContinuousClock.now
        try drainer.send(line: JSON.encode(.object(["id": .int(9), "op": .string("drain")])))
        usleep(50_000)
        // The second pool is idle, the first busy: both refuse at once.
        let other = try daemon.request(["op": .string("run"), "pool": .string("other"), "sql": .string("SELECT 1")], timeout: .seconds(1))
        #expect(other.errorCode == "shutting_down", "pool other still takes jobs during a drain of every pool: \(other)")
        let busy = try daemon.request(Self.quick(kind, mark: "during-drain"), timeout: .seconds(1))
        #expect(busy.errorCode == "shutting_down", "\(busy)")
        let reply = try drainer.readReply(timeout: .seconds(10))
        #expect(reply?.ok == true, "\(String(describing: reply))")
        #expect(drained.duration(to: .now) >= .milliseconds(1000), "drain answered before the busy pool was idle")
        _ = try holder.readReply(timeout: .seconds(5))
        #expect(try daemon.request(["op": .string("resume")]).ok)
        #expect(try daemon.request(["op": .string("run"), "pool": .string("other"), "sql": .string("SELECT 1")]).ok)
    }
}

/// The lines the ledger worker appended, one per job that reached a worker.
struct Ledger: Sendable {
    let path: String

    var lines: [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func contains(_ mark: String) -> Bool {
        lines.contains { $0.contains("\"mark\": \"\(mark)\"") }
    }
}
