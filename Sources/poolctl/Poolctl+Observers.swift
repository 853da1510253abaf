import ArgumentParser
import ControlProtocol
import PoolCore

// poolctl's observer commands: ping, status, pools, jobs, stats, metrics.

// MARK: Observer commands

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that poold answers.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let start = ContinuousClock.now
        _ = try connection.send(["op": .string("ping")])
        if !connection.json { print("pong from \(connection.path) in \(start.duration(to: .now).elapsedDescription)") }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The daemon's state and totals.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let reply = try connection.send(["op": .string("status")])
        guard !connection.json else { return }
        var rows: [[String]] = []
        for key in ["state", "version", "uptime_s", "config", "pools", "busy", "waiting", "succeeded", "failed"] {
            let label = key == "uptime_s" ? "uptime" : key
            var value = reply[key].map(Format.text) ?? "-"
            if key == "uptime_s", case .int(let s)? = reply[key] { value = Format.duration(micros: s * 1_000_000) }
            rows.append([label, value])
        }
        if case .object(let reload)? = reply["last_reload"] {
            let ok = reload["ok"] == .bool(true)
            rows.append([
                "last reload", "\(reload["at"].map(Format.text) ?? "?") \(ok ? "ok" : "failed: \(reload["error"].map(Format.text) ?? "")")",
            ])
        } else {
            rows.append(["last reload", "never"])
        }
        print(Format.table(rows, header: nil), terminator: "")
    }
}

struct Pools: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every pool: state, resources, waiters.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let reply = try connection.send(["op": .string("pools")])
        guard !connection.json, case .array(let pools)? = reply["pools"] else { return }
        let keys = ["name", "kind", "state", "open", "idle", "leased", "waiting", "min", "max", "last_error"]
        let rows = pools.compactMap { pool -> [String]? in
            guard case .object(let p) = pool else { return nil }
            return keys.map { p[$0].map(Format.text) ?? "-" }
        }
        print(Format.table(rows, header: keys.map { $0.uppercased().replacingOccurrences("_", " ") }), terminator: "")
    }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Jobs in flight.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Option(help: "Only this pool's jobs.") var pool: String?

    func run() throws {
        var request: JSONObject = ["op": .string("jobs")]
        if let pool { request["pool"] = .string(pool) }
        let reply = try connection.send(request)
        guard !connection.json, case .array(let jobs)? = reply["jobs"] else { return }
        let rows = jobs.compactMap { job -> [String]? in
            guard case .object(let j) = job else { return nil }
            var peer = "-"
            if case .object(let p)? = j["peer"] { peer = "uid \(p["uid"].map(Format.text) ?? "?") pid \(p["pid"].map(Format.text) ?? "?")" }
            var age = "-"
            if case .int(let ms)? = j["age_ms"] { age = Format.duration(micros: ms * 1000) }
            return [j["job"].map(Format.text) ?? "-", j["pool"].map(Format.text) ?? "-", j["state"].map(Format.text) ?? "-", age, peer]
        }
        if rows.isEmpty {
            print("no jobs in flight")
            return
        }
        print(Format.table(rows, header: ["JOB", "POOL", "STATE", "AGE", "PEER"]), terminator: "")
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Jobs per outcome and latency percentiles, per pool.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Option(help: "Only this pool.") var pool: String?

    func run() throws {
        var request: JSONObject = ["op": .string("stats")]
        if let pool { request["pool"] = .string(pool) }
        let reply = try connection.send(request)
        guard !connection.json, case .object(let pools)? = reply["pools"] else { return }
        var rows: [[String]] = []
        for entry in pools.entries {
            guard case .object(let s) = entry.value else { continue }
            func p(_ key: String, _ which: String) -> String {
                guard case .object(let q)? = s[key], case .int(let us)? = q[which] else { return "-" }
                return Format.duration(micros: us)
            }
            rows.append([
                entry.key,
                s["succeeded"].map(Format.text) ?? "0", s["failed"].map(Format.text) ?? "0",
                s["timed_out"].map(Format.text) ?? "0", s["cancelled"].map(Format.text) ?? "0",
                s["overloaded"].map(Format.text) ?? "0",
                "\(p("acquire_us", "p50")) / \(p("acquire_us", "p99"))",
                "\(p("exec_us", "p50")) / \(p("exec_us", "p99"))",
                p("exec_us", "max"),
            ])
        }
        print(
            Format.table(
                rows, header: ["POOL", "OK", "FAILED", "TIMED OUT", "CANCELLED", "OVERLOADED", "WAIT p50/p99", "EXEC p50/p99", "EXEC MAX"]),
            terminator: "")
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prometheus exposition text.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let reply = try connection.send(["op": .string("metrics")])
        if !connection.json, case .string(let text)? = reply["text"] { print(text, terminator: "") }
    }
}
