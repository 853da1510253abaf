#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ControlClient
import ControlProtocol
import PoolCore

/// poolctl: a client of poold's control protocol v1. Exit codes: 0 ok, 1 the job or command
/// failed, 2 usage, 3 daemon unreachable, 4 timed out.
@main
struct Poolctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poolctl",
        abstract: "Control poold: status, jobs, statistics, reload, drain.",
        discussion: "Exit codes: 0 ok, 1 the job or command failed, 2 usage, 3 poold unreachable, 4 timed out.",
        subcommands: [
            Status.self, Pools.self, Jobs.self, Stats.self, Metrics.self, Ping.self, Run.self,
            Cancel.self, Pause.self, Resume.self, Resize.self, Reload.self, Drain.self,
        ]
    )

    @OptionGroup var connection: Connection

    /// As ArgumentParser's, except that a usage error exits 2 (docs/PROTOCOL.md, "Error codes"), not 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

struct Connection: ParsableArguments {
    @Option(name: .long, help: "The control socket (default: $POOLD_SOCKET, then /run/poold/control.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print the raw JSON reply.")
    var json = false

    @Option(name: .long, help: "How long to wait for the answer, e.g. 10s (default: the job's timeout + 5s; no limit otherwise).")
    var wait: String?

    var path: String {
        socket ?? getenv("POOLD_SOCKET").map { String(cString: $0) } ?? "/run/poold/control.sock"
    }

    /// Sends `fields` as one request and returns the reply object; exits on transport
    /// failures and on error replies (after printing them).
    func send(_ fields: JSONObject, defaultWait: Duration? = nil) throws -> JSONObject {
        var request = JSONObject()
        request["id"] = .int(1)
        for entry in fields.entries { request[entry.key] = entry.value }
        let line = Array((JSON.encode(.object(request)) + "\n").utf8)
        var limit = defaultWait
        if let wait {
            guard let parsed = parseLimit(wait) else {
                throw ValidationError("--wait must be a duration like 10s or 500ms (got \"\(wait)\")")
            }
            limit = parsed
        }
        let reply: [UInt8]
        do throws(ControlClient.Failure) {
            let client = try ControlClient(path: path)
            try client.send(line)
            guard let answer = try client.readLine(timeout: limit) else {
                throw ControlClient.Failure.unreachable("poold closed the connection without answering (is it stopping?)")
            }
            reply = answer
        } catch {
            switch error {
            case .unreachable(let message):
                printError("poolctl: \(message)")
                throw ExitCode(3)
            case .noAnswer(let message):
                printError("poolctl: \(message)")
                throw ExitCode(4)
            }
        }
        guard case .object(let object)? = try? JSON.parse(reply) else {
            printError("poolctl: poold sent a reply that is not a JSON object")
            throw ExitCode(1)
        }
        if json { print(String(decoding: reply, as: UTF8.self)) }
        if object["ok"] != .bool(true) {
            var code = "error"
            var message = ""
            if case .object(let error)? = object["error"] {
                if case .string(let c)? = error["code"] { code = c }
                if case .string(let m)? = error["message"] { message = m }
            }
            if !json { printError("poolctl: \(code): \(message)") }
            throw ExitCode(code == "timeout" || code == "pool_timeout" ? 4 : 1)
        }
        return object
    }
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Parses `5s`, `250ms`, `2m`, `1h` (and plain seconds).
func parseLimit(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        if suffix == "s", number.hasSuffix("m") { continue }
        if let value = Double(number), value >= 0 { return .milliseconds(Int64(value * Double(factor))) }
    }
    if let seconds = Double(text), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
    return nil
}

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
            rows.append(["last reload", "\(reload["at"].map(Format.text) ?? "?") \(ok ? "ok" : "failed: \(reload["error"].map(Format.text) ?? "")")"])
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
        if rows.isEmpty { print("no jobs in flight"); return }
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
        print(Format.table(rows, header: ["POOL", "OK", "FAILED", "TIMED OUT", "CANCELLED", "OVERLOADED", "WAIT p50/p99", "EXEC p50/p99", "EXEC MAX"]), terminator: "")
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

// MARK: Jobs

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a job: ad-hoc SQL on a pool, a named job, or an exec pool's input.",
        discussion: """
            poolctl run main "SELECT v FROM kv WHERE k = ?1" 42
            poolctl run --job purge-sessions 7d
            poolctl run workers --input '{"n": 3}'
            Params are read as JSON scalars when they parse as one (42, 1.5, true, null, "text"), else as text.
            """
    )
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Option(name: .customLong("job"), help: "Run the named job from the config.") var jobName: String?
    @Option(help: "JSON input for an exec pool.") var input: String?
    @Option(help: "The job's timeout, e.g. 5s.") var timeout: String?
    @Flag(help: "Run the SQL in one transaction.") var transaction = false
    @Argument(help: "POOL SQL [PARAM...], or with --job: [PARAM...], or with --input: POOL.") var arguments: [String] = []

    func run() throws {
        var request: JSONObject = ["op": .string("run")]
        var rest = arguments
        if let jobName {
            request["job"] = .string(jobName)
        } else {
            guard !rest.isEmpty else { throw ValidationError("name a pool (poolctl run POOL SQL [PARAM...]) or a job (--job NAME)") }
            request["pool"] = .string(rest.removeFirst())
            if let input {
                guard let value = try? JSON.parse(input) else { throw ValidationError("--input must be JSON (got \(input))") }
                request["input"] = value
            } else {
                guard !rest.isEmpty else { throw ValidationError("give the SQL to run: poolctl run POOL SQL [PARAM...]") }
                request["sql"] = .string(rest.removeFirst())
                if transaction { request["transaction"] = .bool(true) }
            }
        }
        if !rest.isEmpty { request["params"] = .array(rest.map(Self.param)) }
        var wait: Duration?
        if let timeout {
            guard let limit = parseLimit(timeout), limit >= .milliseconds(1) else {
                throw ValidationError("--timeout must be a duration like 5s or 250ms (got \"\(timeout)\")")
            }
            request["timeout_ms"] = .int(limit.milliseconds)
            wait = limit + .seconds(5)
        }
        let reply = try connection.send(request, defaultWait: wait)
        guard !connection.json else { return }
        if case .array(let results)? = reply["results"] {
            for (i, result) in results.enumerated() {
                if case .object(let r) = result {
                    print("-- statement \(i)")
                    Self.printResult(r)
                }
            }
        } else if let output = reply["output"] {
            print(JSON.encode(output))
        } else {
            Self.printResult(reply)
        }
        if case .object(let timing)? = reply["timing"], case .int(let exec)? = timing["exec_us"] {
            var wait: Int64 = 0
            if case .int(let q)? = timing["queue_us"] { wait += q }
            if case .int(let a)? = timing["acquire_us"] { wait += a }
            printError("job \(reply["job"].map(Format.text) ?? "?"): waited \(Format.duration(micros: wait)), ran \(Format.duration(micros: exec))")
        }
    }

    static func param(_ text: String) -> JSONValue {
        if let value = try? JSON.parse(text) {
            switch value {
            case .null, .bool, .int, .double, .string: return value
            case .object(let o) where o.keys == ["base64"]: return value
            default: break
            }
        }
        return .string(text)
    }

    static func printResult(_ result: JSONObject) {
        var header: [String] = []
        if case .array(let columns)? = result["columns"] { header = columns.map(Format.text) }
        var rows: [[String]] = []
        if case .array(let values)? = result["rows"] {
            for row in values {
                if case .array(let cells) = row { rows.append(cells.map(Format.text)) }
            }
        }
        if !header.isEmpty { print(Format.table(rows, header: header), terminator: "") }
        var summary = "(\(rows.count) row\(rows.count == 1 ? "" : "s")"
        if case .int(let affected)? = result["affected"] { summary += ", \(affected) affected" }
        print(summary + ")")
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job in flight (its client gets `cancelled`).")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The job id (see poolctl jobs).") var job: Int64

    func run() throws {
        _ = try connection.send(["op": .string("cancel"), "job": .int(job)])
        if !connection.json { print("job \(job) cancelled") }
    }
}

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "New jobs wait; running ones continue.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The pool (default: every pool).") var pool: String?

    func run() throws {
        var request: JSONObject = ["op": .string("pause")]
        if let pool { request["pool"] = .string(pool) }
        _ = try connection.send(request)
        if !connection.json { print("paused \(pool.map { "pool \($0)" } ?? "every pool")") }
    }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Undo pause or drain.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The pool (default: every pool).") var pool: String?

    func run() throws {
        var request: JSONObject = ["op": .string("resume")]
        if let pool { request["pool"] = .string(pool) }
        _ = try connection.send(request)
        if !connection.json { print("resumed \(pool.map { "pool \($0)" } ?? "every pool")") }
    }
}

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change a pool's min and max live.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The pool.") var pool: String
    @Option(help: "New min.") var min: Int?
    @Option(help: "New max.") var max: Int?

    func validate() throws {
        if min == nil && max == nil { throw ValidationError("give --min, --max or both") }
    }

    func run() throws {
        var request: JSONObject = ["op": .string("resize"), "pool": .string(pool)]
        if let min { request["min"] = .int(Int64(min)) }
        if let max { request["max"] = .int(Int64(max)) }
        let reply = try connection.send(request)
        if !connection.json { print("pool \(pool): min \(reply["min"].map(Format.text) ?? "?"), max \(reply["max"].map(Format.text) ?? "?")") }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read the config; on error the old one stays.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let reply = try connection.send(["op": .string("reload")])
        guard !connection.json else { return }
        if case .array(let changes)? = reply["changes"], !changes.isEmpty {
            for change in changes { print(Format.text(change)) }
        } else {
            print("reloaded: no changes")
        }
    }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Refuse new jobs, finish queued and running ones; --stop then exits poold.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The pool (default: every pool).") var pool: String?
    @Flag(help: "Stop poold after draining (like SIGTERM).") var stop = false

    func run() throws {
        var request: JSONObject = ["op": .string("drain")]
        if let pool { request["pool"] = .string(pool) }
        if stop { request["stop"] = .bool(true) }
        let reply = try connection.send(request)
        guard !connection.json else { return }
        if stop {
            print("poold stopped: \(reply["finished"].map(Format.text) ?? "0") jobs finished, \(reply["cancelled"].map(Format.text) ?? "0") cancelled")
        } else {
            print("drained: \(reply["finished"].map(Format.text) ?? "0") jobs finished; resume with poolctl resume")
        }
    }
}
