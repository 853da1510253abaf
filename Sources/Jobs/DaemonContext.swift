import BuildInfo
import DaemonRuntime
import ExecPools
import Logging
import PoolConfig
import PoolCore
import PoolKit
import Synchronization
import SystemdKit

/// What every part of the daemon shares: the config in force, the pools, the running jobs,
/// the metrics and the lifecycle. The router answers requests from it, the services watch it,
/// and `Daemon` builds it.
package final class DaemonContext: Sendable {
    package struct ReloadRecord: Sendable {
        var at: String
        var ok: Bool
        var error: String?
    }

    package struct Totals: Sendable {
        package var finished = 0
        package var cancelled = 0
    }

    private struct Mutable: Sendable {
        var config: Config
        var authorizer: Authorizer
        var lastReload: ReloadRecord?
        var stopStarted: ContinuousClock.Instant?
        var totals = Totals()
    }

    package static let version = BuildInfo.version
    /// The git commit this poold was built from ("-dirty": with uncommitted changes).
    package static let commit = BuildInfo.commit

    package let logger: Logger
    package let pools = PoolSet()
    package let jobs = JobRegistry()
    package let metrics: DaemonMetrics
    package let lifecycle = Lifecycle()
    /// Builds the pools the config names, at start and on reload.
    package let factory: PoolFactory
    package let clock = ContinuousClock()
    package let startedAt = ContinuousClock.now
    /// Denials are logged at most 20 at once and 2 a second after that: a client looping on
    /// a forbidden op must not flood the journal.
    let denialLog = Mutex(LogBudget(burst: 20, perSecond: 2))
    private let mutable: Mutex<Mutable>
    /// The durable queues; nil until `Daemon` attaches them (and when the config has none).
    private let queues = Mutex<QueueRunner?>(nil)

    package func attach(_ runner: QueueRunner) {
        queues.withLock { $0 = runner }
    }

    var queueRunner: QueueRunner? { queues.withLock { $0 } }

    /// What a reload moves when `[metrics] listen` changes; nil until `Daemon` attaches it.
    private let endpoint = Mutex<(any MetricsEndpoint)?>(nil)

    package init(config: Config, factory: PoolFactory) {
        self.logger = factory.logger
        self.metrics = factory.metrics
        self.factory = factory
        let authorizer = Authorizer(config: config)
        self.mutable = Mutex(Mutable(config: config, authorizer: authorizer))
        warnAboutUnknownNames(authorizer)
    }

    package var config: Config { mutable.withLock { $0.config } }
    var authorizer: Authorizer { mutable.withLock { $0.authorizer } }
    var lastReload: ReloadRecord? { mutable.withLock { $0.lastReload } }
    package var state: DaemonLifecycle.State { lifecycle.state }
    package var totals: Totals { mutable.withLock { $0.totals } }
    package var stopStarted: ContinuousClock.Instant? { mutable.withLock { $0.stopStarted } }

    /// Puts a validated config in force (the pools are the caller's business).
    func install(_ config: Config, authorizer: Authorizer) {
        warnAboutUnknownNames(authorizer)
        mutable.withLock {
            $0.config = config
            $0.authorizer = authorizer
        }
    }

    package func attach(_ endpoint: any MetricsEndpoint) {
        self.endpoint.withLock { $0 = endpoint }
    }

    var metricsEndpoint: (any MetricsEndpoint)? { endpoint.withLock { $0 } }

    func recordReload(_ record: ReloadRecord) {
        mutable.withLock { $0.lastReload = record }
    }

    func count(_ outcome: JobOutcome) {
        mutable.withLock { state in
            if outcome == .cancelled { state.totals.cancelled += 1 } else { state.totals.finished += 1 }
        }
    }

    private func warnAboutUnknownNames(_ authorizer: Authorizer) {
        if !authorizer.unknown.isEmpty {
            logger.warning(
                "[access] names users or groups this machine does not have; they match nobody",
                metadata: [
                    "entries": "\(authorizer.unknown.joined(separator: ", "))"
                ])
        }
    }

    /// The control socket is bound and every pool has started: tell systemd (READY=1).
    package func markReady() {
        guard lifecycle.handle({ $0.started() }) == .notifyReady else { return }
        Systemd.notify("READY=1", "STATUS=\(statusLine())")
        logger.notice("ready", metadata: ["event": "ready", "pools": "\(pools.all.count)"])
    }

    /// Reaps what exec workers let go and ended; has the reaper watch the rest (`Orphans`).
    package func tendExecWorkers() {
        factory.exec.tend()
    }

    // MARK: Stopping

    /// Starts stopping (SIGTERM, SIGINT, `drain --stop`): refuse new jobs, fail those waiting
    /// for a resource with `shutting_down`, close idle resources. Running jobs get the grace;
    /// a second stop signal skips the rest of it.
    package func requestStop(by cause: DaemonLifecycle.StopCause) {
        switch lifecycle.handle({ $0.stopRequested(by: cause) }) {
        case .beginStopping:
            mutable.withLock { $0.stopStarted = .now }
            Systemd.notify("STOPPING=1", "STATUS=\(statusLine())")
            logger.notice("stopping", metadata: ["event": "stopping", "jobs": "\(jobs.count)"])
            for pool in (pools.retired + pools.all).reversed() { pool.pool.beginClose() }
        case .skipGrace:
            logger.notice("second stop signal: skipping the rest of shutdown_grace")
        default:
            break
        }
    }
}
