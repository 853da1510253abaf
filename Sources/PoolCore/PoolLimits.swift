/// The rules a pool enforces. Validated by whoever builds it (the config loader);
/// `validate()` says what is wrong in words an operator can act on.
public struct PoolLimits: Sendable, Hashable {
    /// Resources kept open even when nobody needs them.
    public var minResources: Int
    /// Resources open at once, counting those being opened or closed: the hard bound.
    public var maxResources: Int
    /// Lease requests allowed to wait; one more is refused with `overloaded`.
    public var maxWaiters: Int
    /// How long a lease request may wait before it fails with `pool_timeout`.
    public var acquireTimeout: Duration
    /// Idle resources above `minResources` are closed after this long unused; nil: never.
    public var idleTimeout: Duration?
    /// A resource older than this is closed when it is next released or while idle; never while leased.
    public var maxLifetime: Duration?
    /// A resource idle longer than this is health-checked before it is handed out; nil: never.
    public var healthCheckAfter: Duration?
    /// Delay before the first retry of a failed open; doubles per consecutive failure.
    public var backoffInitial: Duration
    /// The most the retry delay grows to.
    public var backoffMax: Duration
    /// Fraction of each delay drawn at random (±), so many pools do not retry in step.
    public var backoffJitter: Double
    /// Consecutive transient open failures after which the pool is `degraded`.
    public var degradedAfter: Int

    public init(
        minResources: Int = 0,
        maxResources: Int = 8,
        maxWaiters: Int = 1024,
        acquireTimeout: Duration = .seconds(5),
        idleTimeout: Duration? = .seconds(300),
        maxLifetime: Duration? = .seconds(3600),
        healthCheckAfter: Duration? = nil,
        backoffInitial: Duration = .milliseconds(100),
        backoffMax: Duration = .seconds(30),
        backoffJitter: Double = 0.2,
        degradedAfter: Int = 3
    ) {
        self.minResources = minResources
        self.maxResources = maxResources
        self.maxWaiters = maxWaiters
        self.acquireTimeout = acquireTimeout
        self.idleTimeout = idleTimeout
        self.maxLifetime = maxLifetime
        self.healthCheckAfter = healthCheckAfter
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.backoffJitter = backoffJitter
        self.degradedAfter = degradedAfter
    }

    /// The first rule these limits break, as a sentence naming the key; nil when valid.
    public func validate() -> String? {
        if maxResources < 1 { return "max must be at least 1 (got \(maxResources))" }
        if minResources < 0 { return "min must not be negative (got \(minResources))" }
        if minResources > maxResources { return "min (\(minResources)) must not exceed max (\(maxResources))" }
        if maxWaiters < 0 { return "max_waiters must not be negative (got \(maxWaiters))" }
        if acquireTimeout <= .zero { return "acquire_timeout must be positive" }
        if let t = idleTimeout, t <= .zero { return "idle_timeout must be positive" }
        if let t = maxLifetime, t <= .zero { return "max_lifetime must be positive" }
        if let t = healthCheckAfter, t < .zero { return "health_check_after must not be negative" }
        if backoffInitial <= .zero || backoffMax < backoffInitial {
            return "backoff must be positive, and its maximum no less than its first delay"
        }
        if !(0...1).contains(backoffJitter) { return "backoff jitter must be between 0 and 1" }
        if degradedAfter < 1 { return "degraded_after must be at least 1" }
        return nil
    }

    /// The retry delay after `failures` consecutive failed opens, before jitter.
    public func backoff(afterFailures failures: Int) -> Duration {
        var delay = backoffInitial
        var n = 1
        while n < failures && delay < backoffMax {
            delay *= 2
            n += 1
        }
        return min(delay, backoffMax)
    }
}
