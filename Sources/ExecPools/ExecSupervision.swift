import Logging
import Synchronization

/// What outlives a single exec pool: the keeper of workers' process groups (`WorkerReaper`),
/// started with the first exec pool, and what workers let go (`Orphans`). Both end with poold.
package final class ExecSupervision: Sendable {
    /// What exec workers let go and poold adopted (see `Orphans`).
    package let orphans = Orphans()
    /// Started with the first exec pool; nil until then, or if it failed.
    private let keeper = Mutex<(started: Bool, reaper: WorkerReaper?)>((false, nil))
    /// Started with the first exec pool; nil until then, or if the system refused a thread.
    private let exits = Mutex<ExitWatcher?>(nil)
    private let logger: Logger

    package init(logger: Logger) {
        self.logger = logger
    }

    /// The keeper of exec workers' groups, started on first use. Without it (it could not be
    /// started: logged) workers still die with poold; what they started may not.
    package func reaper() -> WorkerReaper? {
        let (reaper, failure) = keeper.withLock { slot -> (WorkerReaper?, String?) in
            if slot.started { return (slot.reaper, nil) }
            slot.started = true
            switch WorkerReaper.start() {
            case .success(let reaper):
                slot.reaper = reaper
                orphans.spawned(reaper.pid)
                return (reaper, nil)
            case .failure(let error):
                return (nil, error.description)
            }
        }
        if let failure {
            logger.error("processes exec workers start may outlive poold if it is killed", metadata: ["error": "\(failure)"])
        }
        return reaper
    }

    /// The watcher of exec workers' exits, started on first use; nil if the system refuses
    /// it a thread (the pool cannot start then).
    package func exitWatcher() -> ExitWatcher? {
        exits.withLock { watcher in
            if watcher == nil { watcher = ExitWatcher() }
            return watcher
        }
    }

    /// Reaps the orphans that ended and has the reaper watch the others' groups.
    package func tend() {
        orphans.tend(reaper: keeper.withLock { $0.reaper })
    }

    /// Once every pool is closed: kills what workers left behind (how many), ends the reaper.
    package func finish() -> Int {
        let killed = orphans.killAll()
        keeper.withLock { $0.reaper }?.stop()
        exits.withLock { $0 }?.stop()
        return killed
    }
}
