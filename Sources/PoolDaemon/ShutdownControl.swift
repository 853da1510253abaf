import Synchronization

/// The steps of stopping, shared by the signal watcher, the control server and
/// `drain --stop`: a stop request (first SIGTERM), skipping the grace (second SIGTERM), and
/// the moment every job has been answered.
final class ShutdownControl: Sendable {
    private let stopRequested = Latch()
    private let stopped = Latch()
    private let graceSkipped = Atomic<Bool>(false)

    var isStopRequested: Bool { stopRequested.isOpen }
    var isGraceSkipped: Bool { graceSkipped.load(ordering: .acquiring) }

    func requestStop() { stopRequested.open() }
    func skipGrace() { graceSkipped.store(true, ordering: .releasing) }
    /// Every job has been answered; `drain --stop` may now reply.
    func markStopped() { stopped.open() }

    func waitForStopRequest() async { await stopRequested.wait() }
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
