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

    /// `health_check_after` for postgres pools that do not set it.
    public static let postgresHealthCheckAfter: Duration = .seconds(30)

    /// Unique; letters, digits, `_` and `-`, at most 64 characters.
    public var name: String
    /// Always `backend.kind`.
    public var kind: PoolKind
    public var limits: PoolLimits
    /// `job_timeout`: what a job gets when it asks for no timeout; at most `maxJobTimeout`.
    public var jobTimeout: Duration
    /// `max_job_timeout`: the most a request may ask for.
    public var maxJobTimeout: Duration
    /// `allow_adhoc`: whether clients may send their own SQL rather than only run named jobs.
    /// SQL pools only: an exec pool's `input` is its job, and any submitter may send it.
    public var allowAdhoc: Bool
    public var backend: BackendSettings
    /// The line of its `[[pool]]` header (0 when built in code).
    public var line: Int

    public init(
        name: String,
        limits: PoolLimits = PoolSettings.defaultLimits,
        jobTimeout: Duration = PoolSettings.defaultJobTimeout,
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

    /// `job_timeout` when the config leaves it out (capped at `max_job_timeout`).
    public static let defaultJobTimeout: Duration = .seconds(30)

    public static func == (lhs: PoolSettings, rhs: PoolSettings) -> Bool {
        lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.limits == rhs.limits
            && lhs.jobTimeout == rhs.jobTimeout && lhs.maxJobTimeout == rhs.maxJobTimeout
            && lhs.allowAdhoc == rhs.allowAdhoc && lhs.backend == rhs.backend
    }
}
