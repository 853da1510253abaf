import ControlProtocol
import PoolConfig
import PoolCore
import PoolKit

/// What poold says of itself: systemd's STATUS= line, and the `status`, `pools` and `stats` ops.
extension DaemonContext {
    /// One line for systemd's STATUS=: `ready · 1 pools · 0/4 busy · 0 waiting · 12 ok · 0 failed`,
    /// or what is wrong (`degraded: pool "pg": …`), or what stopping still waits for.
    package func statusLine() -> String {
        let state = self.state
        let snapshots = pools.all.map { ($0, $0.pool.snapshot) }
        if state == .stopping || state == .stopped {
            let open = snapshots.reduce(0) { $0 + $1.1.open }
            return "stopping: \(jobs.count) jobs running, \(open) connections open"
        }
        if let degraded = snapshots.first(where: { $0.1.health == .degraded }) {
            return "degraded: pool \"\(degraded.0.name)\" cannot connect: \(degraded.1.lastError ?? "unknown error")"
        }
        var ok: UInt64 = 0
        var failed: UInt64 = 0
        for (pool, _) in snapshots {
            let counts = pool.statistics.snapshot
            ok += counts.count(.succeeded)
            failed += counts.count(.failed) + counts.count(.timedOut) + counts.count(.cancelled) + counts.count(.overloaded)
        }
        let busy = snapshots.reduce(0) { $0 + $1.1.leased }
        let capacity = snapshots.reduce(0) { $0 + $1.1.max }
        let waiting = snapshots.reduce(0) { $0 + $1.1.waiting }
        var line =
            "\(state.rawValue) · \(snapshots.count) pools · \(busy)/\(capacity) busy · \(waiting) waiting · \(ok) ok · \(failed) failed"
        if let queues = queueRunner?.statusFragment {
            line += " · \(queues)"
        }
        if let last = lastReload, !last.ok {
            line += " · last reload failed"
        }
        return line
    }

    /// The Prometheus exposition: the `metrics` op's `text` and what `GET /metrics` serves.
    package func metricsText() -> String {
        metrics.exposition(pools: pools.all, uptime: startedAt.duration(to: .now))
    }

    func statusFields() -> [(String, JSONValue)] {
        let (config, lastReload) = (config, lastReload)
        let state = self.state
        let snapshots = pools.all.map { ($0, $0.pool.snapshot) }
        var succeeded: UInt64 = 0
        var failed: UInt64 = 0
        for (pool, _) in snapshots {
            let counts = pool.statistics.snapshot
            succeeded += counts.count(.succeeded)
            failed += counts.count(.failed) + counts.count(.timedOut) + counts.count(.cancelled) + counts.count(.overloaded)
        }
        let reload: JSONValue =
            lastReload.map {
                .object(["at": .string($0.at), "ok": .bool($0.ok), "error": $0.error.map { .string($0) } ?? .null])
            } ?? .null
        return [
            ("state", .string(state.rawValue)),
            ("version", .string(DaemonContext.version)),
            ("uptime_s", .int(startedAt.duration(to: .now).components.seconds)),
            ("config", .string(config.path)),
            ("pools", .int(Int64(snapshots.count))),
            ("busy", .int(Int64(snapshots.reduce(0) { $0 + $1.1.leased }))),
            ("waiting", .int(Int64(snapshots.reduce(0) { $0 + $1.1.waiting }))),
            ("succeeded", .int(Int64(clamping: succeeded))),
            ("failed", .int(Int64(clamping: failed))),
            ("last_reload", reload),
        ]
    }

    func poolJSON(_ pool: ManagedPool) -> JSONValue {
        let s = pool.pool.snapshot
        return .object([
            "name": .string(pool.name),
            "kind": .string(pool.kind.rawValue),
            "state": .string(s.state),
            "min": .int(Int64(s.min)),
            "max": .int(Int64(s.max)),
            "open": .int(Int64(s.open)),
            "idle": .int(Int64(s.idle)),
            "leased": .int(Int64(s.leased)),
            "waiting": .int(Int64(s.waiting)),
            "last_error": s.lastError.map { .string($0) } ?? .null,
        ])
    }

    func statsJSON(pool name: String?) -> JSONObject {
        var out = JSONObject()
        for pool in pools.all where name == nil || pool.name == name {
            let s = pool.statistics.snapshot
            func percentiles(_ p: PoolStatistics.Percentiles) -> JSONValue {
                .object(["p50": .int(Int64(p.p50)), "p90": .int(Int64(p.p90)), "p99": .int(Int64(p.p99)), "max": .int(Int64(p.max))])
            }
            out[pool.name] = .object([
                "succeeded": .int(Int64(s.count(.succeeded))),
                "failed": .int(Int64(s.count(.failed))),
                "timed_out": .int(Int64(s.count(.timedOut))),
                "cancelled": .int(Int64(s.count(.cancelled))),
                "overloaded": .int(Int64(s.count(.overloaded))),
                "queue_us": percentiles(s.queueMicros),
                "acquire_us": percentiles(s.acquireMicros),
                "exec_us": percentiles(s.execMicros),
            ])
        }
        return out
    }

}
