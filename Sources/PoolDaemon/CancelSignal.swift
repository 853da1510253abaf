import PoolCore
import PoolKit
import Synchronization

/// Why a job was stopped from outside.
enum StopReason: Sendable, Hashable {
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

    /// The reason once fired; nil if the waiting task is cancelled first.
    func wait() async -> StopReason? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StopReason?, Never>) in
                let fired = state.withLock { state -> StopReason?? in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return nil
                }
                if let fired { continuation.resume(returning: fired) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<StopReason?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}

/// The job was stopped by `cancel`, a disconnect or shutdown.
struct JobStopped: OutcomeClassified, Sendable {
    var reason: StopReason
    var outcome: JobOutcome { .cancelled }
}

/// Runs a job's body with its time limit and its cancel signal, whichever comes first.
///
/// Either one cancels the body and waits for it to unwind (leases returned, transactions
/// rolled back) before throwing `TimeoutError` or `JobStopped`. A body that completes anyway
/// returns its result.
func withJobScope<R: Sendable, C: Clock>(
    limit: Duration,
    clock: C,
    signal: CancelSignal,
    _ body: @escaping @Sendable () async throws -> R
) async throws -> R where C.Duration == Duration {
    try await withThrowingTaskGroup(of: JobScopeEvent<R>.self) { group in
        group.addTask {
            do {
                return .finished(.success(try await body()))
            } catch {
                return .finished(.failure(error))
            }
        }
        group.addTask {
            do {
                try await clock.sleep(for: limit)
                return .timeUp
            } catch {
                return .ignored
            }
        }
        group.addTask {
            guard let reason = await signal.wait() else { return .ignored }
            return .stopped(reason)
        }
        var stop: (any Error)?
        while let event = try await group.next() {
            switch event {
            case .finished(let result):
                group.cancelAll()
                if let stop, case .failure = result { throw stop }
                return try result.get()
            case .timeUp:
                if stop == nil { stop = TimeoutError(limit: limit) }
                group.cancelAll()
            case .stopped(let reason):
                if stop == nil { stop = JobStopped(reason: reason) }
                group.cancelAll()
            case .ignored:
                break
            }
        }
        throw stop ?? CancellationError()
    }
}

enum JobScopeEvent<R: Sendable>: Sendable {
    case finished(Result<R, any Error>)
    case timeUp
    case stopped(StopReason)
    case ignored
}
