import PoolCore
import Synchronization

/// The daemon's lifecycle (`DaemonLifecycle`, pure) and the moments others wait for: stopping
/// has begun, the grace was skipped, every job has been answered. Shared by the signal watcher,
/// the control server and `drain --stop`.
final class Lifecycle: Sendable {
    private let machine = Mutex(DaemonLifecycle())
    private let stopBegan = Latch()
    private let graceSkipped = Latch()
    private let stopped = Latch()

    var state: DaemonLifecycle.State { machine.withLock { $0.state } }
    var acceptsJobs: Bool { machine.withLock { $0.acceptsJobs } }
    var isGraceSkipped: Bool { graceSkipped.isOpen }

    /// Feeds the machine one event; opens the latches its action calls for, and returns the
    /// action for the caller to carry out the rest (systemd, logging).
    func handle(_ event: (inout DaemonLifecycle) -> DaemonLifecycle.Action) -> DaemonLifecycle.Action {
        let action = machine.withLock { event(&$0) }
        switch action {
        case .beginStopping: stopBegan.open()
        case .skipGrace: graceSkipped.open()
        case .none, .notifyReady, .notifyReloading, .reloadQuietly, .refuseReload: break
        }
        return action
    }

    /// Every job has been answered; `drain --stop` may now reply.
    func everyJobAnswered() {
        machine.withLock { $0.everyJobAnswered() }
        stopped.open()
    }

    func waitForStopRequest() async { await stopBegan.wait() }
    /// Returns when a second stop signal skips the grace, or early if the task is cancelled.
    func waitForGraceSkipped() async { await graceSkipped.waitUnlessCancelled() }
    func waitUntilStopped() async { await stopped.wait() }
}

/// A one-shot gate: `wait()` returns once `open()` has been called, at once if it already was.
/// Not cancellation-aware on purpose: what waits on it ends with the daemon, not with a task.
final class Latch: Sendable {
    private struct State {
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var cancellable: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    var isOpen: Bool { state.withLock { $0.isOpen } }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.isOpen = true
            defer {
                state.waiters.removeAll()
                state.cancellable.removeAll()
            }
            return state.waiters + state.cancellable.values
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let open = state.withLock { state -> Bool in
                if state.isOpen { return true }
                state.waiters.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }

    /// Like `wait()`, but returns early if the task is cancelled.
    func waitUnlessCancelled() async {
        let id = state.withLock { state -> Int in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.isOpen || Task.isCancelled { return true }
                    state.cancellable[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.cancellable.removeValue(forKey: id) }?.resume()
        }
    }
}
