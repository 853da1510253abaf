import ControlProtocol
import PoolCore

/// One look at poold for `poolctl top`: the `status`, `pools` and `metrics` replies, and when
/// the last of them came. Two snapshots make an interval (`TopRow`).
struct TopSnapshot {
    /// One entry of the `pools` reply.
    struct Pool: Equatable {
        var name: String
        var kind: String
        var state: String
        var min: Int64?
        var max: Int64?
        var open: Int64?
        var idle: Int64?
        var leased: Int64?
        var waiting: Int64?
        var lastError: String?
    }

    var at: ContinuousClock.Instant
    /// `status.state`: ready, reloading, stopping…
    var daemonState: String?
    var pools: [Pool]
    /// Cumulative counters from the `metrics` text, by pool name.
    var counters: [String: PoolCounters]

    init(at: ContinuousClock.Instant, daemonState: String?, pools: [Pool], counters: [String: PoolCounters]) {
        self.at = at
        self.daemonState = daemonState
        self.pools = pools
        self.counters = counters
    }

    /// From the replies as they came; a field a reply lacks shows as unknown, never as a failure.
    init(at: ContinuousClock.Instant, status: JSONObject, pools: JSONObject, metrics: JSONObject) {
        var list: [Pool] = []
        if case .array(let entries)? = pools["pools"] {
            for case .object(let p) in entries {
                guard case .string(let name)? = p["name"] else { continue }
                func string(_ key: String) -> String? {
                    if case .string(let s)? = p[key] { s } else { nil }
                }
                func int(_ key: String) -> Int64? {
                    if case .int(let i)? = p[key] { i } else { nil }
                }
                list.append(
                    Pool(
                        name: name, kind: string("kind") ?? "-", state: string("state") ?? "-", min: int("min"), max: int("max"),
                        open: int("open"), idle: int("idle"), leased: int("leased"), waiting: int("waiting"),
                        lastError: string("last_error")))
            }
        }
        var state: String?
        if case .string(let s)? = status["state"] { state = s }
        var text = ""
        if case .string(let t)? = metrics["text"] { text = t }
        self.init(at: at, daemonState: state, pools: list, counters: PoolCounters.parse(metrics: text))
    }
}

/// One pool over one interval: its state now, and what its jobs did since the snapshot before.
struct TopRow: Equatable {
    /// The outcomes `poold_jobs_total` counts, in the order `top` shows them.
    static let outcomes = ["succeeded", "failed", "timed_out", "cancelled", "overloaded"]

    var pool: TopSnapshot.Pool
    /// The interval's length in seconds; nil for the first snapshot, which has no interval.
    var seconds: Double?
    /// Jobs finished in the interval, by outcome.
    var jobs: [String: Double]?
    var waitP50: CumulativeHistogram.Quantile?
    var waitP99: CumulativeHistogram.Quantile?
    var execP50: CumulativeHistogram.Quantile?
    var execP99: CumulativeHistogram.Quantile?

    /// Jobs per second of `outcome` over the interval (never negative), or nil without one.
    func rate(_ outcome: String) -> Double? {
        guard let seconds, seconds > 0, let jobs else { return nil }
        return (jobs[outcome] ?? 0) / seconds
    }

    /// One row per pool of `current`. With a `previous` snapshot the counts are differences
    /// of the cumulative counters; a counter that went down (poold restarted under the same
    /// socket) counts from zero, as Prometheus's `increase()` does, so nothing is negative.
    static func rows(previous: TopSnapshot?, current: TopSnapshot) -> [TopRow] {
        current.pools.map { pool in
            var row = TopRow(pool: pool)
            guard let previous else { return row }
            let now = current.counters[pool.name] ?? PoolCounters()
            let before = previous.counters[pool.name]
            row.seconds = max(0, previous.at.duration(to: current.at).seconds)
            let reset = Self.outcomes.contains { (now.jobs[$0] ?? 0) < (before?.jobs[$0] ?? 0) }
            var jobs: [String: Double] = [:]
            for outcome in Self.outcomes {
                let after = now.jobs[outcome] ?? 0
                jobs[outcome] = reset ? after : max(0, after - (before?.jobs[outcome] ?? 0))
            }
            row.jobs = jobs
            if let wait = now.wait?.since(reset ? nil : before?.wait) {
                row.waitP50 = wait.quantile(0.5)
                row.waitP99 = wait.quantile(0.99)
            }
            if let exec = now.exec?.since(reset ? nil : before?.exec) {
                row.execP50 = exec.quantile(0.5)
                row.execP99 = exec.quantile(0.99)
            }
            return row
        }
    }
}
