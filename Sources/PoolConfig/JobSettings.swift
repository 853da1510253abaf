/// One `[[job]]`: a named job clients run by name, with parameters.
///
/// Equality ignores `line`, as for `PoolSettings`.
public struct JobSettings: Sendable, Equatable {
    /// Unique among jobs; letters, digits, `_` and `-`, at most 64 characters.
    public var name: String
    /// The name of a configured pool.
    public var pool: String
    /// One statement, or several run in order as a batch. Empty for jobs on exec pools,
    /// whose input comes with each request.
    public var sql: [String]
    /// At most the pool's `max_job_timeout`; nil: the pool's `job_timeout`.
    public var timeout: Duration?
    /// Whether the statement or batch runs inside BEGIN … COMMIT. SQL pools only.
    public var transaction: Bool
    /// The line of its `[[job]]` header (0 when built in code).
    public var line: Int

    public init(
        name: String,
        pool: String,
        sql: [String] = [],
        timeout: Duration? = nil,
        transaction: Bool = false,
        line: Int = 0
    ) {
        self.name = name
        self.pool = pool
        self.sql = sql
        self.timeout = timeout
        self.transaction = transaction
        self.line = line
    }

    public static func == (lhs: JobSettings, rhs: JobSettings) -> Bool {
        lhs.name == rhs.name && lhs.pool == rhs.pool && lhs.sql == rhs.sql && lhs.timeout == rhs.timeout
            && lhs.transaction == rhs.transaction
    }
}
