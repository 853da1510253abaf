import PoolCore

/// What the rest of the file may rely on about a `[[pool]]`, even one that has problems:
/// jobs naming it should not also be told the pool does not exist.
struct DeclaredPool {
    var name: String?
    var nameLine: Int?
    /// nil when the kind was invalid.
    var kind: PoolKind?
    var maxJobTimeout: Duration
    /// nil when `max_job_timeout` was left to its default.
    var maxJobTimeoutLine: Int?
    /// nil when the pool has problems.
    var settings: PoolSettings?
}

extension Validation {
    static let commonPoolKeys = [
        "name", "kind", "min", "max", "max_waiters", "acquire_timeout", "idle_timeout", "max_lifetime",
        "health_check_after", "job_timeout", "max_job_timeout", "allow_adhoc",
    ]

    static let poolKeysByKind: [PoolKind: [String]] = [
        .sqlite: ["path", "busy_timeout"],
        .postgres: ["url", "password_file", "credential", "application_name", "connect_timeout", "require_auth"],
        .exec: ["command", "max_jobs_per_worker", "kill_grace", "max_output", "working_directory", "environment"],
    ]

    func declarePool(_ node: TOMLNode, index: Int) -> DeclaredPool {
        var declared = DeclaredPool(maxJobTimeout: .seconds(300))
        guard case .table(let entries) = node else {
            error(
                line: map.headerLine("pool", index: index), context: "pool #\(index + 1)",
                "each pool must be a table (got \(node.display))"
            )
            return declared
        }
        var r = TableReader(self, entries, table: "pool", index: index, context: "pool #\(index + 1)")

        let read = r.name()
        let name = read?.name
        declared.name = read?.name
        declared.nameLine = read?.line

        var kind: PoolKind? = .sqlite
        if let node = r.value("kind") {
            if case .string(let s) = node, let k = PoolKind(rawValue: s) {
                kind = k
            } else {
                kind = nil
                let kinds = PoolKind.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                r.fail("kind", "kind must be one of \(kinds) (got \(node.display))")
            }
        }
        declared.kind = kind

        // Unknown keys, and keys of another kind (skipped when the kind itself is wrong).
        var known = Self.commonPoolKeys
        var foreign: [String: String] = [:]
        if let kind {
            known += Self.poolKeysByKind[kind] ?? []
            for (other, keys) in Self.poolKeysByKind where other != kind {
                for key in keys {
                    foreign[key] = "\(tomlString(key)) applies to \(other.rawValue) pools only (this pool's kind is \"\(kind.rawValue)\")"
                }
            }
        } else {
            known += PoolKind.allCases.flatMap { Self.poolKeysByKind[$0] ?? [] }
        }
        let refused = r.rejectUnknownKeys(known: known, foreign: foreign)

        if name == nil, !r.has("name"), refused == 0 {
            r.fail(nil, "name is required: every pool needs a unique name = \"…\" (\(nameRule))")
        }

        let defaults = PoolSettings.defaultLimits
        var limits = defaults
        if let n = r.integer("min", minimum: 0) { limits.minResources = n }
        if let n = r.integer("max", minimum: 1) { limits.maxResources = n }
        if let n = r.integer("max_waiters", minimum: 1) { limits.maxWaiters = n }
        if let d = r.duration("acquire_timeout", example: "250ms", allowZero: false) { limits.acquireTimeout = d }
        if let d = r.durationOrNever("idle_timeout", example: "5m") { limits.idleTimeout = d }
        if let d = r.durationOrNever("max_lifetime", example: "1h") { limits.maxLifetime = d }
        if let d = r.duration("health_check_after", example: "30s", allowZero: true) {
            limits.healthCheckAfter = d
        } else if kind == .postgres {
            // A server connection idle for a while may have been cut by a restart, a failover
            // or a firewall: prove it with SELECT 1 before a job gets it.
            limits.healthCheckAfter = PoolSettings.postgresHealthCheckAfter
        }
        let explicitJobTimeout = r.duration("job_timeout", example: "30s", allowZero: false)
        let maxJobTimeout = r.duration("max_job_timeout", example: "5m", allowZero: false)
        if let maxJobTimeout {
            declared.maxJobTimeout = maxJobTimeout
            declared.maxJobTimeoutLine = r.line("max_job_timeout")
        }
        let allowAdhoc = r.bool("allow_adhoc") ?? false

        let backend: BackendSettings?
        switch kind {
        case .sqlite: backend = sqlite(r, required: refused == 0)
        case .postgres: backend = postgres(r, required: refused == 0)
        case .exec: backend = exec(r, required: refused == 0)
        case nil: backend = nil
        }

        guard !r.hasErrors, let name, let backend else { return declared }

        if let problem = limits.validate() {
            r.fail(between: limitKeys(of: problem), problem)
            return declared
        }
        let maxJob = maxJobTimeout ?? declared.maxJobTimeout
        // Left out, job_timeout is 30s or max_job_timeout if that is lower: `max_job_timeout =
        // "1s"` alone is a valid way to say "no job here runs longer than a second".
        let jobTimeout = explicitJobTimeout ?? min(PoolSettings.defaultJobTimeout, maxJob)
        if jobTimeout > maxJob {
            r.fail(
                between: ["job_timeout", "max_job_timeout"],
                "job_timeout (\(jobTimeout.limitDescription)) must not exceed max_job_timeout (\(maxJob.limitDescription))"
            )
            return declared
        }
        declared.settings = PoolSettings(
            name: name,
            limits: limits,
            jobTimeout: jobTimeout,
            maxJobTimeout: maxJob,
            allowAdhoc: allowAdhoc,
            backend: backend,
            line: r.headerLine ?? 0
        )
        return declared
    }

    /// The keys a `PoolLimits.validate()` message is about: it starts with the key's name,
    /// and `min (…) must not exceed max (…)` is about both.
    private func limitKeys(of problem: String) -> [String] {
        let first = String(problem.prefix { $0 != " " })
        if first == "min", problem.contains("exceed max") { return ["min", "max"] }
        return Self.commonPoolKeys.contains(first) ? [first] : []
    }

    private func sqlite(_ r: TableReader, required: Bool) -> BackendSettings? {
        let path = r.string("path", expected: "must be a non-empty string (the database file)")
        let busy = r.duration("busy_timeout", example: "5s", allowZero: true) ?? .seconds(5)
        guard let path else {
            if required, !r.has("path") {
                r.fail(nil, "path is required for a sqlite pool: the database file, e.g. path = \"/var/lib/poold/main.db\"")
            }
            return nil
        }
        return .sqlite(SQLiteSettings(path: path, busyTimeout: busy))
    }

    private func postgres(_ r: TableReader, required: Bool) -> BackendSettings? {
        var url: String?
        if let node = r.value("url") {
            if case .string(let s) = node {
                switch PostgresURL.parse(s) {
                case .success(let parsed):
                    url = s
                    if let password = parsed.password, !password.isEmpty {
                        warning(line: r.line("url"), context: r.context, "the url contains a password; prefer password_file or credential")
                    }
                case .failure(let problem):
                    r.fail("url", "url \(problem.message) (got \(tomlString(shorten(redactURL(s)))))")
                }
            } else {
                r.fail("url", "url must be a string like \"postgres://USER@HOST:5432/DATABASE\" (got \(node.kindDescription))")
            }
        }
        let passwordFile = r.string("password_file", expected: "must be a non-empty string (a file path)", sensitive: true)
        var credential = r.string("credential", expected: "must be a non-empty string (a credential name)", sensitive: true)
        if let name = credential, name.contains("/") || name == "." || name == ".." {
            r.fail("credential", "credential must be a name under $CREDENTIALS_DIRECTORY, not a path (got \(tomlString(shorten(name))))")
            credential = nil
        }
        if r.has("password_file"), r.has("credential") {
            r.fail(between: ["password_file", "credential"], "password_file and credential are mutually exclusive; set one")
        }
        if let url, passwordFile != nil || credential != nil,
            let password = try? PostgresURL.parse(url).get().password, !password.isEmpty
        {
            let other = passwordFile != nil ? "password_file" : "credential"
            r.fail(between: ["url", other], "the url contains a password and \(other) is set; remove the password from the url")
        }
        var applicationName = "poold"
        if let name = r.string("application_name", expected: "must be a non-empty string") {
            if name.utf8.count > 63 || name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value > 0x7E }) {
                r.fail(
                    "application_name", "application_name must be at most 63 printable ASCII characters (got \(tomlString(shorten(name))))")
            } else {
                applicationName = name
            }
        }
        let connectTimeout = r.duration("connect_timeout", example: "10s", allowZero: false) ?? .seconds(10)
        var requireAuth: RequireAuth?
        if let text = r.string("require_auth", expected: "must be a string like \"scram-sha-256\" or \"!password,!md5\"") {
            switch RequireAuth.parse(text) {
            case .success(let parsed): requireAuth = parsed
            case .failure(let invalid): r.fail("require_auth", invalid.message)
            }
        }
        guard let url else {
            if required, !r.has("url") {
                r.fail(nil, "url is required for a postgres pool, e.g. url = \"postgres://app@127.0.0.1:5432/app\"")
            }
            return nil
        }
        return .postgres(
            PostgresSettings(
                url: url,
                passwordFile: passwordFile,
                credential: credential,
                applicationName: applicationName,
                connectTimeout: connectTimeout,
                requireAuth: requireAuth
            ))
    }

    private func exec(_ r: TableReader, required: Bool) -> BackendSettings? {
        var command: [String]?
        if let node = r.value("command") {
            let strings: [String]? =
                if case .array(let items) = node {
                    items.compactMap { if case .string(let s) = $0, !s.isEmpty { s } else { nil } }
                } else { nil }
            if case .array(let items) = node, let strings, !items.isEmpty, strings.count == items.count {
                command = strings
            } else {
                r.fail(
                    "command",
                    "command must be a non-empty array of non-empty strings, like [\"/usr/bin/python3\", \"worker.py\"] (got "
                        + "\(node.display))"
                )
            }
        }
        let maxJobs = r.integer("max_jobs_per_worker", minimum: 1) ?? 1000
        let killGrace = r.duration("kill_grace", example: "2s", allowZero: true) ?? .seconds(2)
        let maxOutput = r.integer("max_output", minimum: 1) ?? ExecSettings.defaultMaxOutput
        let directory = r.string("working_directory", expected: "must be a non-empty string (a directory)")
        var environment: [String: String] = [:]
        if let node = r.value("environment") {
            if case .table(let entries) = node {
                for (key, value) in entries {
                    guard case .string(let text) = value else {
                        // The value may be a secret: its kind is shown, never the value.
                        r.fail("environment", "environment.\(key) must be a string (got \(value.kindDescription))")
                        continue
                    }
                    if key.isEmpty || key.contains("=") || key.utf8.contains(0) || text.utf8.contains(0) {
                        r.fail("environment", "environment names must be non-empty, without '=' or NUL (got \(tomlString(shorten(key))))")
                        continue
                    }
                    environment[key] = text
                }
            } else {
                r.fail(
                    "environment",
                    "environment must be a table of strings, like environment = { LANG = \"C.UTF-8\" } (got \(node.kindDescription))")
            }
        }
        guard let command else {
            if required, !r.has("command") {
                r.fail(nil, "command is required for an exec pool, e.g. command = [\"/usr/bin/python3\", \"/opt/app/worker.py\"]")
            }
            return nil
        }
        return .exec(
            ExecSettings(
                command: command, maxJobsPerWorker: maxJobs, killGrace: killGrace,
                maxOutput: maxOutput, workingDirectory: directory, environment: environment))
    }
}
