import DurableQueues
import PoolCore
import PoolKit
import Prometheus
import Synchronization

/// Prometheus exposition for `metrics`: job counters and latency histograms per pool and
/// outcome, updated as jobs finish, and pool gauges read at scrape time.
package final class DaemonMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private static let buckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// One pool's collectors, made once: looking them up by name on every job costs more than
    /// the job's own bookkeeping.
    struct PoolCollectors: Sendable {
        let jobs: [JobOutcome: Counter]
        let wait: DurationHistogram
        let exec: DurationHistogram

        func record(_ outcome: JobOutcome, _ timing: JobTiming) {
            jobs[outcome]?.increment()
            wait.record(timing.queue + timing.acquire)
            if timing.exec > .zero { exec.record(timing.exec) }
        }
    }

    private let collectors = Mutex<[String: PoolCollectors]>([:])
    /// Control connections open, counting one being refused until it is closed.
    package let controlConnections = Atomic<Int>(0)
    private let refusedConnections: Counter
    private let controlConnectionsGauge: Gauge
    private let uptimeGauge: Gauge

    /// `version` and `commit` label `poold_build_info` (Plugins/BuildInfoPlugin embeds them).
    package init(version: String = DaemonContext.version, commit: String = DaemonContext.commit) {
        let refused = MetricNameDescriptor(
            namespace: "poold", subsystem: "control", metricName: "connections_refused", unitName: "total",
            helpText: "Control connections refused at max_connections.")
        refusedConnections = registry.makeCounter(descriptor: refused)
        let open = MetricNameDescriptor(
            namespace: "poold", subsystem: "control", metricName: "connections", unitName: "", helpText: "Control connections open.")
        controlConnectionsGauge = registry.makeGauge(descriptor: open)
        let uptime = MetricNameDescriptor(
            namespace: "poold", metricName: "uptime", unitName: "seconds", helpText: "Seconds since poold started.")
        uptimeGauge = registry.makeGauge(descriptor: uptime)
        let build = MetricNameDescriptor(
            namespace: "poold", metricName: "build_info", unitName: "", helpText: "Always 1; the labels say which poold this is.")
        registry.makeGauge(descriptor: build, labels: [("version", version), ("commit", commit)]).set(Int64(1))
    }

    package func connectionRefused() {
        refusedConnections.increment()
    }

    func collectors(for pool: String) -> PoolCollectors {
        if let existing = collectors.withLock({ $0[pool] }) { return existing }
        let jobs = MetricNameDescriptor(
            namespace: "poold", metricName: "jobs", unitName: "total", helpText: "Jobs finished, by pool and outcome.")
        let wait = MetricNameDescriptor(
            namespace: "poold", metricName: "job_wait", unitName: "seconds", helpText: "Time jobs waited (queue and acquire).")
        let exec = MetricNameDescriptor(
            namespace: "poold", metricName: "job_exec", unitName: "seconds", helpText: "Time jobs ran on a resource.")
        var counters: [JobOutcome: Counter] = [:]
        for outcome in JobOutcome.allCases {
            counters[outcome] = registry.makeCounter(descriptor: jobs, labels: [("pool", pool), ("outcome", outcome.rawValue)])
        }
        let made = PoolCollectors(
            jobs: counters,
            wait: registry.makeDurationHistogram(descriptor: wait, labels: [("pool", pool)], buckets: Self.buckets),
            exec: registry.makeDurationHistogram(descriptor: exec, labels: [("pool", pool)], buckets: Self.buckets)
        )
        collectors.withLock { $0[pool] = made }
        return made
    }

    func record(pool: String, outcome: JobOutcome, timing: JobTiming) {
        collectors(for: pool).record(outcome, timing)
    }

    /// One pool's gauges, set at scrape time; unregistered when the pool is gone, so that a
    /// removed pool does not go on showing the resources it had.
    private struct PoolGauges: Sendable {
        let all: [Gauge]

        init(registry: PrometheusCollectorRegistry, pool: String) {
            all = PoolGauges.series.map { name, help in
                let descriptor = MetricNameDescriptor(namespace: "poold", subsystem: "pool", metricName: name, unitName: "", helpText: help)
                return registry.makeGauge(descriptor: descriptor, labels: [("pool", pool)])
            }
        }

        static let series = [
            ("open", "Resources open, including those opening and closing."),
            ("idle", "Resources idle."),
            ("leased", "Resources leased to jobs."),
            ("waiting", "Jobs waiting for a resource."),
            ("max", "The pool's max."),
            ("degraded", "1 while the pool cannot open resources."),
        ]

        func set(_ s: PoolSnapshot) {
            let values = [s.open, s.idle, s.leased, s.waiting, s.max, s.health == .degraded ? 1 : 0]
            for (gauge, value) in zip(all, values) { gauge.set(Int64(value)) }
        }
    }

    private let poolGauges = Mutex<[String: PoolGauges]>([:])

    /// One durable queue's series: attempts by how they ended on this host, and the store's
    /// figures (refreshed by the host every few seconds).
    struct QueueCollectors: Sendable {
        let outcomes: [String: Counter]
        let states: [String: Gauge]
        let running: Gauge
        let oldest: Gauge

        static let outcomeNames = ["completed", "failed", "discarded", "superseded", "handed_back", "stopped"]
        /// The unfinished states: finished jobs are counted by `outcomes` as they finish here.
        static let stateNames = ["scheduled", "available", "running", "retryable"]

        func count(_ outcome: String) { outcomes[outcome]?.increment() }

        func set(_ stats: QueueStats, running here: Int) {
            for (state, gauge) in states { gauge.set(Int64(stats.counts[state] ?? 0)) }
            running.set(Int64(here))
            oldest.set(to: Double(stats.oldestRunnableMs) / 1000)
        }
    }

    private let queueCollectors = Mutex<[String: QueueCollectors]>([:])

    func queueCollectors(for queue: String) -> QueueCollectors {
        queueCollectors.withLock { known in
            if let existing = known[queue] { return existing }
            let attempts = MetricNameDescriptor(
                namespace: "poold", subsystem: "queue", metricName: "attempts", unitName: "total",
                helpText: "Durable job attempts that ended on this host, by queue and how they ended.")
            let jobs = MetricNameDescriptor(
                namespace: "poold", subsystem: "queue", metricName: "jobs", unitName: "",
                helpText: "Unfinished durable jobs in the store, by queue and state (refreshed every 5 s).")
            let running = MetricNameDescriptor(
                namespace: "poold", subsystem: "queue", metricName: "running_here", unitName: "",
                helpText: "Durable jobs of the queue running on this host.")
            let oldest = MetricNameDescriptor(
                namespace: "poold", subsystem: "queue", metricName: "oldest_runnable", unitName: "seconds",
                helpText: "How long the oldest job that may run has waited.")
            let made = QueueCollectors(
                outcomes: Dictionary(
                    uniqueKeysWithValues: QueueCollectors.outcomeNames.map {
                        ($0, registry.makeCounter(descriptor: attempts, labels: [("queue", queue), ("outcome", $0)]))
                    }),
                states: Dictionary(
                    uniqueKeysWithValues: QueueCollectors.stateNames.map {
                        ($0, registry.makeGauge(descriptor: jobs, labels: [("queue", queue), ("state", $0)]))
                    }),
                running: registry.makeGauge(descriptor: running, labels: [("queue", queue)]),
                oldest: registry.makeGauge(descriptor: oldest, labels: [("queue", queue)]))
            known[queue] = made
            return made
        }
    }

    /// The Prometheus text that both the `metrics` op and `GET /metrics` serve.
    /// `uptime`: how long poold has been running.
    func exposition(pools: [ManagedPool], uptime: Duration) -> String {
        let gauges = poolGauges.withLock { known in
            let current = Set(pools.map(\.name))
            for (name, gone) in known where !current.contains(name) {
                for gauge in gone.all { registry.unregisterGauge(gauge) }
                known[name] = nil
            }
            return pools.map { pool in
                if let existing = known[pool.name] { return existing }
                let made = PoolGauges(registry: registry, pool: pool.name)
                known[pool.name] = made
                return made
            }
        }
        for (pool, gauge) in zip(pools, gauges) { gauge.set(pool.pool.snapshot) }
        controlConnectionsGauge.set(Int64(controlConnections.load(ordering: .relaxed)))
        let (seconds, attoseconds) = uptime.components
        uptimeGauge.set(to: Double(seconds) + Double(attoseconds) / 1e18)
        return registry.emitToString()
    }
}
