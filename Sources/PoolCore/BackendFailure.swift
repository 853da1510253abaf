/// Why a backend could not open or check a resource, as the pool needs to know it.
///
/// The message is the backend's own words (e.g. PostgreSQL's), already free of secrets:
/// it reaches logs, `status` and client errors verbatim.
public struct BackendFailure: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Might work on the next attempt (connection refused, reset, timed out).
        case transient
        /// The backend refused our credentials: retrying soon will not help, and waiters
        /// must hear "authentication failed", not a timeout.
        case authentication
        /// The configuration cannot work (no such database file, bad command, permission denied).
        case misconfigured
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind = .transient, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// A transient failure.
    public init(_ message: String) {
        self.init(.transient, message)
    }

    public var description: String { message }
}

/// A backend may throw a `BackendFailure` directly; the pool then keeps its kind.
extension BackendFailure: Error {}
