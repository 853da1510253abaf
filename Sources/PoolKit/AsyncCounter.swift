import DequeModule
import Synchronization

/// A count that tasks wait on, the one waiting primitive of poold: for room under a limit
/// (`enter`, back-pressure) or for zero (`waitForZero`: everything answered, every answer
/// written). A `Latch` is a count of one that only goes down.
///
/// Waiting for zero is cancellation-aware: a cancelled waiter throws `CancellationError`, so
/// that a wait can be raced against a deadline (`withTimeout`) or another event (`firstOf`).
public final class AsyncCounter: Sendable {
    private struct State: Sendable {
        var count: Int
        /// Tasks waiting in `enter` for the count to drop below the limit, oldest first.
        var entering: Deque<CheckedContinuation<Void, Never>> = []
        /// Tasks waiting for zero, by ticket (so that a cancelled one can take itself out).
        var zero: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        /// Tasks waiting for zero whatever their cancellation.
        var settling: [CheckedContinuation<Void, Never>] = []
        var nextTicket: UInt64 = 0
    }

    /// `enter` waits while the count is at this.
    public let limit: Int
    private let state: Mutex<State>

    public init(count: Int = 0, limit: Int = .max) {
        self.limit = limit
        self.state = Mutex(State(count: count))
    }

    public var count: Int { state.withLock { $0.count } }

    /// Tasks waiting in `enter`.
    public var waitingToEnter: Int { state.withLock { $0.entering.count } }

    /// Counts one more without waiting, if under the limit.
    public func tryEnter() -> Bool {
        state.withLock { state in
            guard state.count < limit else { return false }
            state.count += 1
            return true
        }
    }

    /// Counts one more, waiting while the count is at the limit. Without suspending when there
    /// is room (the common case): a continuation that resumes at once still costs the task a
    /// trip through its executor. Not cancellation-aware: room comes when something `leave`s,
    /// and a waiter that went away would leave its count behind.
    public func enter() async {
        if tryEnter() { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.count < limit {
                    state.count += 1
                    return true
                }
                state.entering.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    /// Counts one less: the oldest task waiting in `enter` takes the place at once; at zero,
    /// every task waiting for zero resumes. Below zero it stays at zero (a `Latch` opened twice).
    @Sendable
    public func leave() {
        let (next, zero, settled) = state.withLock { state in
            if let next = state.entering.popFirst() {
                return (Optional(next), [CheckedContinuation<Void, any Error>](), [CheckedContinuation<Void, Never>]())
            }
            state.count = max(0, state.count - 1)
            guard state.count == 0 else { return (nil, [], []) }
            defer {
                state.zero.removeAll()
                state.settling.removeAll()
            }
            return (nil, Array(state.zero.values), state.settling)
        }
        next?.resume()
        for waiter in zero { waiter.resume() }
        for waiter in settled { waiter.resume() }
    }

    /// Returns once the count is zero (at once if it is). Throws `CancellationError` if the task
    /// is cancelled first.
    public func waitForZero() async throws {
        let ticket = state.withLock { state -> UInt64 in
            defer { state.nextTicket += 1 }
            return state.nextTicket
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result = state.withLock { state -> Result<Void, any Error>? in
                    if state.count == 0 { return .success(()) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.zero[ticket] = continuation
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            state.withLock { $0.zero.removeValue(forKey: ticket) }?.resume(throwing: CancellationError())
        }
    }
}

extension AsyncCounter {
    /// Returns once the count is zero, whatever the task's cancellation: for a wait that must
    /// end before what it guards is reused (cancels still on their way to a server).
    public func waitForZeroIgnoringCancellation() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.count == 0 { return true }
                state.settling.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// A one-shot gate: `wait()` returns once `open()` has been called, at once if it already was.
/// A count of one that only goes down (`AsyncCounter`).
public final class Latch: Sendable {
    private let pending = AsyncCounter(count: 1)

    public init() {}

    public var isOpen: Bool { pending.count == 0 }

    /// Opens the gate; opening it again does nothing.
    public func open() { pending.leave() }

    /// Returns once the gate is open. Throws `CancellationError` if the task is cancelled first.
    public func wait() async throws { try await pending.waitForZero() }
}

/// Returns when the first of `events` returns, cancelling the others. Throws if that one threw
/// (`CancellationError` if the task was cancelled: cancellation-aware events throw it).
public func firstOf(
    _ events: (@Sendable () async throws -> Void)...,
    isolation: isolated (any Actor)? = #isolation
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for event in events { group.addTask { try await event() } }
        defer { group.cancelAll() }
        _ = try await group.next()
    }
}
