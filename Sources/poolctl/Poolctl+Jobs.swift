import ArgumentParser
import ControlProtocol
import PoolCore

// poolctl's commands that act: run and cancel jobs; pause, resume, resize, reload, drain.

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
            printError(
                "job \(reply["job"].map(Format.text) ?? "?"): waited \(Format.duration(micros: wait)), ran \(Format.duration(micros: exec))"
            )
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
        if !connection.json {
            print("pool \(pool): min \(reply["min"].map(Format.text) ?? "?"), max \(reply["max"].map(Format.text) ?? "?")")
        }
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
            print(
                "poold stopped: \(reply["finished"].map(Format.text) ?? "0") jobs finished, \(reply["cancelled"].map(Format.text) ?? "0") "
                    + "cancelled"
            )
        } else {
            print("drained: \(reply["finished"].map(Format.text) ?? "0") jobs finished; resume with poolctl resume")
        }
    }
}
