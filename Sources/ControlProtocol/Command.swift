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
    /// One job (`isBatch` false) or a `jobs` batch, enqueued in one transaction.
    case enqueue(jobs: [DurableJobRequest], isBatch: Bool)
    case jobStatus(jobID: Int64)
    case jobCancel(jobID: Int64)
    case queues

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
        case .enqueue: .enqueue
        case .jobStatus: .jobStatus
        case .jobCancel: .jobCancel
        case .queues: .queues
        }
    }
}

/// One job for `enqueue`, its fields checked for type and range. Whether the queue exists and
/// takes `params` (a SQL job) or `input` (an exec pool) is checked by the daemon.
public struct DurableJobRequest: Sendable, Hashable {
    public var queue: String
    /// The job's parameters as sent (an array of scalars and `{"base64": …}` blobs), and as read.
    public var params: JSONValue?
    public var paramValues: [SQLValue]
    public var input: JSONValue?
    /// RFC 3339, as sent; nil: now.
    public var runAt: String?
    public var priority: Int
    public var uniqueKey: String?
    public var maxAttempts: Int?

    public init(
        queue: String, params: JSONValue? = nil, paramValues: [SQLValue] = [], input: JSONValue? = nil, runAt: String? = nil,
        priority: Int = 0, uniqueKey: String? = nil, maxAttempts: Int? = nil
    ) {
        self.queue = queue
        self.params = params
        self.paramValues = paramValues
        self.input = input
        self.runAt = runAt
        self.priority = priority
        self.uniqueKey = uniqueKey
        self.maxAttempts = maxAttempts
    }

    /// At most this many jobs in one `enqueue`.
    public static let maxBatch = 1000
    public static let priorities = -1000...1000
    public static let maxAttemptsRange = 1...1000
    public static let maxUniqueKeyBytes = 256
}
