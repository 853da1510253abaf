public import PoolCore

/// What a pool needs from a kind of resource (SQLite connection, PostgreSQL connection,
/// worker process). The pool decides when; the backend knows how.
public protocol PoolBackend: Sendable {
    associatedtype Resource: Sendable

    /// Opens one resource. Throw a `BackendFailure` to say what kind of failure it was
    /// (an authentication failure degrades the pool at once); any other error counts as transient.
    func open() async throws -> Resource

    /// Proves an idle resource still works before it is handed out. Throwing closes it.
    func healthCheck(_ resource: Resource) async throws

    /// Closes a resource. Runs even while the pool is being cancelled, so it must not give up
    /// on cancellation: a resource that is not closed here is leaked.
    func close(_ resource: Resource) async

    /// Whether a job that threw `error` while holding `resource` left it unusable, so that it
    /// is closed and replaced instead of going back to the pool.
    func isBroken(_ resource: Resource, after error: any Error) -> Bool

    /// Whether a resource that just served a job successfully should be closed and replaced
    /// rather than go back to the pool (a worker past `max_jobs_per_worker`).
    func shouldRetire(_ resource: Resource) -> Bool
}

extension PoolBackend {
    public func healthCheck(_ resource: Resource) async throws {}

    public func isBroken(_ resource: Resource, after error: any Error) -> Bool {
        error is ResourceBroken
    }

    public func shouldRetire(_ resource: Resource) -> Bool { false }

    /// The pool's view of an error `open` or `healthCheck` threw.
    public func failure(from error: any Error) -> BackendFailure {
        if let failure = error as? BackendFailure { return failure }
        return BackendFailure(.transient, String(describing: error))
    }
}

/// Thrown by a job (or wrapped by a backend's `isBroken`) to say the resource it held must
/// not be reused: the pool closes it and opens a replacement.
public struct ResourceBroken: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "resource broken: \(reason)" }
}

/// Things worth logging that happen inside a pool, reported outside its lock.
public enum PoolEvent: Sendable, Equatable {
    case openFailed(BackendFailure, retryIn: Duration)
    case degraded(BackendFailure)
    case recovered
    case healthCheckFailed(BackendFailure)
    case drained
    case closed
}

/// Stops a job from outside its task, without cancelling the task: a timeout, a `cancel`
/// request. Whatever the job is waiting on registers how to stop it (`onStop`); a stop that
/// already happened runs the action at once. Waiting for a lease registers its removal from
/// the queue, so the wait ends with `CancellationError`.
public protocol StopSource: Sendable {
    /// Sets the action a stop runs (nil: none); runs it now if the stop already happened.
    func onStop(_ action: (@Sendable () -> Void)?)
}
