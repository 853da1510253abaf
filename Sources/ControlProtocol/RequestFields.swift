import PoolCore

// The request's fields once it is known to be an object with an id: the fields each op takes, and reading them.

// MARK: - Fields

/// The fields each op accepts besides `id` and `op`.
enum FieldSets {
    static let none: [String] = []
    static let pool = ["pool"]
    static let run = ["pool", "sql", "params", "batch", "transaction", "timeout_ms", "input", "job"]
    static let cancel = ["job"]
    static let resize = ["pool", "min", "max"]
    static let drain = ["pool", "stop"]
    static let batchEntry = ["sql", "params"]
    static let durableJob = ["queue", "params", "input", "run_at", "priority", "unique_key", "max_attempts"]
    static let enqueue = durableJob + ["jobs"]
    static let durableJobID = ["job_id"]

    static func allowed(for op: Op) -> [String] {
        switch op {
        case .ping, .status, .pools, .metrics, .reload: none
        case .jobs, .stats, .pause, .resume: pool
        case .run: run
        case .cancel: cancel
        case .resize: resize
        case .drain: drain
        case .enqueue: enqueue
        case .jobStatus, .jobCancel: durableJobID
        case .queues: none
        }
    }
}

/// Reads one request object whose id is known; every error carries that id.
struct RequestFields {
    let object: JSONObject
    let id: RequestID?
    private(set) var op: Op = .ping
    /// The op once it has been read; nil while it is missing or unknown.
    private(set) var knownOp: Op?

    init(object: JSONObject, id: RequestID?) {
        self.object = object
        self.id = id
    }

    static let opList = Op.allCases.map(\.rawValue).joined(separator: ", ")

    func badRequest(_ message: String) -> RequestError {
        RequestError(id: id, code: .badRequest, message: message)
    }

    mutating func command() throws(RequestError) -> Command {
        guard let opValue = object["op"] else {
            throw badRequest("missing \"op\": a request needs \"op\", one of \(Self.opList)")
        }
        guard case .string(let name) = opValue else {
            throw badRequest("\"op\" must be a string, one of \(Self.opList) (got \(opValue.shortDescription))")
        }
        guard let op = Op(rawValue: name) else {
            let shown = JSONValue.string(name).shortDescription
            let hint = Suggestion.closest(to: name, among: Op.allCases.map(\.rawValue)).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw RequestError(id: id, code: .unknownOp, message: "unknown op \(shown)\(hint); valid ops: \(Self.opList)")
        }
        self.op = op
        self.knownOp = op
        try refuseUnknownFields(FieldSets.allowed(for: op))

        switch op {
        case .ping: return .ping
        case .status: return .status
        case .pools: return .pools
        case .metrics: return .metrics
        case .reload: return .reload
        case .jobs: return .jobs(pool: try optionalPool())
        case .stats: return .stats(pool: try optionalPool())
        case .pause: return .pause(pool: try optionalPool())
        case .resume: return .resume(pool: try optionalPool())
        case .cancel:
            guard let value = object["job"] else {
                throw badRequest("cancel needs \"job\": the id of the job to cancel")
            }
            guard case .int(let job) = value else {
                throw badRequest("\"job\" must be an integer job id (got \(value.shortDescription))")
            }
            return .cancel(job: job)
        case .resize:
            guard let pool = try optionalPool() else {
                throw badRequest("resize needs \"pool\": the name of the pool to resize")
            }
            let min = try optionalCount("min")
            let max = try optionalCount("max")
            if min == nil && max == nil {
                throw badRequest("resize needs \"min\", \"max\" or both")
            }
            if let min, let max, min > max {
                throw badRequest("\"min\" (\(min)) must not exceed \"max\" (\(max))")
            }
            return .resize(pool: pool, min: min, max: max)
        case .drain:
            return .drain(pool: try optionalPool(), stop: try optionalBool("stop") ?? false)
        case .run:
            return try run()
        case .enqueue:
            return try enqueue()
        case .jobStatus:
            return .jobStatus(jobID: try durableJobID())
        case .jobCancel:
            return .jobCancel(jobID: try durableJobID())
        case .queues:
            return .queues
        }
    }

    // MARK: Durable queues

    private func enqueue() throws(RequestError) -> Command {
        let queue = try optionalString("queue", what: "a queue's name")
        guard let batch = object["jobs"] else {
            guard let queue else { throw badRequest("enqueue needs \"queue\": the name of the queue (or \"jobs\", a batch)") }
            return .enqueue(jobs: [try durableJob(object, queue: queue, path: "")], isBatch: false)
        }
        for key in FieldSets.durableJob where key != "queue" && object[key] != nil {
            throw badRequest("\"\(key)\" is not allowed beside \"jobs\": give each entry its own (\"queue\" alone may be shared)")
        }
        guard case .array(let entries) = batch, !entries.isEmpty else {
            throw badRequest("\"jobs\" must be a non-empty array of job objects (got \(batch.shortDescription))")
        }
        guard entries.count <= DurableJobRequest.maxBatch else {
            throw RequestError(
                id: id, code: .tooLarge,
                message: "\"jobs\" holds \(entries.count) jobs; at most \(DurableJobRequest.maxBatch) go in one enqueue: split the batch")
        }
        var jobs: [DurableJobRequest] = []
        jobs.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            let path = "jobs[\(index)]."
            guard case .object(let fields) = entry else {
                throw badRequest("jobs[\(index)] must be an object with the job's fields (got \(entry.shortDescription))")
            }
            for key in fields.keys where !FieldSets.durableJob.contains(key) {
                let hint = Suggestion.closest(to: key, among: FieldSets.durableJob).map { " (did you mean \"\($0)\"?)" } ?? ""
                throw badRequest("unknown field \(JSONValue.string(key).shortDescription) in jobs[\(index)]\(hint)")
            }
            let own = try optionalString("queue", in: fields, path: path, what: "a queue's name")
            guard let name = own ?? queue else {
                throw badRequest("jobs[\(index)] needs \"queue\" (or give \"queue\" once beside \"jobs\")")
            }
            jobs.append(try durableJob(fields, queue: name, path: path))
        }
        return .enqueue(jobs: jobs, isBatch: true)
    }

    private func durableJob(_ fields: JSONObject, queue: String, path: String) throws(RequestError) -> DurableJobRequest {
        var job = DurableJobRequest(queue: queue)
        if let params = fields["params"] {
            job.paramValues = try self.params(params, path: path + "params") ?? []
            job.params = params
        }
        job.input = fields["input"]
        if let value = fields["run_at"] {
            guard case .string(let text) = value, RFC3339.isValid(text) else {
                throw badRequest(
                    "\"\(path)run_at\" must be an RFC 3339 date and time with its offset, like \"2026-12-07T18:00:00Z\" or "
                        + "\"2026-12-07T19:00:00.5+01:00\" (got \(value.shortDescription))")
            }
            job.runAt = text
        }
        if let value = fields["priority"] {
            guard case .int(let n) = value, let priority = Int(exactly: n), DurableJobRequest.priorities.contains(priority) else {
                let range = DurableJobRequest.priorities
                throw badRequest(
                    "\"\(path)priority\" must be an integer from \(range.lowerBound) to \(range.upperBound), lower first "
                        + "(got \(value.shortDescription))"
                )
            }
            job.priority = priority
        }
        if let value = fields["unique_key"] {
            guard case .string(let key) = value, !key.isEmpty, key.utf8.count <= DurableJobRequest.maxUniqueKeyBytes else {
                throw badRequest(
                    "\"\(path)unique_key\" must be a non-empty string of at most \(DurableJobRequest.maxUniqueKeyBytes) bytes "
                        + "(got \(value.shortDescription))")
            }
            job.uniqueKey = key
        }
        if let value = fields["max_attempts"] {
            let range = DurableJobRequest.maxAttemptsRange
            guard case .int(let n) = value, let attempts = Int(exactly: n), range.contains(attempts) else {
                throw badRequest(
                    "\"\(path)max_attempts\" must be an integer from \(range.lowerBound) to \(range.upperBound) "
                        + "(got \(value.shortDescription))"
                )
            }
            job.maxAttempts = attempts
        }
        return job
    }

    private func durableJobID() throws(RequestError) -> Int64 {
        guard let value = object["job_id"] else {
            throw badRequest("\(op.rawValue) needs \"job_id\": the id enqueue answered")
        }
        guard case .int(let job) = value, job > 0 else {
            throw badRequest("\"job_id\" must be a positive integer, as enqueue answered it (got \(value.shortDescription))")
        }
        return job
    }

    private func optionalString(_ key: String, in fields: JSONObject? = nil, path: String = "", what: String) throws(RequestError)
        -> String?
    {
        guard let value = (fields ?? object)[key] else { return nil }
        guard case .string(let text) = value, !text.isEmpty else {
            throw badRequest("\"\(path)\(key)\" must be a non-empty string naming \(what) (got \(value.shortDescription))")
        }
        return text
    }

    // MARK: run

    private func run() throws(RequestError) -> Command {
        if let job = object["job"] {
            for key in ["pool", "sql", "batch", "input", "transaction"] where object[key] != nil {
                throw badRequest(
                    "\"\(key)\" is not allowed with \"job\": a named job takes its pool, SQL and transaction from the config")
            }
            guard case .string(let name) = job, !name.isEmpty else {
                throw badRequest("\"job\" must be a non-empty string naming a configured job (got \(job.shortDescription))")
            }
            return .runNamed(job: name, params: try params(object["params"], path: "params") ?? [], timeoutMs: try timeout())
        }
        if let input = object["input"] {
            for key in ["sql", "batch", "params", "transaction"] where object[key] != nil {
                throw badRequest(
                    "\"\(key)\" is not allowed with \"input\": an exec job takes \"pool\", \"input\" and \"timeout_ms\"")
            }
            guard let pool = try optionalPool() else {
                throw badRequest("run with \"input\" needs \"pool\": the exec pool to send it to")
            }
            return .runExec(pool: pool, input: input, timeoutMs: try timeout())
        }
        let sql = object["sql"]
        let batch = object["batch"]
        if sql != nil && batch != nil {
            throw badRequest(
                "\"sql\" and \"batch\" cannot both be given: send one statement as \"sql\" or several as \"batch\"")
        }
        if sql == nil && batch == nil {
            throw badRequest(
                "run needs \"pool\" and \"sql\" (or \"batch\") for a SQL pool, \"pool\" and \"input\" for an exec pool, or \"job\" for a "
                    + "named job"
            )
        }
        if batch != nil && object["params"] != nil {
            throw badRequest(
                "\"params\" cannot be used with \"batch\": give each entry its own, as in {\"sql\": …, \"params\": […]}")
        }
        guard let pool = try optionalPool() else {
            throw badRequest("run needs \"pool\": the pool to run the SQL on")
        }
        let statements: [SQLStatement]
        if let sql {
            statements = [SQLStatement(sql: try sqlText(sql, path: "\"sql\""), params: try params(object["params"], path: "params") ?? [])]
        } else if let batch {
            statements = try batchStatements(batch)
        } else {
            statements = []
        }
        return .runSQL(
            pool: pool, statements: statements, isBatch: batch != nil,
            transaction: try optionalBool("transaction") ?? false, timeoutMs: try timeout())
    }

    private func sqlText(_ value: JSONValue, path: String) throws(RequestError) -> String {
        guard case .string(let sql) = value, !sql.isEmpty else {
            throw badRequest("\(path) must be a non-empty string of SQL (got \(value.shortDescription))")
        }
        return sql
    }

    private func batchStatements(_ value: JSONValue) throws(RequestError) -> [SQLStatement] {
        let shape = "{\"sql\": …, \"params\": […]}"
        guard case .array(let entries) = value else {
            throw badRequest("\"batch\" must be a non-empty array of \(shape) objects (got \(value.shortDescription))")
        }
        if entries.isEmpty {
            throw badRequest("\"batch\" must not be empty: give at least one \(shape)")
        }
        var statements: [SQLStatement] = []
        statements.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            guard case .object(let fields) = entry else {
                throw badRequest("batch[\(index)] must be an object \(shape) (got \(entry.shortDescription))")
            }
            for key in fields.keys where !FieldSets.batchEntry.contains(key) {
                let candidates = FieldSets.batchEntry.filter { fields[$0] == nil }
                let hint = Suggestion.closest(to: key, among: candidates).map { " (did you mean \"\($0)\"?)" }
                throw badRequest(
                    "unknown field \(JSONValue.string(key).shortDescription) in batch[\(index)]"
                        + (hint ?? " (an entry takes \"sql\" and \"params\")"))
            }
            guard let sql = fields["sql"] else {
                throw badRequest("batch[\(index)] needs \"sql\"")
            }
            statements.append(
                SQLStatement(
                    sql: try sqlText(sql, path: "batch[\(index)].sql"),
                    params: try params(fields["params"], path: "batch[\(index)].params") ?? []))
        }
        return statements
    }

    /// `params`: an array of scalars; a blob is `{"base64": "…"}` (see `Base64` for the
    /// accepted form). nil when absent.
    func readParams(_ value: JSONValue?, path: String) throws(RequestError) -> [SQLValue]? {
        try params(value, path: path)
    }

    private func params(_ value: JSONValue?, path: String) throws(RequestError) -> [SQLValue]? {
        guard let value else { return nil }
        guard case .array(let elements) = value else {
            throw badRequest(
                "\"\(path)\" must be an array of scalars or {\"base64\": …} blobs (got \(value.shortDescription))")
        }
        var result: [SQLValue] = []
        result.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            switch element {
            case .null: result.append(.null)
            case .bool(let b): result.append(.bool(b))
            case .int(let i): result.append(.int(i))
            case .double(let d): result.append(.double(d))
            case .string(let s): result.append(.text(s))
            case .object(let blob) where blob.count == 1 && blob["base64"] != nil:
                guard case .string(let text) = blob["base64"] else {
                    throw badRequest(
                        "\(path)[\(index)].base64 must be a string of base64 (got \(blob["base64"]?.shortDescription ?? "nothing"))")
                }
                guard let bytes = Base64.decode(text) else {
                    throw badRequest(
                        "\(path)[\(index)].base64 is not valid base64 (standard alphabet A-Z a-z 0-9 + /, padded with = to a multiple of 4)"
                    )
                }
                result.append(.blob(bytes))
            case .array, .object:
                throw badRequest(
                    "\(path)[\(index)] must be a scalar or {\"base64\": …} (got \(element.shortDescription))")
            }
        }
        return result
    }

    private func timeout() throws(RequestError) -> Int64? {
        guard let value = object["timeout_ms"] else { return nil }
        guard case .int(let ms) = value, ms >= 1 else {
            throw badRequest("\"timeout_ms\" must be an integer ≥ 1 (got \(value.shortDescription))")
        }
        return ms
    }

    // MARK: Common fields

    private func optionalPool() throws(RequestError) -> String? {
        guard let value = object["pool"] else { return nil }
        guard case .string(let name) = value, !name.isEmpty else {
            throw badRequest("\"pool\" must be a non-empty string naming a pool (got \(value.shortDescription))")
        }
        return name
    }

    private func optionalBool(_ key: String) throws(RequestError) -> Bool? {
        guard let value = object[key] else { return nil }
        guard case .bool(let b) = value else {
            throw badRequest("\"\(key)\" must be true or false (got \(value.shortDescription))")
        }
        return b
    }

    private func optionalCount(_ key: String) throws(RequestError) -> Int? {
        guard let value = object[key] else { return nil }
        guard case .int(let n) = value, n >= 0, let count = Int(exactly: n) else {
            throw badRequest("\"\(key)\" must be a non-negative integer (got \(value.shortDescription))")
        }
        return count
    }

    private func refuseUnknownFields(_ allowed: [String]) throws(RequestError) {
        for entry in object.entries {
            let key = entry.key
            if key == "id" || key == "op" || allowed.contains(key) { continue }
            let shown = JSONValue.string(key).shortDescription
            let candidates = (["id", "op"] + allowed).filter { object[$0] == nil }
            if let suggestion = Suggestion.closest(to: key, among: candidates) {
                throw badRequest("unknown field \(shown) for op \"\(op.rawValue)\" (did you mean \"\(suggestion)\"?)")
            }
            if allowed.isEmpty {
                throw badRequest(
                    "unknown field \(shown) for op \"\(op.rawValue)\" (it takes no fields besides \"id\" and \"op\")")
            }
            let list = allowed.map { "\"\($0)\"" }.joined(separator: ", ")
            throw badRequest(
                "unknown field \(shown) for op \"\(op.rawValue)\" (it takes \(list), besides \"id\" and \"op\")")
        }
    }
}
