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

    package init() {
        let refused = MetricNameDescriptor(
            namespace: "poold", subsystem: "control", metricName: "connections_refused", unitName: "total",
            helpText: "Control connections refused at max_connections.")
        refusedConnections = registry.makeCounter(descriptor: refused)
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

    func exposition(pools: [ManagedPool]) -> String {
        for pool in pools {
            let s = pool.pool.snapshot
            let labels = [("pool", pool.name)]
            func gauge(_ name: String, _ help: String, _ value: Int) {
                let descriptor = MetricNameDescriptor(namespace: "poold", subsystem: "pool", metricName: name, unitName: "", helpText: help)
                registry.makeGauge(descriptor: descriptor, labels: labels).set(Int64(value))
            }
            gauge("open", "Resources open, including those opening and closing.", s.open)
            gauge("idle", "Resources idle.", s.idle)
            gauge("leased", "Resources leased to jobs.", s.leased)
            gauge("waiting", "Jobs waiting for a resource.", s.waiting)
            gauge("max", "The pool's max.", s.max)
            gauge("degraded", "1 while the pool cannot open resources.", s.health == .degraded ? 1 : 0)
        }
        let open = MetricNameDescriptor(
            namespace: "poold", subsystem: "control", metricName: "connections", unitName: "", helpText: "Control connections open.")
        registry.makeGauge(descriptor: open).set(Int64(controlConnections.load(ordering: .relaxed)))
        return registry.emitToString()
    }
}
