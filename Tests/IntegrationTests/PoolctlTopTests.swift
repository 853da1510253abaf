import ControlClient
import ControlProtocol
import Foundation
import Testing

/// `poolctl top` against a real poold with two SQLite pools: plain snapshots, JSON lines, and
/// the live view on a pseudo-terminal (Tests/tools/pty_top.py).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PoolctlTopTests {
    static let pools = """
        [[pool]]
        name = "main"
        kind = "sqlite"
        path = "@DIR@/main.db"
        min = 1
        max = 4
        allow_adhoc = true

        [[pool]]
        name = "side"
        kind = "sqlite"
        path = "@DIR@/side.db"
        min = 2
        max = 3
        allow_adhoc = true
        """

    /// A poold with the two pools, after some jobs: successes on both, one failure on main.
    static func daemonWithJobs() throws -> DaemonProcess {
        let daemon = try DaemonProcess(pools: pools)
        for (pool, sql) in [
            ("main", "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)"), ("main", "INSERT INTO kv VALUES (1, 'a')"), ("side", "SELECT 1"),
        ] {
            let reply = try daemon.request(["op": .string("run"), "pool": .string(pool), "sql": .string(sql)])
            #expect(reply.ok, "\(sql): \(reply)")
        }
        let failed = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT * FROM no_such_table")])
        #expect(failed.errorCode == "sql_error")
        // Settled: every pool has its min open and idle, so nothing changes until the next job
        // and top's numbers can be compared with a later `pools` reply.
        for _ in 0..<1000 {
            let settled = try pools(daemon).values.allSatisfy { pool in
                guard case .int(let open)? = pool["open"], case .int(let min)? = pool["min"] else { return false }
                return open >= min && pool["idle"] == pool["open"] && pool["state"] == .string("ready")
            }
            if settled { return daemon }
            usleep(20_000)
        }
        throw TestFailure("the pools did not settle: \(try pools(daemon))")
    }

    /// The `pools` reply's entries by name.
    static func pools(_ daemon: DaemonProcess) throws -> [String: JSONObject] {
        guard case .array(let list)? = try daemon.request(["op": .string("pools")])["pools"] else { throw TestFailure("no pools") }
        var out: [String: JSONObject] = [:]
        for case .object(let pool) in list {
            if case .string(let name)? = pool["name"] { out[name] = pool }
        }
        return out
    }

    /// A JSON value as poolctl prints it in a table cell.
    static func cell(_ value: JSONValue) -> String {
        switch value {
        case .null: "-"
        case .int(let i): String(i)
        case .string(let s): s
        default: JSON.encode(value)
        }
    }

    @Test func onceNotOnATerminalPrintsAPlainSnapshotThatAgreesWithPools() throws {
        let daemon = try Self.daemonWithJobs()
        let top = try CommandLineTests.run("poolctl", ["--socket", daemon.socket, "top", "--once", "--interval", "200ms"])
        #expect(top.status == 0, "\(top.err)")
        #expect(!top.out.contains("\u{1B}"), "no escape sequences when stdout is not a terminal")
        let lines = top.out.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "a title, a header and one row per pool:\n\(top.out)")
        #expect(lines[0].hasPrefix("poold ready · 2 pools · rates and percentiles over the last "))
        let header = lines[1].split(separator: " ", omittingEmptySubsequences: true)
        #expect(header.prefix(6) == ["POOL", "STATE", "OPEN", "IDLE", "LEASED", "WAITING"])
        let expected = try Self.pools(daemon)
        for line in lines.dropFirst(2) {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            let pool = try #require(expected[cells[0]], "a row for an unknown pool: \(line)")
            for (i, key) in ["name", "state", "open", "idle", "leased", "waiting"].enumerated() {
                #expect(cells[i] == pool[key].map(Self.cell), "\(key) of \(cells[0]): \(line)")
            }
            // The six rates, ≥ 0 (nothing ran in the interval): OK/s and FAILED/s after WAITING.
            for rate in cells[6...7] {
                #expect(Double(rate).map { $0 >= 0 } == true, "rate \(rate) in \(line)")
            }
        }
        #expect(Set(lines.dropFirst(2).map { String($0.prefix(4)) }) == ["main", "side"])
    }

    @Test func onceWithJSONHasTheSameNumbersAndRatesOfZeroOrMore() throws {
        let daemon = try Self.daemonWithJobs()
        let top = try CommandLineTests.run("poolctl", ["--socket", daemon.socket, "--json", "top", "--once", "--interval", "200ms"])
        #expect(top.status == 0, "\(top.err)")
        guard case .object(let snapshot) = try JSON.parse(top.out.trimmingCharacters(in: .whitespacesAndNewlines)),
            case .array(let list)? = snapshot["pools"], case .double(let seconds)? = snapshot["interval_s"]
        else {
            Issue.record("not one JSON snapshot: \(top.out)")
            return
        }
        #expect(seconds > 0)
        let expected = try Self.pools(daemon)
        #expect(list.count == 2)
        for case .object(let pool) in list {
            guard case .string(let name)? = pool["name"], let reference = expected[name] else {
                Issue.record("unknown pool in \(pool)")
                continue
            }
            for key in ["kind", "state", "min", "max", "open", "idle", "leased", "waiting", "last_error"] {
                #expect(pool[key] == reference[key], "\(name).\(key)")
            }
            guard case .object(let rates)? = pool["jobs_per_s"], case .object(let jobs)? = pool["jobs"] else {
                Issue.record("no rates for \(name)")
                continue
            }
            for outcome in ["succeeded", "failed", "timed_out", "cancelled", "overloaded"] {
                guard case .double(let rate)? = rates[outcome], case .int(let count)? = jobs[outcome] else {
                    Issue.record("\(name).\(outcome) missing")
                    continue
                }
                #expect(rate >= 0 && count >= 0)
            }
        }
    }

    @Test func aStreamCountsEveryJobOnceInTheIntervalItFinishedIn() throws {
        let daemon = try Self.daemonWithJobs()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl")
        process.arguments = ["--socket", daemon.socket, "--json", "top", "--interval", "200ms"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        var pending = Data()
        /// The next JSON line top printed.
        func next() throws -> JSONObject {
            while true {
                if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending = Data(pending[(newline + 1)...])
                    guard case .object(let object) = try JSON.parse(Array(line)) else { throw TestFailure("not an object") }
                    return object
                }
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty {
                    throw TestFailure("top stopped printing (status \(process.isRunning ? -1 : process.terminationStatus))")
                }
                pending.append(chunk)
            }
        }
        func counts(_ snapshot: JSONObject, _ pool: String) -> [String: Int64]? {
            guard case .array(let list)? = snapshot["pools"] else { return nil }
            for case .object(let p) in list where p["name"] == .string(pool) {
                guard case .object(let jobs)? = p["jobs"] else { return nil }
                var out: [String: Int64] = [:]
                for entry in jobs.entries { if case .int(let n) = entry.value { out[entry.key] = n } }
                return out
            }
            return nil
        }
        let first = try next()
        #expect(first["interval_s"] == .null, "the first snapshot has no interval")
        #expect(counts(first, "main") == nil)

        for i in 0..<3 {
            let reply = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT \(i)")])
            #expect(reply.ok)
        }
        let failed = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELEC 1")])
        #expect(failed.errorCode == "sql_error")

        // Every job finished before this point, so the snapshots from here on account for all of
        // them: sum the intervals until they do (bounded by the suite's time limit).
        var main: [String: Int64] = [:]
        var side: [String: Int64] = [:]
        var sawLatency = false
        while main["succeeded", default: 0] < 3 || main["failed", default: 0] < 1 {
            let snapshot = try next()
            let interval = try #require(counts(snapshot, "main"))
            for (key, n) in interval { main[key, default: 0] += n }
            for (key, n) in counts(snapshot, "side") ?? [:] { side[key, default: 0] += n }
            if interval["succeeded", default: 0] > 0, case .array(let list)? = snapshot["pools"] {
                for case .object(let p) in list where p["name"] == .string("main") {
                    if case .object(let exec)? = p["exec_us"], case .int? = exec["p50"], case .object(let wait)? = p["wait_us"],
                        case .int? = wait["p99"]
                    {
                        sawLatency = true
                    }
                }
            }
        }
        // A couple more intervals: nothing else ran, so nothing more may be counted.
        for _ in 0..<2 {
            let snapshot = try next()
            for (key, n) in try #require(counts(snapshot, "main")) { main[key, default: 0] += n }
        }
        #expect(main == ["succeeded": 3, "failed": 1, "timed_out": 0, "cancelled": 0, "overloaded": 0])
        #expect(side.values.allSatisfy { $0 == 0 }, "side ran nothing: \(side)")
        #expect(sawLatency, "an interval with jobs has wait and exec percentiles")
    }

    @Test func poolctlTopExitsLikeEveryCommandWhenPooldIsAbsentOrLeaves() throws {
        let absent = try CommandLineTests.run("poolctl", ["--socket", "/tmp/poold-no-such.sock", "top", "--once"])
        #expect(absent.status == 3)
        #expect(absent.err.contains("cannot connect to /tmp/poold-no-such.sock: no such file (is poold running? try: make run)"))

        let usage = try CommandLineTests.run("poolctl", ["--socket", "/tmp/poold-no-such.sock", "top", "--interval", "5ms"])
        #expect(usage.status == 2, "a usage error exits 2")
        #expect(usage.err.contains("--interval"))

        // poold stops under a running top: it exits 3, saying so.
        let daemon = try DaemonProcess(grace: "1s", pools: Self.pools)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl")
        process.arguments = ["--socket", daemon.socket, "top", "--interval", "100ms"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        var printed = Data()
        while !String(decoding: printed, as: UTF8.self).contains("side") {
            let chunk = out.fileHandleForReading.availableData
            try #require(!chunk.isEmpty, "top printed nothing")
            printed.append(chunk)
        }
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
        _ = out.fileHandleForReading.readDataToEndOfFile()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 3, "\(message)")
        #expect(message.hasPrefix("poolctl: "), "\(message)")
    }

    // MARK: On a terminal

    /// Runs top on a pseudo-terminal of `columns` and stops it with `stop` (see pty_top.py).
    static func onTerminal(_ daemon: DaemonProcess, stop: String, columns: Int, resizeTo: Int? = nil) throws -> JSONObject {
        let helper = Exec.repo + "/Tests/tools/pty_top.py"
        let poolctl = URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl").path
        let options = [stop, String(columns)] + (resizeTo.map { [String($0)] } ?? [])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [helper] + options + ["--", poolctl, "--socket", daemon.socket, "top", "--interval", "200ms"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let complaint = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            case .object(let result) = try JSON.parse(printed.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            throw TestFailure("pty_top.py failed (\(process.terminationStatus)): \(printed) \(complaint)")
        }
        return result
    }

    @Test(arguments: ["q", "ctrl-c", "sigint", "sigterm"])
    func onATerminalItRedrawsInPlaceAndEveryWayOutRestoresTheTerminal(stop: String) throws {
        let daemon = try Self.daemonWithJobs()
        let result = try Self.onTerminal(daemon, stop: stop, columns: 100)
        #expect(result["drawn"] == .bool(true), "\(result)")
        #expect(result["shows_pools"] == .bool(true))
        #expect(result["entered_screen"] == .bool(true))
        #expect(result["raw_while_running"] == .bool(true), "raw mode while it runs, so that the restore below means something")
        #expect(result["status"] == .int(0), "\(stop) quits with 0: \(result)")
        #expect(result["restored"] == .bool(true), "the terminal mode is the one top found")
        #expect(result["ends_leaving_screen"] == .bool(true), "the last bytes leave the alternate screen: \(result)")
        guard case .int(let longest)? = result["longest_line"] else {
            Issue.record("no longest_line in \(result)")
            return
        }
        #expect(longest <= 100)
    }

    @Test func onATerminalPooldGoingAwayRestoresTheTerminalThenSaysSo() throws {
        let daemon = try DaemonProcess(grace: "1s", pools: Self.pools)
        let result = try Self.onTerminal(daemon, stop: "daemon-gone:\(daemon.process.processIdentifier)", columns: 100)
        #expect(daemon.waitForExit() == 0)
        #expect(result["drawn"] == .bool(true), "\(result)")
        #expect(result["status"] == .int(3), "poold unreachable: \(result)")
        #expect(result["restored"] == .bool(true))
        guard case .string(let after)? = result["after_screen"] else {
            Issue.record("top never left the alternate screen: \(result)")
            return
        }
        #expect(after.hasPrefix("poolctl: "), "the error comes after the screen is left, so that it stays visible: \(after)")
    }

    @Test func aNarrowedTerminalGetsFramesWithinItsNewWidth() throws {
        let daemon = try Self.daemonWithJobs()
        let result = try Self.onTerminal(daemon, stop: "q", columns: 120, resizeTo: 40)
        #expect(result["status"] == .int(0), "\(result)")
        #expect(result["restored"] == .bool(true))
        guard case .int(let longest)? = result["longest_after_resize"] else {
            Issue.record("no frame after the resize: \(result)")
            return
        }
        #expect(longest > 0 && longest <= 40)
        #expect(result["pools_after_resize"] == .int(2), "both pools still shown: \(result)")
    }
}
