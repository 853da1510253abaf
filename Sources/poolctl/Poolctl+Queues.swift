import ArgumentParser
import ControlProtocol
import PoolCore

// poolctl's commands for durable queues: enqueue, job, queues.

struct Enqueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add a job to a durable queue; prints its id.",
        discussion: """
            poolctl enqueue emails alice@example.com "Hello"      (a SQL job's params)
            poolctl enqueue thumbnails --input '{"path": "/srv/a.png"}'
            poolctl enqueue emails --run-at 2026-12-24T09:00:00Z --unique-key greeting-42 bob@example.com "Hi"
            Params are read as JSON scalars when they parse as one (42, 1.5, true, null, "text"), else as text.
            """
    )
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "QUEUE [PARAM...]") var arguments: [String] = []
    @Option(help: "JSON input, for a queue whose jobs go to an exec pool.") var input: String?
    @Option(help: "When the job may run, RFC 3339 (e.g. 2026-12-24T09:00:00Z); default: now.") var runAt: String?
    @Option(help: "Lower runs first (-1000 to 1000; default 0).") var priority: Int?
    @Option(help: "At most one unfinished job with this key per queue: an enqueue answers the existing job's id.")
    var uniqueKey: String?
    @Option(help: "Attempts before the job is discarded (default: the queue's max_attempts).") var maxAttempts: Int?

    func run() throws {
        var rest = arguments
        guard !rest.isEmpty else { throw ValidationError("name the queue: poolctl enqueue QUEUE [PARAM...]") }
        var request: JSONObject = ["op": .string("enqueue"), "queue": .string(rest.removeFirst())]
        if let input {
            guard let value = try? JSON.parse(input) else { throw ValidationError("--input must be JSON (got \(input))") }
            guard rest.isEmpty else { throw ValidationError("give --input or params, not both") }
            request["input"] = value
        } else {
            request["params"] = .array(rest.map(Run.param))
        }
        if let runAt { request["run_at"] = .string(runAt) }
        if let priority { request["priority"] = .int(Int64(priority)) }
        if let uniqueKey { request["unique_key"] = .string(uniqueKey) }
        if let maxAttempts { request["max_attempts"] = .int(Int64(maxAttempts)) }
        let reply = try connection.send(request)
        guard !connection.json else { return }
        print(reply["job_id"].map(Format.text) ?? "?")
    }
}

struct Job: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a durable job (state, attempts, errors, result), or cancel it with --cancel.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }
    @Argument(help: "The job's id, as enqueue printed it.") var id: Int64
    @Flag(help: "Cancel the job: one that has not started never will; a running one is stopped and rolled back.")
    var cancel = false

    func run() throws {
        if cancel {
            let reply = try connection.send(["op": .string("job_cancel"), "job_id": .int(id)])
            guard !connection.json else { return }
            if reply["cancelled"] == .bool(true) {
                print("job \(id) cancelled (it was \(reply["was"].map(Format.text) ?? "?"))")
            } else {
                print("job \(id) was not cancelled: it had already \(reply["was"].map(Format.text) ?? "?")")
            }
            return
        }
        let reply = try connection.send(["op": .string("job_status"), "job_id": .int(id)])
        guard !connection.json else { return }
        func field(_ key: String) -> String { reply[key].map(Format.text) ?? "-" }
        print("job \(id) · queue \(field("queue")) · \(field("state")) · attempt \(field("attempt"))/\(field("max_attempts"))")
        print(
            "run_at \(field("run_at")) · enqueued \(field("inserted_at"))"
                + (reply["finished_at"] != nil ? " · finished \(field("finished_at"))" : ""))
        if case .array(let errors)? = reply["errors"] {
            for case .object(let error) in errors {
                let attempt = error["attempt"].map(Format.text) ?? "?"
                print("  attempt \(attempt) failed at \(error["at"].map(Format.text) ?? "?"): \(error["error"].map(Format.text) ?? "?")")
            }
        }
        if let result = reply["result"] { print("result \(JSON.encode(result))") }
    }
}

struct Queues: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the durable queues: unfinished jobs by state, the oldest waiting job, what finished lately.")
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    func run() throws {
        let reply = try connection.send(["op": .string("queues")])
        guard !connection.json else { return }
        guard case .array(let queues)? = reply["queues"], !queues.isEmpty else {
            print("no durable queues (the config declares no [[queue]])")
            return
        }
        var rows: [[String]] = []
        for case .object(let queue) in queues {
            func count(_ state: String, in key: String = "counts") -> String {
                if case .object(let counts)? = queue[key], let value = counts[state] { return Format.text(value) }
                return "?"
            }
            let oldest: String
            if case .int(let ms)? = queue["oldest_runnable_ms"] { oldest = Format.duration(micros: ms * 1000) } else { oldest = "?" }
            let rate: String
            if case .double(let r)? = queue["completed_per_second"] { rate = String(Int(r.rounded())) } else { rate = "?" }
            rows.append([
                queue["name"].map(Format.text) ?? "?", queue["store"].map(Format.text) ?? "?", count("available"), count("scheduled"),
                count("retryable"), count("running"),
                "\(queue["running_here"].map(Format.text) ?? "?")/\(queue["concurrency"].map(Format.text) ?? "?")",
                count("discarded", in: "finished_last_10s"), count("cancelled", in: "finished_last_10s"), oldest, rate,
                queue["store_reachable"] == .bool(true) ? "" : "store unreachable",
            ])
        }
        print(
            Format.table(
                rows,
                header: [
                    "QUEUE", "STORE", "AVAILABLE", "SCHEDULED", "RETRYABLE", "RUNNING", "HERE", "DISCARDED/10S", "CANCELLED/10S",
                    "OLDEST", "DONE/S", "",
                ]), terminator: "")
    }
}
