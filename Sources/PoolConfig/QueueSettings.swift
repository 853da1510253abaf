/// One `[[queue]]`: a durable queue whose jobs live in a PostgreSQL pool's database and run on
/// whichever poold pointed at that database has free concurrency (docs/QUEUES.md).
///
/// Equality ignores `line`, as for `PoolSettings`.
public struct QueueSettings: Sendable, Equatable {
    /// What a queue's job runs as.
    public enum Work: Sendable, Equatable {
        /// A named `[[job]]` on a SQL pool, with the enqueued job's `params`.
        case job(String)
        /// An exec pool; the worker gets the enqueued job's `input`, its `job_id` and `attempt`.
        case pool(String)
    }

    /// Unique among queues; letters, digits, `_` and `-`, at most 64 characters.
    public var name: String
    /// The postgres pool whose database holds the queue's tables.
    public var store: String
    public var work: Work
    /// Jobs of this queue run at once on this host, at most.
    public var concurrency: Int
    /// The default for jobs enqueued without `max_attempts`.
    public var maxAttempts: Int
    /// One attempt's limit; a job past it is stopped, rolled back, and counts as failed.
    public var timeout: Duration
    /// Finished jobs (completed, discarded, cancelled) are deleted this long after they finished.
    public var retention: Duration
    /// The PostgreSQL schema of the queue's tables.
    public var schema: String
    /// The line of its `[[queue]]` header (0 when built in code).
    public var line: Int

    public static let defaultConcurrency = 8
    public static let defaultMaxAttempts = 20
    public static let defaultTimeout: Duration = .seconds(300)
    public static let defaultRetention: Duration = .seconds(24 * 3600)
    public static let defaultSchema = "poold"

    public init(
        name: String, store: String, work: Work, concurrency: Int = defaultConcurrency, maxAttempts: Int = defaultMaxAttempts,
        timeout: Duration = defaultTimeout, retention: Duration = defaultRetention, schema: String = defaultSchema, line: Int = 0
    ) {
        self.name = name
        self.store = store
        self.work = work
        self.concurrency = concurrency
        self.maxAttempts = maxAttempts
        self.timeout = timeout
        self.retention = retention
        self.schema = schema
        self.line = line
    }

    public static func == (lhs: QueueSettings, rhs: QueueSettings) -> Bool {
        lhs.name == rhs.name && lhs.store == rhs.store && lhs.work == rhs.work && lhs.concurrency == rhs.concurrency
            && lhs.maxAttempts == rhs.maxAttempts && lhs.timeout == rhs.timeout && lhs.retention == rhs.retention
            && lhs.schema == rhs.schema
    }
}
