/// What a request asks for, with every field validated for type and shape. Checks that
/// need the daemon's state (does the pool exist, is `timeout_ms` within the pool's
/// `max_job_timeout`, does the parameter count match the placeholders) happen later.
public enum Command: Sendable, Hashable {
    case ping, status, pools, metrics, reload
    case jobs(pool: String?)
    case stats(pool: String?)
    /// `statements` has one element unless `isBatch`; `transaction` defaults to false.
    case runSQL(pool: String, statements: [SQLStatement], isBatch: Bool, transaction: Bool, timeoutMs: Int64?)
    case runNamed(job: String, params: [SQLValue], timeoutMs: Int64?)
    case runExec(pool: String, input: JSONValue, timeoutMs: Int64?)
    case cancel(job: Int64)
    /// nil pool: every pool.
    case pause(pool: String?)
    case resume(pool: String?)
    /// At least one of `min` and `max` is set; both are non-negative.
    case resize(pool: String, min: Int?, max: Int?)
    case drain(pool: String?, stop: Bool)

    public var op: Op {
        switch self {
        case .ping: .ping
        case .status: .status
        case .pools: .pools
        case .metrics: .metrics
        case .reload: .reload
        case .jobs: .jobs
        case .stats: .stats
        case .runSQL, .runNamed, .runExec: .run
        case .cancel: .cancel
        case .pause: .pause
        case .resume: .resume
        case .resize: .resize
        case .drain: .drain
        }
    }
}
