import Logging
import PoolConfig
import PoolCore
import SystemdKit

#if canImport(Glibc)
    import Glibc
#endif

/// What a reload came to.
package enum ReloadOutcome: Sendable {
    case applied([String])
    case invalid(ConfigError)
    /// poold is stopping: a reload could start pools that stopping would never close.
    case refused
}

/// Reloading the config: SIGHUP, the `reload` op.
extension DaemonContext {
    /// Re-reads the config file; applies it if valid, keeps the old one otherwise.
    package func reload() async -> ReloadOutcome {
        let path = config.path
        switch lifecycle.handle({ $0.reloadBegan() }) {
        case .refuseReload:
            logger.warning("reload refused: poold is stopping", metadata: ["event": "reload_failed"])
            return .refused
        case .notifyReloading:
            Systemd.reloading()
        default:
            break
        }
        logger.notice("reloading", metadata: ["config": "\(path)", "event": "reloading"])
        let outcome: ReloadOutcome
        do {
            let new = try await withTaskExecutorPreference(factory.files) { () throws(ConfigError) -> Config in
                try ConfigLoader.load(path: path)
            }
            // First what can still fail: an address the endpoint cannot listen on leaves
            // everything as it was.
            if new.metrics != config.metrics { try await metricsEndpoint?.move(to: new.metrics, file: path) }
            outcome = .applied(apply(new))
        } catch {
            outcome = .invalid(error)
        }
        let at = wallClockRFC3339()
        switch outcome {
        case .applied, .refused: recordReload(ReloadRecord(at: at, ok: true, error: nil))
        case .invalid(let error): recordReload(ReloadRecord(at: at, ok: false, error: error.description))
        }
        if lifecycle.handle({ $0.reloadEnded() }) == .notifyReady {
            Systemd.notify("READY=1", "STATUS=\(statusLine())")
        }
        switch outcome {
        case .applied(let changes):
            logger.notice("reloaded", metadata: ["changes": "\(changes.joined(separator: "; "))", "event": "reloaded"])
        case .invalid(let error):
            logger.error("reload failed; keeping the old config", metadata: ["error": "\(error.description)", "event": "reload_failed"])
        case .refused:
            break
        }
        return outcome
    }

    /// Applies a validated config (`ConfigDiff`): new pools start, removed ones drain and
    /// close, changed limits apply live; in-flight jobs are not disturbed.
    private func apply(_ new: Config) -> [String] {
        var running = config
        running.pools = pools.all.map(\.settings)
        let diff = ConfigDiff(running: running, new: new)
        var changes: [String] = []
        for change in diff.pools {
            switch change {
            case .add(let settings):
                changes.append(start(settings).map { "pool \(settings.name) not added: \($0.message)" } ?? ConfigDiff.describe(change))
            case .update(let settings, _):
                do {
                    try pools.named(settings.name)?.apply(settings)
                    changes.append(ConfigDiff.describe(change))
                } catch {
                    changes.append("pool \(settings.name) not updated: \(error.message)")
                }
            case .replace(let settings):
                pools.retire(settings.name)
                changes.append(start(settings).map { "pool \(settings.name) removed: \($0.message)" } ?? ConfigDiff.describe(change))
            case .remove(let name):
                pools.retire(name)
                changes.append(ConfigDiff.describe(change))
            }
        }
        changes += diff.otherChanges
        install(diff.applied, authorizer: Authorizer(config: diff.applied))
        return changes
    }

    /// Starts a pool; nil, or why it could not start.
    private func start(_ settings: PoolSettings) -> PoolError? {
        do {
            pools.add(try factory.make(settings))
            return nil
        } catch {
            return error
        }
    }
}

/// Now on the wall clock, as RFC 3339 UTC (`2026-11-25T14:03:07Z`).
package func wallClockRFC3339() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var seconds = time_t(now.tv_sec)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    let date = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    return "\(date)T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
