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
    /// `require_auth`: how the server may ask poold to authenticate; nil: any way.
    public var requireAuth: RequireAuth?

    public init(
        url: String,
        passwordFile: String? = nil,
        credential: String? = nil,
        applicationName: String = "poold",
        connectTimeout: Duration = .seconds(10),
        requireAuth: RequireAuth? = nil
    ) {
        self.url = url
        self.passwordFile = passwordFile
        self.credential = credential
        self.applicationName = applicationName
        self.connectTimeout = connectTimeout
        self.requireAuth = requireAuth
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

    /// `max_output`: the longest answer line a worker may write, in bytes.
    public var maxOutput: Int
    /// `working_directory`: where workers start; nil: poold's own.
    public var workingDirectory: String?
    /// `environment`: the workers' environment, beside PATH, LANG and HOME (poold's own
    /// environment never reaches them).
    public var environment: [String: String]

    public static let defaultMaxOutput = 1 << 20

    public init(
        command: [String], maxJobsPerWorker: Int = 1000, killGrace: Duration = .seconds(2),
        maxOutput: Int = ExecSettings.defaultMaxOutput, workingDirectory: String? = nil, environment: [String: String] = [:]
    ) {
        self.command = command
        self.maxJobsPerWorker = maxJobsPerWorker
        self.killGrace = killGrace
        self.maxOutput = maxOutput
        self.workingDirectory = workingDirectory
        self.environment = environment
    }
}
