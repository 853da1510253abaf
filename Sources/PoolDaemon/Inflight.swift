import Synchronization

/// Requests of all connections not yet answered; shutdown waits for them.
final class Inflight: Sendable {
    private struct State {
        var count = 0
        var finals = 0
        var zeroWaiters: [CheckedContinuation<Void, Never>] = []
        var finalWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.count } }

    func begin(final: Bool) {
        state.withLock { if final { $0.finals += 1 } else { $0.count += 1 } }
    }

    func end(final: Bool) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if final {
                state.finals -= 1
                guard state.finals == 0 else { return [] }
                defer { state.finalWaiters.removeAll() }
                return state.finalWaiters
            }
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.zeroWaiters.removeAll() }
            return state.zeroWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitForZero() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.count == 0 { return true }
                state.zeroWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func waitForFinalReplies() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.finals == 0 { return true }
                state.finalWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
