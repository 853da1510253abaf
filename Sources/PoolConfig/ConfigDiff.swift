import PoolCore

/// What a reload changes: the running config (with the settings each running pool has) against
/// the one just read. Pure: the daemon performs it (`Daemon.apply`) and reports `summary`.
///
/// A pool whose backend target is unchanged (same kind, same file, URL or command) takes its new
/// limits and timeouts live, without disturbing leased resources. One whose target changed is
/// replaced: the old one drains and closes, a new one starts. `control_socket` keeps its running
/// value until a restart (the socket is already bound), and so do the `[[queue]]`s.
public struct ConfigDiff: Sendable, Equatable {
    public enum PoolChange: Sendable, Equatable {
        /// A pool the running config does not have.
        case add(PoolSettings)
        /// Same backend target: limits and timeouts apply live. `resized`: `min` or `max` changed.
        case update(PoolSettings, resized: Bool)
        /// The backend target changed: drain and close the running pool, start this one.
        case replace(PoolSettings)
        /// A running pool the new config does not have: it drains and closes.
        case remove(name: String)
    }

    /// In the new file's order, then removals in the running order.
    public var pools: [PoolChange]
    public var jobsChanged: Bool
    public var accessChanged: Bool
    /// `control_socket` differs; it takes effect only after a restart.
    public var controlSocketChanged: Bool
    /// `[[queue]]` differs; queues keep their running settings until a restart (their hosts hold
    /// leases and running jobs that a reload must not disturb).
    public var queuesChanged: Bool
    /// `[metrics] listen` differs: the daemon moves the listener (before applying the rest).
    public var metricsListenChanged: Bool
    /// The config to run from now on: the new one, with the running `control_socket`.
    public var applied: Config

    /// - Parameters:
    ///   - running: the config in force, with `pools` as the running pools' settings (a pool that
    ///     failed to start is not running, and a later reload adds it again).
    ///   - new: the config just read and validated.
    public init(running: Config, new: Config) {
        var pools: [PoolChange] = []
        for settings in new.pools {
            guard let before = running.pool(named: settings.name) else {
                pools.append(.add(settings))
                continue
            }
            if before == settings { continue }
            if before.backend == settings.backend {
                let resized =
                    before.limits.minResources != settings.limits.minResources
                    || before.limits.maxResources != settings.limits.maxResources
                pools.append(.update(settings, resized: resized))
            } else {
                pools.append(.replace(settings))
            }
        }
        for settings in running.pools where new.pool(named: settings.name) == nil {
            pools.append(.remove(name: settings.name))
        }
        self.pools = pools
        jobsChanged = running.jobs != new.jobs
        accessChanged = running.access != new.access
        controlSocketChanged = running.daemon.controlSocket != new.daemon.controlSocket
        metricsListenChanged = running.metrics != new.metrics
        queuesChanged = running.queues != new.queues
        var applied = new
        applied.daemon.controlSocket = running.daemon.controlSocket
        applied.queues = running.queues
        self.applied = applied
    }

    /// One line per change, as `reload` answers and logs them, for changes that were applied as
    /// planned (the daemon words a pool it failed to start or update itself).
    public static func describe(_ change: PoolChange) -> String {
        switch change {
        case .add(let settings): "pool \(settings.name) added"
        case .update(let settings, resized: true):
            "pool \(settings.name) resized to \(settings.limits.minResources)..\(settings.limits.maxResources)"
        case .update(let settings, resized: false): "pool \(settings.name) updated"
        case .replace(let settings): "pool \(settings.name) replaced"
        case .remove(let name): "pool \(name) removed (draining)"
        }
    }

    /// The lines for everything but pools, after the pools' own.
    public var otherChanges: [String] {
        var lines: [String] = []
        if jobsChanged { lines.append("named jobs updated (\(applied.jobs.count))") }
        if controlSocketChanged { lines.append("control_socket change takes effect after a restart") }
        if queuesChanged { lines.append("[[queue]] changes take effect after a restart") }
        if metricsListenChanged {
            lines.append(applied.metrics.listen.map { "metrics listening on \($0)" } ?? "metrics listener stopped")
        }
        if accessChanged { lines.append("[access] updated") }
        return lines
    }
}
