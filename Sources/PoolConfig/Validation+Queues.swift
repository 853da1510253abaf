import PoolCore

extension Validation {
    static let queueKeys = [
        "name", "store", "job", "pool", "concurrency", "max_attempts", "backoff", "timeout", "retention", "schema",
    ]

    /// One `[[queue]]`; nil when it has problems (already reported).
    func queue(_ node: TOMLNode, index: Int, pools: [DeclaredPool], jobs: [JobSettings]) -> (name: String?, line: Int?, QueueSettings?) {
        guard case .table(let entries) = node else {
            error(
                line: map.headerLine("queue", index: index), context: "queue #\(index + 1)",
                "each queue must be a table (got \(node.display))")
            return (nil, nil, nil)
        }
        var r = TableReader(self, entries, table: "queue", index: index, context: "queue #\(index + 1)")
        let read = r.name()
        let refused = r.rejectUnknownKeys(known: Self.queueKeys)
        if refused == 0, !r.has("name") {
            r.fail(nil, "name is required: every queue needs a unique name = \"…\" (\(nameRule))")
        }
        let store = r.string("store", expected: "must be the name of a postgres pool (where the queue's tables live)")
        if refused == 0, !r.has("store") {
            r.fail(nil, "store is required: the postgres pool whose database holds the queue's jobs")
        }
        if let store {
            if let pool = pools.first(where: { $0.name == store }) {
                if let kind = pool.kind, kind != .postgres {
                    r.fail("store", "store must be a postgres pool; pool \(tomlString(store)) is a \(kind.rawValue) pool")
                }
            } else {
                r.fail(
                    "store", "pool \(tomlString(shorten(store))) does not exist\(Self.existing(pools, kind: .postgres, suggesting: store))")
            }
        }
        let work = queueWork(&r, refused: refused, pools: pools, jobs: jobs, store: store)
        let concurrency = r.integer("concurrency", minimum: 1)
        if let concurrency, concurrency > 1024 {
            r.fail("concurrency", "concurrency must be at most 1024 (got \(concurrency)); it counts jobs running at once on this host")
        }
        let maxAttempts = r.integer("max_attempts", minimum: 1)
        if let node = r.value("backoff"), node.display != "\"exponential\"" {
            r.fail(
                "backoff",
                "backoff must be \"exponential\" (attempt^4 seconds, at most an hour, ±10%; the only one there is) (got \(node.display))")
        }
        let timeout = r.duration("timeout", example: "5m", allowZero: false)
        let retention = r.duration("retention", example: "24h", allowZero: false)
        let schema = r.string("schema", expected: "must be a PostgreSQL schema name")
        if let schema, !Self.isSchemaName(schema) {
            r.fail(
                "schema",
                "schema must be 1 to 48 lowercase letters, digits or '_', starting with a letter, and not pg_… "
                    + "(got \(tomlString(shorten(schema))))"
            )
        }
        guard !r.hasErrors, let name = read?.name, let store, let work else { return (read?.name, read?.line, nil) }
        if let pool = pools.first(where: { $0.name == store })?.settings, pool.allowAdhoc {
            warning(
                line: r.line("store"), context: r.context,
                "store \(tomlString(store)) allows ad-hoc SQL (allow_adhoc = true): any submitter's SQL on it can read and change the "
                    + "queues' tables, other users' jobs included; set allow_adhoc = false there, or give the queues a store pool of "
                    + "their own")
        }
        let settings = QueueSettings(
            name: name, store: store, work: work, concurrency: concurrency ?? QueueSettings.defaultConcurrency,
            maxAttempts: maxAttempts ?? QueueSettings.defaultMaxAttempts, timeout: timeout ?? QueueSettings.defaultTimeout,
            retention: retention ?? QueueSettings.defaultRetention, schema: schema ?? QueueSettings.defaultSchema,
            line: r.headerLine ?? 0)
        return (name, read?.line, settings)
    }

    /// `job` (a named SQL job on the store's own pool) or `pool` (an exec pool), exactly one.
    private func queueWork(
        _ r: inout TableReader, refused: Int, pools: [DeclaredPool], jobs: [JobSettings], store: String?
    ) -> QueueSettings.Work? {
        let job = r.string("job", expected: "must be the name of a [[job]]")
        let pool = r.string("pool", expected: "must be the name of an exec pool")
        switch (job, pool) {
        case (.some, .some):
            r.fail(between: ["job", "pool"], "give job (a named SQL job) or pool (an exec pool), not both")
            return nil
        case (nil, nil):
            if refused == 0, !r.has("job"), !r.has("pool") {
                r.fail(nil, "job or pool is required: the named SQL job each enqueued job runs, or the exec pool its input goes to")
            }
            return nil
        case (.some(let job), nil):
            guard let settings = jobs.first(where: { $0.name == job }) else {
                let names = jobs.map(\.name)
                let suggestion = suggest(job, among: names).map { " (did you mean \(tomlString($0))?)" } ?? ""
                r.fail(
                    "job",
                    "job \(tomlString(shorten(job))) does not exist\(suggestion); a queue's job must be a [[job]] declared in this file")
                return nil
            }
            // Exactly-once effects need the job's SQL and its completion in one transaction.
            if let store, settings.pool != store {
                r.fail(
                    "job",
                    "job \(tomlString(job)) runs on pool \(tomlString(settings.pool)), not on the queue's store \(tomlString(store)): a "
                        + "queue's SQL job must run on its store, so that its effects and its completion commit together; move the job "
                        + "to that pool, or make the queue's work an exec pool")
                return nil
            }
            if settings.transaction {
                r.fail(
                    "job",
                    "job \(tomlString(job)) sets transaction = true: a queue's job always runs in one transaction with its completion; "
                        + "drop transaction from the job")
                return nil
            }
            return .job(job)
        case (nil, .some(let pool)):
            guard let declared = pools.first(where: { $0.name == pool }) else {
                r.fail("pool", "pool \(tomlString(shorten(pool))) does not exist\(Self.existing(pools, kind: .exec, suggesting: pool))")
                return nil
            }
            if let kind = declared.kind, kind != .exec {
                r.fail(
                    "pool",
                    "pool must be an exec pool (pool \(tomlString(pool)) is a \(kind.rawValue) pool); for SQL, name a [[job]] with job")
                return nil
            }
            return .pool(pool)
        }
    }

    private static func existing(_ pools: [DeclaredPool], kind: PoolKind, suggesting name: String) -> String {
        let names = pools.filter { $0.kind == kind }.compactMap(\.name)
        let suggestion = suggest(name, among: names).map { " (did you mean \(tomlString($0))?)" } ?? ""
        return suggestion
            + (names.isEmpty
                ? "; no \(kind.rawValue) pools are configured"
                : "; \(kind.rawValue) pools: "
                    + names.map(tomlString).joined(separator: ", "))
    }

    static func isSchemaName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first >= "a" && first <= "z", s.unicodeScalars.count <= 48, !s.hasPrefix("pg_") else {
            return false
        }
        return s.unicodeScalars.allSatisfy { c in (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "_" }
    }
}
