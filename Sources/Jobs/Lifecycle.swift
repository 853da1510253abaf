import PoolCore
import PoolKit
import Synchronization

/// The daemon's lifecycle (`DaemonLifecycle`, pure) and the moments others wait for: stopping
/// has begun, the grace was skipped, every job has been answered. Shared by the signal watcher,
/// the control server and `drain --stop`.
package final class Lifecycle: Sendable {
    private let machine = Mutex(DaemonLifecycle())
    private let stopBegan = Latch()
    private let graceSkipped = Latch()
    private let stopped = Latch()

    package init() {}

    package var state: DaemonLifecycle.State { machine.withLock { $0.state } }
    package var acceptsJobs: Bool { machine.withLock { $0.acceptsJobs } }
    package var isGraceSkipped: Bool { graceSkipped.isOpen }

    /// Feeds the machine one event; opens the latches its action calls for, and returns the
    /// action for the caller to carry out the rest (systemd, logging).
    package func handle(_ event: (inout DaemonLifecycle) -> DaemonLifecycle.Action) -> DaemonLifecycle.Action {
        let action = machine.withLock { event(&$0) }
        switch action {
        case .beginStopping: stopBegan.open()
        case .skipGrace: graceSkipped.open()
        case .none, .notifyReady, .notifyReloading, .reloadQuietly, .refuseReload: break
        }
        return action
    }

    /// Every job has been answered; `drain --stop` may now reply.
    package func everyJobAnswered() {
        machine.withLock { $0.everyJobAnswered() }
        stopped.open()
    }

    /// Returns once stopping has begun. Throws `CancellationError` if the task is cancelled first.
    package func waitForStopRequest() async throws { try await stopBegan.wait() }
    /// Returns when a stop signal skips the grace. Throws `CancellationError` if the task is
    /// cancelled first (it is raced against the grace's end).
    package func waitForGraceSkipped() async throws { try await graceSkipped.wait() }
    /// Returns once every job has been answered. Throws `CancellationError` if the task is
    /// cancelled first.
    package func waitUntilStopped() async throws { try await stopped.wait() }
}
