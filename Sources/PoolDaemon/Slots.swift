import Synchronization

/// Back-pressure: at most `limit` requests in flight on one connection; beyond it the
/// connection is not read until an answer goes out.
final class Slots: Sendable {
    private struct State {
        var used = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    /// Slots in use: requests read whose answers the socket has not taken yet.
    var used: Int { state.withLock { $0.used } }

    /// Takes a slot without suspending when one is free (the common case): a continuation
    /// that resumes at once still costs the task a trip through its executor.
    func acquire() async {
        let taken = state.withLock { state -> Bool in
            guard state.used < limit else { return false }
            state.used += 1
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.used < limit {
                    state.used += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    @Sendable
    func release() {
        let (next, idle) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [CheckedContinuation<Void, Never>]) in
            if state.waiters.isEmpty {
                state.used -= 1
                guard state.used == 0 else { return (nil, []) }
                defer { state.idleWaiters.removeAll() }
                return (nil, state.idleWaiters)
            }
            return (state.waiters.removeFirst(), [])  // the slot passes straight to the next reader
        }
        next?.resume()
        for waiter in idle { waiter.resume() }
    }

    /// Returns once no slot is in use: every answer has been handed to the socket.
    func waitUntilIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                if state.used == 0 { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }
}
