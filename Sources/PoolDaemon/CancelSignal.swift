import PoolCore
import PoolKit
import Synchronization

/// Why a job was stopped from outside.
enum StopReason: Sendable, Hashable {
    /// The job's body finished by itself (not a stop).
    case finished
    /// The job ran past its timeout.
    case timeout
    /// `cancel` op (by whom).
    case cancelled(by: String)
    /// The client closed its connection.
    case disconnected
    /// The daemon is stopping and the job outlived the grace.
    case shutdown
}

/// A one-shot signal that stops one job: fired by `cancel`, a disconnect or shutdown,
/// awaited inside the job's scope.
final class CancelSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var waiter: CheckedContinuation<StopReason?, Never>?
    }

    private let state = Mutex(State())

    var reason: StopReason? { state.withLock { $0.reason } }

    /// Fires the signal; the first reason wins.
    func fire(_ reason: StopReason) {
        let waiter = state.withLock { state -> CheckedContinuation<StopReason?, Never>? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: reason)
    }

    /// The reason, once fired. Not cancellation-aware: the job's body always fires the signal
    /// when it ends, and cancelling the waiter cancels that body.
    func waitUntilFired() async -> StopReason {
        await withCheckedContinuation { (continuation: CheckedContinuation<StopReason?, Never>) in
            let fired = state.withLock { state -> StopReason? in
                if let reason = state.reason { return reason }
                state.waiter = continuation
                return nil
            }
            if let fired { continuation.resume(returning: fired) }
        } ?? .finished
    }
}

/// The job was stopped by `cancel`, a disconnect or shutdown.
struct JobStopped: OutcomeClassified, Sendable {
    var reason: StopReason
    var outcome: JobOutcome { .cancelled }
}

/// Runs a job's body until it finishes or its signal fires (timeout, `cancel`, disconnect,
/// shutdown), whichever comes first.
///
/// The body runs as the one child task; this task waits on the signal, which the body fires
/// itself when it finishes. A stop cancels the body and waits for it to unwind (leases
/// returned, transactions rolled back) before throwing `TimeoutError` or `JobStopped`; a body
/// that completes anyway returns its result. Deadlines are enforced by `JobRegistry.expire`,
/// one ticker for all jobs, not a timer per job.
func withJobScope<R: Sendable>(
    limit: Duration,
    signal: CancelSignal,
    _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    try await withThrowingTaskGroup(of: R.self) { group in
        group.addTask {
            defer { signal.fire(.finished) }
            return try await body()
        }
        let reason = await signal.waitUntilFired()
        if reason != .finished { group.cancelAll() }
        guard let result = await group.nextResult() else { throw CancellationError() }
        switch (reason, result) {
        case (_, .success(let value)):
            return value
        case (.finished, .failure(let error)):
            throw error
        case (.timeout, .failure):
            throw TimeoutError(limit: limit)
        case (let reason, .failure):
            throw JobStopped(reason: reason)
        }
    }
}
