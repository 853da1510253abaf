import PoolCore
import PoolKit
import Synchronization

/// Why a job was stopped from outside.
package enum StopReason: Sendable, Hashable {
    /// The job ran past its timeout.
    case timeout
    /// `cancel` op (by whom).
    case cancelled(by: String)
    /// The client closed its connection.
    case disconnected
    /// The daemon is stopping and the job outlived the grace.
    case shutdown
}

/// A one-shot signal that stops one job: fired by its deadline, `cancel`, a disconnect or
/// shutdown. Whatever the job waits on at that moment registers how to stop it (`onStop`):
/// leaving the pool's queue, or interrupting the running statement.
package final class StopSignal: StopSource {
    private struct State {
        var reason: StopReason?
        var action: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    package init() {}

    package var reason: StopReason? { state.withLock { $0.reason } }

    /// Fires the signal; the first reason wins, and the current stop action runs.
    package func fire(_ reason: StopReason) {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            return state.action
        }
        action?()
    }

    package func onStop(_ action: (@Sendable () -> Void)?) {
        let now = state.withLock { state -> (@Sendable () -> Void)? in
            state.action = action
            return state.reason == nil ? nil : action
        }
        now?()
    }
}

/// The job was stopped by `cancel`, a disconnect or shutdown.
package struct JobStopped: OutcomeClassified, Sendable {
    package var reason: StopReason
    package var outcome: JobOutcome { .cancelled }
}

/// Runs a job's body in the job's own task; its signal stops it from outside (no extra task,
/// no timer per job: deadlines are enforced by `JobRegistry.expire`, one ticker for all).
///
/// When the body ends with an error after the signal fired, the error is the stop's:
/// `TimeoutError` for a deadline, `JobStopped` otherwise. By then the body has unwound (lease
/// returned, transaction rolled back). A body that completes anyway returns its result.
package func withJobScope<R>(
    limit: Duration,
    signal: StopSignal,
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> R
) async throws -> R {
    do {
        return try await body()
    } catch {
        switch signal.reason {
        case .timeout?: throw TimeoutError(limit: limit)
        case let reason?: throw JobStopped(reason: reason)
        case nil:
            // The job's task was cancelled (its connection's task group ends when the client
            // goes, which may come before the close is seen): the job was stopped, not failed.
            if Task.isCancelled { throw JobStopped(reason: .disconnected) }
            throw error
        }
    }
}
