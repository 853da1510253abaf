import Synchronization

/// The two steps of stopping, shared by the signal watcher, the control server and
/// `drain --stop`: a stop request (first SIGTERM), and skipping the grace (second SIGTERM).
final class ShutdownControl: Sendable {
    private struct State {
        var stopRequested = false
        var graceSkipped = false
        var stopped = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var stoppedWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var isStopRequested: Bool { state.withLock { $0.stopRequested } }
    var isGraceSkipped: Bool { state.withLock { $0.graceSkipped } }

    func requestStop() {
        let waiters = state.withLock { state in
            state.stopRequested = true
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func skipGrace() {
        state.withLock { $0.graceSkipped = true }
    }

    /// Every job has been answered; `drain --stop` may now reply.
    func markStopped() {
        let waiters = state.withLock { state in
            state.stopped = true
            defer { state.stoppedWaiters.removeAll() }
            return state.stoppedWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Not cancellation-aware on purpose (like `waitUntilStopped`): it ends with the daemon.
    func waitForStopRequest() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.stopRequested { return true }
                state.stopWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.stopped { return true }
                state.stoppedWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
