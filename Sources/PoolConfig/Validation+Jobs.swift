import PoolCore

/// What duplicate checks need about a `[[job]]`, even one with problems.
struct DeclaredJob {
    var name: String?
    var nameLine: Int?
    /// nil when the job has problems.
    var settings: JobSettings?
}

extension Validation {
    static let jobKeys = ["name", "pool", "sql", "timeout", "transaction"]

    func job(_ node: TOMLNode, index: Int, pools: [DeclaredPool]) -> DeclaredJob {
        var declared = DeclaredJob()
        guard case .table(let entries) = node else {
            error(line: map.headerLine("job", index: index), context: "job #\(index + 1)", "each job must be a table (got \(node.display))")
            return declared
        }
        var r = TableReader(self, entries, table: "job", index: index, context: "job #\(index + 1)")

        let read = r.name()
        let name = read?.name
        declared.name = read?.name
        declared.nameLine = read?.line
        let refused = r.rejectUnknownKeys(known: Self.jobKeys)
        if refused == 0, !r.has("name") {
            r.fail(nil, "name is required: every job needs a unique name = \"…\" (\(nameRule))")
        }

        let poolName = r.string("pool", expected: "must be the name of a pool")
        if refused == 0, !r.has("pool") {
            r.fail(nil, "pool is required: the name of the pool the job runs on")
        }

        var sql: [String] = []
        if let node = r.value("sql") {
            let expected = "sql must be a non-empty string (one statement) or a non-empty array of them (a batch)"
            switch node {
            case .string(let s) where !s.allSatisfy(\.isWhitespace):
                sql = [s]
            case .array(let items) where !items.isEmpty:
                let statements = items.compactMap { item -> String? in
                    if case .string(let s) = item, !s.allSatisfy(\.isWhitespace) { s } else { nil }
                }
                if statements.count == items.count {
                    sql = statements
                } else {
                    r.fail("sql", "\(expected) (got \(node.display))")
                }
            default:
                r.fail("sql", "\(expected) (got \(node.display))")
            }
        }
        let timeout = r.duration("timeout", example: "10s", allowZero: false)
        let transaction = r.bool("transaction")

        guard let poolName else { return declared }
        guard let pool = pools.first(where: { $0.name == poolName }) else {
            let names = pools.compactMap(\.name)
            let suggestion = suggest(poolName, among: names).map { " (did you mean \(tomlString($0))?)" } ?? ""
            let existing =
                names.isEmpty
                ? "no pools are configured"
                : "configured pools: " + names.map(tomlString).joined(separator: ", ")
            r.fail("pool", "pool \(tomlString(shorten(poolName))) does not exist\(suggestion); \(existing)")
            return declared
        }
        switch pool.kind {
        case .exec:
            for key in ["sql", "transaction"] where r.has(key) {
                r.fail(
                    key,
                    "\(tomlString(key)) applies to jobs on sqlite and postgres pools only (pool \(tomlString(poolName)) is an exec pool)")
            }
        case .sqlite, .postgres:
            if !r.has("sql"), refused == 0 {
                r.fail(nil, "sql is required for a job on a \(pool.kind?.rawValue ?? "") pool (pool \(tomlString(poolName)))")
            }
        case nil:
            break
        }
        // Against a pool with problems of its own, its max_job_timeout may not be what was meant.
        if let timeout, pool.settings != nil, timeout > pool.maxJobTimeout {
            let lines = [r.line("timeout"), pool.maxJobTimeoutLine].compactMap { $0 }
            error(
                line: lines.max(), context: r.context,
                "timeout (\(timeout.limitDescription)) must not exceed max_job_timeout (\(pool.maxJobTimeout.limitDescription)) of pool "
                    + "\(tomlString(poolName))"
            )
        }
        guard !r.hasErrors, let name else { return declared }
        declared.settings = JobSettings(
            name: name,
            pool: poolName,
            sql: sql,
            timeout: timeout,
            transaction: transaction ?? false,
            line: r.headerLine ?? 0
        )
        return declared
    }
}
