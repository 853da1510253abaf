import ControlClient
import ControlProtocol
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `kind = "exec"` pools against the real poold and the Python test workers in
/// `Tests/workers`. Serialized: several tests count processes and CPU time, and one makes
/// this test process a child subreaper for a moment.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ExecTests {
    @Test func echoRoundTripsAnyJSON() throws {
        let daemon = try execDaemon("echo")
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let inputs: [JSONValue] = [
            "x", 42, -9_007_199_254_740_993, 2.5, true, nil, [], .object(JSONObject()),
            [
                "outer": ["inner": ["deep": [1, [2, [3, ["four": 4]]]]]],
                "list": [1, 2.5, nil, "héllo ✓ 😀", false, [:]],
                "text": "line\nbreak \"quoted\" \\ tab\t",
            ],
        ]
        for input in inputs {
            let reply = try daemon.runJob(input)
            #expect(reply.ok, "\(input): \(reply)")
            #expect(reply["output"].map { sameJSON($0, input) } == true, "sent \(input), got \(String(describing: reply["output"]))")
        }
        let reply = try daemon.request(["id": .int(9), "op": .string("run"), "pool": .string("workers"), "input": ["a": 1]])
        #expect(reply["id"] == .int(9))
        guard case .int? = reply["job"], case .object(let timing)? = reply["timing"] else {
            Issue.record("a reply without job or timing: \(reply)")
            return
        }
        #expect(timing["exec_us"] != nil && timing["acquire_us"] != nil && timing["queue_us"] != nil, "\(timing)")
        let pool = try daemon.poolState("workers")
        #expect(pool["kind"] == .string("exec"))
        #expect(pool["state"] == .string("ready"))

        // Pipelined jobs on one connection, two workers: every answer comes back, matched by id.
        let client = try daemon.client()
        for id in 1...4 {
            try client.send(
                line: JSON.encode(
                    .object([
                        "id": .int(Int64(id)), "op": .string("run"), "pool": .string("workers"),
                        "input": ["sleep": 0.3, "n": .int(Int64(id))],
                    ])))
        }
        var answered: Set<Int64> = []
        for _ in 1...4 {
            guard let answer = try client.readReply(timeout: .seconds(10)) else { break }
            guard answer.ok, case .int(let id)? = answer["id"], case .object(let output)? = answer["output"] else {
                Issue.record("pipelined job failed: \(answer)")
                continue
            }
            #expect(output["n"] == .int(id), "answer \(id) carries another job's output: \(output)")
            answered.insert(id)
        }
        #expect(answered == [1, 2, 3, 4])
    }

    @Test func timeoutReplacesTheWorker() throws {
        let daemon = try execDaemon("echo", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let before = try daemon.workerPid()
        workers.record(before)
        let started = ContinuousClock.now
        let reply = try daemon.runJob(["sleep": 30], timeoutMs: 1000)
        #expect(reply.errorCode == "timeout", "\(reply)")
        #expect(started.duration(to: .now) < .seconds(3), "the answer came after \(started.duration(to: .now))")
        // The next job works, on a fresh worker.
        let after = try daemon.workerPid()
        #expect(after != before, "the worker that timed out still serves jobs")
        // The stopped worker is gone within kill_grace (500ms) + 1 s of the answer.
        #expect(waitUntil(.milliseconds(1500)) { workers.gone(before) }, "worker \(before) still runs")
    }

    @Test func workerIgnoringSIGTERMIsKilled() throws {
        let daemon = try execDaemon("ignore_term", min: 1, max: 1, killGrace: "500ms")
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        #expect(waitUntil(.seconds(5)) { workers.current("ignore_term.py").count == 1 }, "no worker started")
        guard let pid = workers.current("ignore_term.py").first else { return }
        let started = ContinuousClock.now
        let reply = try daemon.runJob("sleep", timeoutMs: 1000)
        #expect(reply.errorCode == "timeout", "\(reply)")
        #expect(started.duration(to: .now) < .seconds(3), "the answer waited for the worker: \(started.duration(to: .now))")
        let answered = ContinuousClock.now
        #expect(
            waitUntil(.milliseconds(1500)) { workers.gone(pid) },
            "worker \(pid) (ignores SIGTERM) still runs \(answered.duration(to: .now)) after the timeout: SIGKILL never came")
        #expect(
            waitUntil(.seconds(5)) { workers.current("ignore_term.py").contains { $0 != pid } },
            "no fresh worker replaced the killed one")
    }

    @Test func workerExitingMidJobFailsTheJobWithItsStatus() throws {
        let daemon = try execDaemon("crash", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("exit")
        #expect(reply.errorCode == "backend", "\(reply)")
        let message = reply.errorMessage ?? ""
        #expect(message.contains("exited"), "\(message)")
        #expect(message.contains("status 3"), "names the exit status: \(message)")
        #expect(message.contains("about to crash"), "carries the worker's last stderr: \(message)")
        // A fresh worker takes the next job (and crashes the same way, rather than the pool timing out).
        let again = try daemon.runJob("exit")
        #expect(again.errorCode == "backend", "the crashed worker was not replaced: \(again)")
        #expect(again.errorMessage?.contains("status 3") == true, "\(again)")
    }

    @Test func workerKilledMidJobFailsTheJobWithTheSignal() throws {
        let daemon = try execDaemon("crash", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("signal")
        #expect(reply.errorCode == "backend", "\(reply)")
        let message = reply.errorMessage ?? ""
        #expect(message.contains("exited"), "\(message)")
        #expect(message.contains("signal 9") || message.contains("SIGKILL"), "names the signal: \(message)")
        #expect(message.contains("about to crash"), "carries the worker's last stderr: \(message)")
        let again = try daemon.runJob("signal")
        #expect(again.errorCode == "backend", "the killed worker was not replaced: \(again)")
    }

    @Test func answerThatIsNotJSONFailsTheJob() throws {
        let daemon = try execDaemon("garbage", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("x")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("not valid JSON") == true, "\(reply)")
    }

    @Test func answerWithAnotherIdFailsTheJob() throws {
        let daemon = try execDaemon("wrong_id", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("x")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("id") == true, "\(reply)")
    }

    @Test func answerOverMaxOutputFailsTheJob() throws {
        let daemon = try execDaemon("big", min: 1, max: 1, maxOutput: 1_048_576)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let started = ContinuousClock.now
        let reply = try daemon.runJob("x")
        #expect(reply.errorCode == "backend", "\(String(describing: reply.errorCode)) \(reply.errorMessage ?? "")")
        #expect(reply.errorMessage?.contains("max_output") == true, "\(reply.errorMessage ?? "")")
        #expect(reply["output"] == nil)
        #expect(started.duration(to: .now) < .seconds(4), "not a job timeout: \(started.duration(to: .now))")
    }

    @Test func answerWithinMaxOutputPasses() throws {
        let daemon = try execDaemon("big", min: 1, max: 1, maxOutput: 4 * 1_048_576)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("x")
        #expect(reply.ok, "\(String(describing: reply.errorCode)) \(reply.errorMessage ?? "")")
        guard case .string(let output)? = reply["output"] else {
            Issue.record("no string output")
            return
        }
        #expect(output.utf8.count == 2 * 1024 * 1024)
    }

    @Test func errorAnswerFailsTheJobAndKeepsTheWorker() throws {
        let daemon = try execDaemon("error", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let before = try daemon.workerPid()
        let reply = try daemon.runJob("x")
        #expect(reply.errorCode == "backend", "\(reply)")
        #expect(reply.errorMessage?.contains("boom") == true, "\(reply)")
        #expect(try daemon.workerPid() == before, "the worker that answered an error was replaced")
        #expect(try daemon.runJob(["y": 1]).errorMessage?.contains("boom") == true)
        #expect(try daemon.workerPid() == before)
    }

    @Test func workerExitingAtStartDegradesThePoolWithoutSpinning() throws {
        let daemon = try execDaemon("exit_on_start", min: 1, max: 1, acquireTimeout: "1s")
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        #expect(try waitUntil(.seconds(5)) { try daemon.poolState("workers")["state"] == .string("degraded") })
        let pool = try daemon.poolState("workers")
        if case .string(let lastError)? = pool["last_error"] {
            #expect(lastError.contains("exited"), "\(lastError)")
            #expect(lastError.contains("status 1"), "names the exit status: \(lastError)")
        } else {
            Issue.record("no last_error: \(pool)")
        }
        let started = ContinuousClock.now
        let reply = try daemon.runJob("x")
        #expect(reply.errorCode == "backend" || reply.errorCode == "pool_timeout", "\(reply)")
        #expect(started.duration(to: .now) < .seconds(3), "waited \(started.duration(to: .now)) instead of failing fast")

        // poold answers, and does not spin restarting the worker.
        let ping = ContinuousClock.now
        #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(2)).ok)
        #expect(ping.duration(to: .now) < .seconds(1))
        let poold = daemon.process.processIdentifier
        guard let first = Proc.stat(poold)?.ticks else {
            Issue.record("cannot read /proc/\(poold)/stat")
            return
        }
        usleep(1_000_000)
        guard let second = Proc.stat(poold)?.ticks else {
            Issue.record("poold is gone")
            return
        }
        #expect(second - first < 30, "poold used \(second - first) clock ticks of CPU in 1 s with a failing worker")
    }

    @Test func chattyStderrIsLoggedWithinBounds() throws {
        let daemon = try execDaemon("chatty", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let reply = try daemon.runJob("hi")
        #expect(reply.ok, "\(reply)")
        #expect(reply["output"] == .string("hi"))
        #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(2)).ok)
        #expect(waitUntil(.seconds(5)) { daemon.log.lowercased().contains("suppressed") }, "the log does not say that lines were dropped")
        let logged = daemon.log.split(separator: "\n").filter { $0.contains("chatty-stderr-line") }.count
        #expect(logged > 0, "no stderr line of the worker reached the log")
        #expect(logged < 5000, "\(logged) of the worker's 20000 stderr lines were logged")
    }

    @Test func resizePauseResumeAndDrainWorkAsForEveryPool() throws {
        let daemon = try execDaemon("echo", min: 1, max: 1, acquireTimeout: "300ms")
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        #expect(try daemon.request(["op": .string("resize"), "pool": .string("workers"), "min": .int(2), "max": .int(2)]).ok)
        #expect(waitUntil(.seconds(5)) { workers.current("echo.py").count == 2 }, "resize did not start a second worker")
        #expect(try daemon.poolState("workers")["open"] == .int(2))

        #expect(try daemon.request(["op": .string("pause"), "pool": .string("workers")]).ok)
        #expect(try daemon.runJob("paused").errorCode == "pool_timeout", "a paused pool handed out a worker")
        #expect(try daemon.request(["op": .string("resume"), "pool": .string("workers")]).ok)
        #expect(try daemon.runJob("resumed")["output"] == .string("resumed"))

        let drained = try daemon.request(["op": .string("drain"), "pool": .string("workers")])
        #expect(drained.ok, "\(drained)")
        #expect(try daemon.poolState("workers")["open"] == .int(0), "drain left workers open")
        #expect(waitUntil(.seconds(3)) { workers.current("echo.py").isEmpty }, "drained workers still run")
        #expect(try daemon.runJob("after drain").errorCode == "shutting_down")
    }

    @Test func workerIsRecycledAfterMaxJobs() throws {
        let daemon = try execDaemon("echo", min: 1, max: 1, maxJobsPerWorker: 3)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        var pids: [pid_t] = []
        for _ in 1...7 {
            let pid = try daemon.workerPid()
            workers.record(pid)
            pids.append(pid)
        }
        #expect(pids[0] == pids[1] && pids[1] == pids[2], "\(pids)")
        #expect(pids[3] != pids[2], "a worker served more than 3 jobs: \(pids)")
        #expect(pids[3] == pids[4] && pids[4] == pids[5], "\(pids)")
        #expect(pids[6] != pids[5], "\(pids)")
        #expect(Set(pids).count == 3, "\(pids)")
        #expect(waitUntil(.seconds(3)) { workers.gone(pids[0]) && workers.gone(pids[3]) }, "recycled workers still run")
    }

    @Test func workingDirectoryAndEnvironment() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory + "/wd", withIntermediateDirectories: false)
        let expected = URL(fileURLWithPath: directory + "/wd").resolvingSymlinksInPath().path
        do {
            let daemon = try execDaemon(
                "echo",
                pool: """
                    working_directory = "@DIR@/wd"
                    environment = { POOLD_TEST_VAR = "from the pool" }
                    """, min: 1, max: 1, directory: directory)
            let workers = WorkerWatch(daemon)
            defer { workers.expectNoneLeft() }
            let worker = try daemon.workerInfo()
            #expect(worker.cwd == expected)
            #expect(worker.env == .string("from the pool"))
        }
        // Nothing of poold's own environment reaches a worker (under systemd it holds
        // CREDENTIALS_DIRECTORY): only PATH, LANG and HOME, and the pool's `environment`.
        let daemon = try execDaemon(
            "echo", pool: "environment = { POOLD_TEST_OTHER = \"x\" }", min: 1, max: 1,
            environment: ["POOLD_TEST_VAR": "from poold", "CREDENTIALS_DIRECTORY": "/run/credentials/poold.service"])
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        #expect(try daemon.workerInfo().env == .null, "poold's POOLD_TEST_VAR reached the worker")
        let names = try Proc.environment(daemon.workerPid()).keys.sorted()
        #expect(
            Set(names).isSubset(of: ["PATH", "LANG", "HOME", "POOLD_TEST_OTHER"]) && names.contains("PATH")
                && names.contains("POOLD_TEST_OTHER"), "the worker's environment: \(names)")
    }

    @Test func workersHaveTheirOwnProcessGroupAndNoInheritedFds() throws {
        let daemon = try execDaemon("echo", min: 1, max: 1)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        let pid = try daemon.workerPid()
        guard let worker = Proc.stat(pid), let poold = Proc.stat(daemon.process.processIdentifier) else {
            Issue.record("cannot read /proc stat of \(pid) or poold")
            return
        }
        #expect(worker.pgrp != poold.pgrp, "the worker is in poold's process group \(poold.pgrp)")
        #expect(worker.pgrp == pid, "the worker leads its own process group (it is in \(worker.pgrp))")
        let fds = Proc.fds(pid)
        #expect(fds == [0, 1, 2], "the worker has fds \(String(describing: fds)): \(Proc.fdTargets(pid))")
    }

    @Test func sigtermLetsJobsFinishThenStopsEveryWorker() throws {
        let daemon = try execDaemon("echo", grace: "3s", min: 2, max: 2)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        #expect(waitUntil(.seconds(5)) { workers.current("echo.py").count == 2 }, "two workers started")
        let client = try daemon.client()
        for id in 1...2 {
            try client.send(
                line: JSON.encode(
                    .object([
                        "id": .int(Int64(id)), "op": .string("run"), "pool": .string("workers"), "input": ["sleep": 0.5, "pid": true],
                    ])))
        }
        #expect(try waitUntil(.seconds(5)) { try daemon.runningJobs() == 2 }, "both jobs run")
        daemon.signal(SIGTERM)
        for _ in 1...2 {
            let reply = try client.readReply(timeout: .seconds(5))
            #expect(reply?.ok == true, "the running jobs finish within the grace: \(String(describing: reply))")
            if case .object(let output)? = reply?["output"], case .int(let pid)? = output["pid"] { workers.record(pid_t(pid)) }
        }
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0, "poold exits 0")
        // Exiting 0 only after reaping them all: not one worker may still run at exit.
        let running = workers.alive()
        #expect(running.isEmpty, "workers still running when poold exited: \(running)")
        #expect(workers.seenCount >= 2)
    }

    /// How a worker of a killed poold ended, seen from this (subreaper) process.
    enum Ending {
        /// Reaped here with this wait status.
        case reaped(status: Int32)
        /// Dead, but not this process's child to reap.
        case reapedElsewhere
    }

    @Test func sigkillOfPooldKillsEveryWorker() throws {
        let daemon = try execDaemon("echo", min: 2, max: 2)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }

        #expect(waitUntil(.seconds(5)) { workers.current("echo.py").count == 2 }, "two workers started")
        let client = try daemon.client()
        try client.send(
            line: JSON.encode(.object(["id": .int(1), "op": .string("run"), "pool": .string("workers"), "input": ["sleep": 30]])))
        #expect(try waitUntil(.seconds(5)) { try daemon.runningJobs() == 1 }, "one worker is busy")
        let pids = workers.current("echo.py")
        #expect(pids.count == 2)

        // Orphans come to this process, so their exit status can be read.
        try Subreaper.set(true)
        defer { try? Subreaper.set(false) }
        daemon.signal(SIGKILL)
        let killed = ContinuousClock.now
        #expect(daemon.waitForExit(timeout: .seconds(5)) != nil, "poold survived SIGKILL")

        var endings: [pid_t: Ending] = [:]
        while endings.count < pids.count && killed.duration(to: .now) < .seconds(1) {
            for pid in pids where endings[pid] == nil {
                var status: Int32 = 0
                let reaped = waitpid(pid, &status, WNOHANG)
                if reaped == pid {
                    endings[pid] = .reaped(status: status)
                } else if reaped < 0 && errno == ECHILD && workers.gone(pid) {
                    endings[pid] = .reapedElsewhere
                }
            }
            usleep(10_000)
        }
        let survivors = pids.filter { endings[$0] == nil }
        #expect(survivors.isEmpty, "workers still running 1 s after poold was killed: \(survivors.map { workers.describe($0) })")
        for (pid, ending) in endings {
            guard case .reaped(let status) = ending else { continue }
            #expect(WaitStatus.signal(status) == SIGKILL, "worker \(pid) ended with wait status \(status), not by SIGKILL")
        }
        // Clean up whatever survived, and reap it.
        for pid in survivors {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitUntil(.seconds(2)) { waitpid(pid, &status, WNOHANG) != 0 }
        }
    }
}

// MARK: - Helpers

enum Exec {
    /// The repository root: this file is `<repo>/Tests/IntegrationTests/ExecTests.swift`.
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .path

    /// The test worker `<repo>/Tests/workers/NAME.py`.
    static func worker(_ name: String) -> String { "\(repo)/Tests/workers/\(name).py" }
}

/// A poold with one exec pool named "workers" running `Tests/workers/<worker>.py`.
/// `pool` adds keys to the pool's table (`@DIR@` is the daemon's temporary directory).
func execDaemon(
    _ worker: String, pool extra: String = "", grace: String = "3s",
    min: Int = 1, max: Int = 2, maxJobsPerWorker: Int = 1000, killGrace: String = "500ms",
    maxOutput: Int = 1_048_576, jobTimeout: String = "5s", acquireTimeout: String = "3s",
    environment: [String: String] = [:], directory: String? = nil
) throws -> DaemonProcess {
    let script = Exec.worker(worker)
    guard FileManager.default.fileExists(atPath: script) else { throw TestFailure("no test worker at \(script)") }
    return try DaemonProcess(
        grace: grace,
        pools: """
            [[pool]]
            name = "workers"
            kind = "exec"
            command = ["/usr/bin/python3", "\(script)"]
            min = \(min)
            max = \(max)
            max_jobs_per_worker = \(maxJobsPerWorker)
            kill_grace = "\(killGrace)"
            max_output = \(maxOutput)
            job_timeout = "\(jobTimeout)"
            acquire_timeout = "\(acquireTimeout)"
            allow_adhoc = true
            \(extra)
            """, environment: environment, directory: directory)
}

extension DaemonProcess {
    /// Runs one job on the exec pool.
    func runJob(_ input: JSONValue, timeoutMs: Int? = nil, pool: String = "workers") throws -> JSONObject {
        var fields: JSONObject = ["op": .string("run"), "pool": .string(pool), "input": input]
        if let timeoutMs { fields["timeout_ms"] = .int(Int64(timeoutMs)) }
        return try request(fields)
    }

    /// What `echo.py` (or `error.py`) says about the worker that ran the job `{"pid": true}`.
    func workerInfo() throws -> (pid: pid_t, cwd: String?, env: JSONValue?) {
        let reply = try runJob(["pid": true])
        guard reply.ok, case .object(let output)? = reply["output"], case .int(let pid)? = output["pid"] else {
            throw TestFailure("the job {\"pid\": true} failed: \(reply)")
        }
        var cwd: String?
        if case .string(let path)? = output["cwd"] { cwd = path }
        return (pid_t(pid), cwd, output["env"])
    }

    func workerPid() throws -> pid_t { try workerInfo().pid }

    /// Jobs in state `running`, from `jobs`.
    func runningJobs() throws -> Int {
        let reply = try request(["op": .string("jobs")])
        guard case .array(let jobs)? = reply["jobs"] else { return 0 }
        return jobs.filter { if case .object(let job) = $0 { job["state"] == .string("running") } else { false } }.count
    }
}

/// Equality of JSON values where objects compare as sets of keys (JSONObject's own `==` is
/// order-sensitive, and a worker may write keys in another order).
func sameJSON(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { entry in y[entry.key].map { sameJSON(entry.value, $0) } ?? false }
    case (.array(let x), .array(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { sameJSON($0, $1) }
    default:
        return a == b
    }
}

/// One line of /proc/PID/stat, the fields the tests need.
struct ProcStat {
    var pid: pid_t
    var state: Character
    var ppid: pid_t
    var pgrp: pid_t
    /// utime + stime, in clock ticks.
    var ticks: Int
    /// Start time after boot, in clock ticks: with the pid, it names one process even if the pid is reused.
    var start: UInt64
}

/// Reading /proc.
enum Proc {
    /// The whole file (procfs files report size 0, so read until EOF).
    static func contents(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }

    static func stat(_ pid: pid_t) -> ProcStat? {
        // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ")".
        guard let bytes = contents("/proc/\(pid)/stat"), let paren = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = String(decoding: bytes[(paren + 1)...], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        // fields[0] is field 3 of proc(5) (state); utime is field 14, stime 15, starttime 22.
        guard fields.count > 19, let state = fields[0].first, let ppid = pid_t(fields[1]), let pgrp = pid_t(fields[2]),
            let utime = Int(fields[11]), let stime = Int(fields[12]), let start = UInt64(fields[19])
        else { return nil }
        return ProcStat(pid: pid, state: state, ppid: ppid, pgrp: pgrp, ticks: utime + stime, start: start)
    }

    static func all() -> [ProcStat] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }.compactMap { stat($0) }
    }

    /// Every descendant of `root` (children, their children, …).
    static func descendants(of root: pid_t) -> [ProcStat] {
        let processes = all()
        var children: [pid_t: [ProcStat]] = [:]
        for process in processes { children[process.ppid, default: []].append(process) }
        var found: [ProcStat] = []
        var queue = [root]
        while let parent = queue.popLast() {
            for child in children[parent] ?? [] where child.pid != root {
                found.append(child)
                queue.append(child.pid)
            }
        }
        return found
    }

    /// A process's environment (from /proc/PID/environ), by name.
    static func environment(_ pid: pid_t) -> [String: String] {
        guard let bytes = contents("/proc/\(pid)/environ") else { return [:] }
        var out: [String: String] = [:]
        for entry in bytes.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if let eq = text.firstIndex(of: "=") { out[String(text[..<eq])] = String(text[text.index(after: eq)...]) }
        }
        return out
    }

    static func commandLine(_ pid: pid_t) -> String {
        guard let bytes = contents("/proc/\(pid)/cmdline") else { return "?" }
        return String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    /// The open file descriptors of `pid`, sorted.
    static func fds(_ pid: pid_t) -> [Int]? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.compactMap { Int($0) }.sorted()
    }

    /// What each fd of `pid` points to, for messages.
    static func fdTargets(_ pid: pid_t) -> [String] {
        (fds(pid) ?? []).map { fd in
            "\(fd) → " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) ?? "?")
        }
    }
}

/// Every process poold starts (its descendants), sampled every 25 ms while poold runs, so
/// that a test can check at its end that none of them is left.
final class WorkerWatch: @unchecked Sendable {
    let daemon: DaemonProcess
    let root: pid_t
    private let lock = NSLock()
    private var seen: [pid_t: (start: UInt64, command: String)] = [:]
    private let stopping = Flag()
    private let stopped = Flag()

    init(_ daemon: DaemonProcess) {
        self.daemon = daemon
        root = daemon.process.processIdentifier
        sample()
        let thread = Thread { [self] in
            while !stopping.isSet {
                sample()
                usleep(25_000)
            }
            stopped.set()
        }
        thread.start()
    }

    /// Records poold's current descendants; those that still run (not zombies).
    @discardableResult
    func sample() -> [ProcStat] {
        let found = Proc.descendants(of: root).filter { $0.state != "Z" && $0.state != "X" }
        let new = lock.withLock { found.filter { seen[$0.pid]?.start != $0.start } }
        let commands = new.map { ($0, Proc.commandLine($0.pid)) }
        lock.withLock {
            for (process, command) in commands { seen[process.pid] = (process.start, command) }
        }
        return found
    }

    /// Live workers now whose command line contains `command` (all of poold's descendants without it).
    func current(_ command: String? = nil) -> [pid_t] {
        sample().map(\.pid).filter { pid in command.map { Proc.commandLine(pid).contains($0) } ?? true }
    }

    /// Remembers a pid a worker reported about itself.
    func record(_ pid: pid_t) {
        guard let process = Proc.stat(pid) else { return }
        let command = Proc.commandLine(pid)
        lock.withLock {
            if seen[pid] == nil { seen[pid] = (process.start, command) }
        }
    }

    /// Whether the process seen with this pid has ended (gone, or a zombie: dead but not yet reaped).
    func gone(_ pid: pid_t) -> Bool {
        let start = lock.withLock { seen[pid]?.start }
        guard let process = Proc.stat(pid) else { return true }
        if let start, process.start != start { return true }  // the pid was reused
        return process.state == "Z" || process.state == "X"
    }

    var seenCount: Int { lock.withLock { seen.count } }

    /// Every process seen that still runs.
    func alive() -> [String] {
        let pids = lock.withLock { Array(seen.keys) }
        return pids.sorted().filter { !gone($0) }.map { describe($0) }
    }

    func describe(_ pid: pid_t) -> String {
        let command = lock.withLock { seen[pid]?.command } ?? Proc.commandLine(pid)
        return "\(pid) (\(command))"
    }

    /// Stops poold (SIGTERM) if it still runs, then expects every process it started to be gone.
    func expectNoneLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        if daemon.process.isRunning {
            sample()
            daemon.signal(SIGTERM)
            if daemon.waitForExit(timeout: .seconds(15)) == nil {
                Issue.record("poold did not stop within 15 s of SIGTERM", sourceLocation: sourceLocation)
                daemon.signal(SIGKILL)
                _ = daemon.waitForExit(timeout: .seconds(5))
            }
        }
        stopping.set()
        _ = waitUntil(.seconds(2)) { stopped.isSet }
        _ = waitUntil(.seconds(3)) { alive().isEmpty }
        let left = alive()
        #expect(left.isEmpty, "processes poold started are still running after the test: \(left)", sourceLocation: sourceLocation)
        let pids = lock.withLock { Array(seen.keys) }
        for pid in pids where !gone(pid) { kill(pid, SIGKILL) }
    }
}

/// prSetChildSubreaper for this test process. prctl is variadic in C, which Swift does
/// not import, so it is called through a non-variadic C function pointer from dlsym.
enum Subreaper {
    private typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
    private static let prSetChildSubreaper: Int32 = 36

    static func set(_ on: Bool) throws {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "prctl") else {
            throw TestFailure("cannot find prctl")
        }
        let prctl = unsafeBitCast(symbol, to: Prctl.self)
        guard prctl(prSetChildSubreaper, on ? 1 : 0, 0, 0, 0) == 0 else {
            throw TestFailure("prctl(prSetChildSubreaper, \(on ? 1 : 0)) failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// waitpid status decoding (the W* macros are not imported into Swift).
enum WaitStatus {
    /// The signal that ended the process, or nil if it exited (or is stopped).
    static func signal(_ status: Int32) -> Int32? {
        let signal = status & 0x7f
        return signal != 0 && signal != 0x7f ? signal : nil
    }

    /// The exit status, or nil if it did not exit normally.
    static func exitStatus(_ status: Int32) -> Int32? {
        status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }
}
