import DaemonRuntime
import Synchronization

/// The jobs one connection has in flight, so that a disconnect cancels them — including one
/// that registers after the disconnect.
package final class ConnectionJobs: Sendable {
    private struct State {
        var jobs: [Int64: StopSignal] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    package init() {}

    /// Whether the client has gone: nothing sent from now on can be answered.
    package var isClosed: Bool { state.withLock { $0.closed } }

    func add(_ job: Int64, _ signal: StopSignal) {
        let closed = state.withLock { state -> Bool in
            if !state.closed { state.jobs[job] = signal }
            return state.closed
        }
        if closed { signal.fire(.disconnected) }
    }

    func remove(_ job: Int64) {
        state.withLock { _ = $0.jobs.removeValue(forKey: job) }
    }

    /// The client is gone: every job in flight is stopped, and every later one at once.
    package func cancelAll() {
        let signals = state.withLock { state -> [StopSignal] in
            state.closed = true
            return Array(state.jobs.values)
        }
        for signal in signals { signal.fire(.disconnected) }
    }
}
