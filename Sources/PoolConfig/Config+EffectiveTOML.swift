import PoolCore

extension Config {
    /// The whole effective configuration as TOML, every default written out, for
    /// `poold --check-config`. Passwords inside urls are shown as `***`; `password_file` and
    /// `credential` are where secrets live, not secrets, so they are shown.
    ///
    /// The text parses back to an equal `Config` (apart from the redacted password).
    /// Settings that are not set appear as comments.
    public func effectiveTOML() -> String {
        var out = TOMLWriter()
        out.comment("poold effective configuration, from \(tomlString(path))")
        out.comment("every default is filled in; secrets are shown as ***")

        out.header("[daemon]")
        out.set("control_socket", string: daemon.controlSocket)
        let mode = String(daemon.socketMode, radix: 8)
        out.set("socket_mode", string: String(repeating: "0", count: max(0, 4 - mode.count)) + mode)
        out.set("socket_group", string: daemon.socketGroup, unset: "not set: the socket keeps poold's group")
        out.set("shutdown_grace", duration: daemon.shutdownGrace)
        out.set("max_connections", int: daemon.maxConnections)
        out.set("max_inflight_per_connection", int: daemon.maxInflightPerConnection)

        if let access {
            out.header("[access]")
            out.set("operators", strings: access.operators)
            out.set("submitters", strings: access.submitters)
            out.set("observers", strings: access.observers)
        } else {
            out.blank()
            out.comment("[access] is not set: root and poold's user are operators, members of the socket's")
            out.comment("group submitters, and anyone who can open the socket an observer")
        }

        if let listen = metrics.listen {
            out.header("[metrics]")
            out.set("listen", string: listen.description)
        } else {
            out.blank()
            out.comment("[metrics] is not set: no HTTP endpoint (listen = \"127.0.0.1:9187\" serves /metrics and /healthz)")
        }

        for pool in pools {
            out.header("[[pool]]")
            out.set("name", string: pool.name)
            out.set("kind", string: pool.kind.rawValue)
            let limits = pool.limits
            out.set("min", int: limits.minResources)
            out.set("max", int: limits.maxResources)
            out.set("max_waiters", int: limits.maxWaiters)
            out.set("acquire_timeout", duration: limits.acquireTimeout)
            out.set("idle_timeout", string: limits.idleTimeout?.configDescription ?? "never")
            out.set("max_lifetime", string: limits.maxLifetime?.configDescription ?? "never")
            out.set(
                "health_check_after", string: limits.healthCheckAfter?.configDescription,
                unset: "not set: idle resources are handed out without a health check"
            )
            out.set("job_timeout", duration: pool.jobTimeout)
            out.set("max_job_timeout", duration: pool.maxJobTimeout)
            out.set("allow_adhoc", bool: pool.allowAdhoc)
            switch pool.backend {
            case .sqlite(let s):
                out.set("path", string: s.path)
                out.set("busy_timeout", duration: s.busyTimeout)
            case .postgres(let p):
                out.set("url", string: p.redactedURL)
                out.set("password_file", string: p.passwordFile, unset: "not set")
                out.set("credential", string: p.credential, unset: "not set")
                out.set("application_name", string: p.applicationName)
                out.set("connect_timeout", duration: p.connectTimeout)
                out.set("require_auth", string: p.requireAuth?.text, unset: "not set: whatever the server asks, cleartext and md5 included")
            case .exec(let e):
                out.set("command", strings: e.command)
                out.set("max_jobs_per_worker", int: e.maxJobsPerWorker)
                out.set("kill_grace", duration: e.killGrace)
                out.set("max_output", int: e.maxOutput)
                out.set("working_directory", string: e.workingDirectory, unset: "not set: poold's working directory")
                if !e.environment.isEmpty {
                    // Values may be secrets (tokens, passwords): names only.
                    out.set(
                        "environment",
                        raw: "{ " + e.environment.keys.sorted().map { "\(tomlKey($0)) = \"***\"" }.joined(separator: ", ") + " }")
                }
            }
        }

        for job in jobs {
            out.header("[[job]]")
            out.set("name", string: job.name)
            out.set("pool", string: job.pool)
            if job.sql.count == 1 {
                out.set("sql", string: job.sql[0])
            } else if job.sql.count > 1 {
                out.set("sql", lines: job.sql)
            }
            out.set("timeout", string: job.timeout?.configDescription, unset: "not set: the pool's job_timeout applies")
            if pool(named: job.pool)?.kind != .exec {
                out.set("transaction", bool: job.transaction)
            }
        }
        for queue in queues {
            out.header("[[queue]]")
            out.set("name", string: queue.name)
            out.set("store", string: queue.store)
            switch queue.work {
            case .job(let job): out.set("job", string: job)
            case .pool(let pool): out.set("pool", string: pool)
            }
            out.set("concurrency", int: queue.concurrency)
            out.set("max_attempts", int: queue.maxAttempts)
            out.set("backoff", string: "exponential")
            out.set("timeout", duration: queue.timeout)
            out.set("retention", duration: queue.retention)
            out.set("schema", string: queue.schema)
        }
        return out.text
    }
}

/// Writes TOML line by line, with bare keys and basic strings.
private struct TOMLWriter {
    var text = ""

    mutating func comment(_ line: String) { text += "# \(line)\n" }

    mutating func blank() { text += "\n" }

    mutating func header(_ header: String) { text += "\n\(header)\n" }

    mutating func set(_ key: String, string: String) { text += "\(key) = \(tomlString(string))\n" }

    mutating func set(_ key: String, string: String?, unset: String) {
        if let string { set(key, string: string) } else { comment("\(key): \(unset)") }
    }

    mutating func set(_ key: String, int: Int) { text += "\(key) = \(int)\n" }

    mutating func set(_ key: String, raw: String) { text += "\(key) = \(raw)\n" }

    mutating func set(_ key: String, bool: Bool) { text += "\(key) = \(bool)\n" }

    mutating func set(_ key: String, duration: Duration) { set(key, string: duration.configDescription) }

    mutating func set(_ key: String, strings: [String]) {
        text += "\(key) = [" + strings.map(tomlString).joined(separator: ", ") + "]\n"
    }

    /// An array of strings, one per line.
    mutating func set(_ key: String, lines: [String]) {
        text += "\(key) = [\n" + lines.map { "    \(tomlString($0)),\n" }.joined() + "]\n"
    }
}
