import PoolCore

public enum PoolKind: String, Sendable, Equatable, CaseIterable {
    case sqlite, postgres, exec
}

/// One `[[pool]]`.
///
/// Equality ignores `line`: a pool that only moved within the file is the same pool, and a
/// reload must not restart it.
public struct PoolSettings: Sendable, Equatable {
    /// Limits a pool gets for every key the file leaves out.
    public static let defaultLimits = PoolLimits(
        minResources: 1,
        maxResources: 4,
        maxWaiters: 1024,
        acquireTimeout: .seconds(5),
        idleTimeout: .seconds(300),
        maxLifetime: .seconds(3600),
        healthCheckAfter: nil
    )

    /// Unique; letters, digits, `_` and `-`, at most 64 characters.
    public var name: String
    /// Always `backend.kind`.
    public var kind: PoolKind
    public var limits: PoolLimits
    /// `job_timeout`: what a job gets when it asks for no timeout; at most `maxJobTimeout`.
    public var jobTimeout: Duration
    /// `max_job_timeout`: the most a request may ask for.
    public var maxJobTimeout: Duration
    /// `allow_adhoc`: whether clients may send their own SQL (or input, for exec pools)
    /// rather than only run named jobs.
    public var allowAdhoc: Bool
    public var backend: BackendSettings
    /// The line of its `[[pool]]` header (0 when built in code).
    public var line: Int

    public init(
        name: String,
        limits: PoolLimits = PoolSettings.defaultLimits,
        jobTimeout: Duration = .seconds(30),
        maxJobTimeout: Duration = .seconds(300),
        allowAdhoc: Bool = false,
        backend: BackendSettings,
        line: Int = 0
    ) {
        self.name = name
        self.kind = backend.kind
        self.limits = limits
        self.jobTimeout = jobTimeout
        self.maxJobTimeout = maxJobTimeout
        self.allowAdhoc = allowAdhoc
        self.backend = backend
        self.line = line
    }

    public static func == (lhs: PoolSettings, rhs: PoolSettings) -> Bool {
        lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.limits == rhs.limits
            && lhs.jobTimeout == rhs.jobTimeout && lhs.maxJobTimeout == rhs.maxJobTimeout
            && lhs.allowAdhoc == rhs.allowAdhoc && lhs.backend == rhs.backend
    }
}

/// The kind-specific part of a pool.
public enum BackendSettings: Sendable, Equatable {
    case sqlite(SQLiteSettings)
    case postgres(PostgresSettings)
    case exec(ExecSettings)

    public var kind: PoolKind {
        switch self {
        case .sqlite: .sqlite
        case .postgres: .postgres
        case .exec: .exec
        }
    }
}

public struct SQLiteSettings: Sendable, Equatable {
    /// The database file; relative paths are relative to poold's working directory.
    public var path: String
    /// How long a statement waits for another writer's lock before failing; zero: not at all.
    public var busyTimeout: Duration

    public init(path: String, busyTimeout: Duration = .seconds(5)) {
        self.path = path
        self.busyTimeout = busyTimeout
    }
}

public struct PostgresSettings: Sendable, Equatable {
    /// `postgres://user[:password]@host[:port][/database][?sslmode=…]` (or `postgresql://`).
    /// May hold a password (a warning); never log it as is: use `redactedURL`.
    public var url: String
    /// `password_file`: a file whose first line is the password.
    public var passwordFile: String?
    /// `credential`: a name under `$CREDENTIALS_DIRECTORY` (systemd's LoadCredential=).
    /// Mutually exclusive with `passwordFile`.
    public var credential: String?
    public var applicationName: String
    public var connectTimeout: Duration

    public init(
        url: String,
        passwordFile: String? = nil,
        credential: String? = nil,
        applicationName: String = "poold",
        connectTimeout: Duration = .seconds(10)
    ) {
        self.url = url
        self.passwordFile = passwordFile
        self.credential = credential
        self.applicationName = applicationName
        self.connectTimeout = connectTimeout
    }

    /// The url with any password replaced by `***`: the only form fit for logs and status.
    public var redactedURL: String { redactURL(url) }

    /// The url taken apart (percent-decoding applied); nil only for a url the loader would
    /// have refused.
    public var components: PostgresURL? { try? PostgresURL.parse(url).get() }
}

public struct ExecSettings: Sendable, Equatable {
    /// The worker's argv; `command[0]` is the program. Never empty.
    public var command: [String]
    /// A worker is replaced after this many jobs. At least 1.
    public var maxJobsPerWorker: Int
    /// How long a worker gets between SIGTERM and SIGKILL; zero: SIGKILL at once.
    public var killGrace: Duration

    public init(command: [String], maxJobsPerWorker: Int = 1000, killGrace: Duration = .seconds(2)) {
        self.command = command
        self.maxJobsPerWorker = maxJobsPerWorker
        self.killGrace = killGrace
    }
}

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
