/// The stable error codes of control protocol v1 (docs/PROTOCOL.md, "Error codes"). Clients switch on these
/// strings, so a case's raw value never changes once released.
public enum ErrorCode: String, Sendable, Hashable, CaseIterable, Codable {
    case badRequest = "bad_request"
    case unknownOp = "unknown_op"
    case unauthorized
    case noSuchPool = "no_such_pool"
    case noSuchJob = "no_such_job"
    case overloaded
    case poolTimeout = "pool_timeout"
    case timeout
    case cancelled
    case shuttingDown = "shutting_down"
    case sqlError = "sql_error"
    case backend
    case badConfig = "bad_config"
    case tooLarge = "too_large"

    /// Whether a client may safely send the same request again (later, or elsewhere).
    public var isRetryable: Bool {
        switch self {
        case .overloaded, .poolTimeout, .shuttingDown, .backend: true
        default: false
        }
    }
}

/// An error with a protocol code and a message that says what happened and what to do.
public struct PoolError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
