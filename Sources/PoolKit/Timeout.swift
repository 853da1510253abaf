import PoolCore

/// A scope ran past its time limit and was stopped.
public struct TimeoutError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The limit that was exceeded, as configured.
    public let limit: Duration

    public init(limit: Duration) {
        self.limit = limit
    }

    public var description: String { "exceeded \(limit.limitDescription)" }
}

/// Runs `body`, cancelling it when `limit` has passed on `clock`.
///
/// When the time is up the body is cancelled and this waits for it to unwind (its own scopes
/// release what they hold: leases, transactions) before throwing `TimeoutError`. A body that
/// still finishes successfully after the cancellation returns its result: it did complete.
/// Cancellation of the caller is not a timeout: it is rethrown as the body's error.
public func withTimeout<R: Sendable, C: Clock>(
    _ limit: Duration,
    clock: C,
    isolation: isolated (any Actor)? = #isolation,
    _ body: @Sendable () async throws -> R
) async throws -> R where C.Duration == Duration {
    return try await withoutActuallyEscaping(body) { body in
        try await withThrowingTaskGroup(of: TimeoutRace<R>.self) { group in
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
                    return .timerCancelled
                }
            }
            var timedOut = false
            while let event = try await group.next() {
                switch event {
                case .finished(let result):
                    group.cancelAll()
                    if timedOut, case .failure = result {
                        throw TimeoutError(limit: limit)
                    }
                    return try result.get()
                case .timeUp:
                    timedOut = true
                    group.cancelAll()
                case .timerCancelled:
                    break
                }
            }
            preconditionFailure("withTimeout's body task ended without a result")
        }
    }
}

/// `withTimeout` on the continuous clock.
public func withTimeout<R: Sendable>(
    _ limit: Duration,
    isolation: isolated (any Actor)? = #isolation,
    _ body: @Sendable () async throws -> R
) async throws -> R {
    try await withTimeout(limit, clock: ContinuousClock(), body)
}

/// What finished first inside `withTimeout`: the body, or the timer.
enum TimeoutRace<R: Sendable>: Sendable {
    case finished(Result<R, any Error>)
    case timeUp
    case timerCancelled
}
