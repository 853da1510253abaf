import ControlProtocol
import DaemonRuntime
import ExecPools
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import PostgresPools
import SQLitePools
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the daemon does to a pool whatever its kind: observe it, pause, resize, drain, close.
package protocol PoolControl: Sendable {
    var snapshot: PoolSnapshot { get }
    var limits: PoolLimits { get }
    func pause()
    func resume()
    func resize(min: Int, max: Int) throws(PoolError)
    func update(_ limits: PoolLimits) throws(PoolError)
    func beginDrain()
    @discardableResult func drain() async -> Bool
    func close() async
    func beginClose()
    func run() async
    func waitForFirstOpenAttempt() async throws
}

extension Pool: PoolControl {}

/// One configured pool as the daemon runs it: the generic pool of its kind, its statistics.
package final class ManagedPool: Sendable {
    typealias SQLitePool = Pool<SQLiteBackend, ContinuousClock>
    typealias PostgresPool = Pool<PostgresBackend, ContinuousClock>
    typealias ExecPool = Pool<ExecBackend, ContinuousClock>

    /// The pool, typed by its kind, for running jobs.
    enum Engine: Sendable {
        case sqlite(SQLitePool)
        case postgres(PostgresPool)
        case exec(ExecPool)
    }

    let name: String
    let kind: PoolKind
    let engine: Engine
    /// The same pool, for everything but jobs.
    package let pool: any PoolControl
    let statistics = PoolStatistics()
    /// The pool's Prometheus collectors, looked up once rather than by name on every job.
    let collectors: DaemonMetrics.PoolCollectors
    /// An exec pool's spawning thread (see `ExecBackend`); nil for other kinds.
    package let dedicated: ThreadExecutor?
    /// Where this pool's jobs run: the event loop of the control server, of PostgreSQL
    /// connections and of workers' pipes, which never blocks; for SQLite, that loop until a
    /// job holds a connection, then the connection's own thread (`SQLiteThreads`).
    package let executor: (any TaskExecutor)?
    private let current: Mutex<PoolSettings>
    /// Jobs admitted from control connections and not answered yet (see `admit`).
    private let admitted = Atomic<Int>(0)

    /// - Parameter reaper: for exec pools, the keeper of their workers' groups (see
    ///   `WorkerReaper`), started on first use.
    init(
        settings: PoolSettings, loops: any EventLoopGroup, metrics: DaemonMetrics, exec supervision: ExecSupervision,
        files: (any TaskExecutor)?, logger: Logger
    ) throws(PoolError) {
        self.name = settings.name
        self.collectors = metrics.collectors(for: settings.name)
        self.kind = settings.kind
        self.current = Mutex(settings)
        self.rules = Mutex(JobRules(settings, limits: settings.limits))
        let name = settings.name
        let onEvent: @Sendable (PoolEvent) -> Void = { event in ManagedPool.log(event, pool: name, logger: logger) }
        switch settings.backend {
        case .sqlite(let sqlite):
            let threads = SQLiteThreads(lobby: loops.next())
            self.dedicated = nil
            self.executor = threads
            let pool = SQLitePool(
                name: settings.name,
                limits: settings.limits,
                backend: SQLiteBackend(path: sqlite.path, busyTimeout: sqlite.busyTimeout, pool: settings.name, threads: threads),
                clock: ContinuousClock(),
                onEvent: onEvent)
            self.engine = .sqlite(pool)
            self.pool = pool
        case .postgres(let postgres):
            let loop = loops.next()
            self.dedicated = nil
            self.executor = EventLoopExecutor(loop: loop)
            var pgLogger = logger
            pgLogger[metadataKey: "pool"] = "\(name)"
            let backend = try PostgresBackend(
                settings: postgres,
                group: loop,
                logger: pgLogger,
                credentialsDirectory: getenv("CREDENTIALS_DIRECTORY").map { String(cString: $0) },
                files: files)
            let pool = PostgresPool(
                name: settings.name, limits: settings.limits, backend: backend, clock: ContinuousClock(), onEvent: onEvent)
            self.engine = .postgres(pool)
            self.pool = pool
        case .exec(let exec):
            // Jobs talk to workers over pipes on the event loop. One thread spawns them, and
            // lives until the last one is reaped: the parent-death signal is tied to it.
            let refused = "the system refused; raise the unit's TasksMax= (or ulimit -u)"
            guard let spawner = ThreadExecutor() else {
                throw PoolError(.backend, "pool \"\(settings.name)\": cannot start a thread to spawn workers: \(refused)")
            }
            guard let watcher = supervision.exitWatcher() else {
                spawner.shutdown(join: false)
                throw PoolError(.backend, "pool \"\(settings.name)\": cannot start a thread to watch workers exit: \(refused)")
            }
            let loop = loops.next()
            self.dedicated = spawner
            self.executor = EventLoopExecutor(loop: loop)
            supervision.orphans.adopt()
            let backend = ExecBackend(
                settings: exec, pool: settings.name, logger: logger, loop: loop, spawner: spawner, reaper: supervision.reaper(),
                orphans: supervision.orphans, watcher: watcher)
            let pool = ExecPool(name: settings.name, limits: settings.limits, backend: backend, clock: ContinuousClock(), onEvent: onEvent)
            self.engine = .exec(pool)
            self.pool = pool
        }
    }

    var settings: PoolSettings { current.withLock { $0 } }

    /// What every job reads on its way in, kept apart from `settings` so that reading it
    /// copies no strings (and takes neither the settings' lock nor the pool's).
    struct JobRules: Sendable {
        var jobTimeout: Duration
        var maxJobTimeout: Duration
        var allowAdhoc: Bool
        /// `max` + `max_waiters`: how many jobs `admit` lets in at once.
        var admissions: Int

        init(_ settings: PoolSettings, limits: PoolLimits) {
            jobTimeout = settings.jobTimeout
            maxJobTimeout = settings.maxJobTimeout
            allowAdhoc = settings.allowAdhoc
            admissions = limits.maxResources + limits.maxWaiters
        }
    }

    private let rules: Mutex<JobRules>

    var jobRules: JobRules { rules.withLock { $0 } }

    /// Admits one job, or refuses it with `overloaded` once `max` + `max_waiters` jobs are
    /// admitted and unanswered. Checked on the control connection as the request is read,
    /// before a task exists for it: a burst is refused before anything is allocated for it.
    /// Admitted jobs go straight to the pool, whose own `max_waiters` bound then holds.
    func admit() -> PoolError? {
        let count = admitted.wrappingAdd(1, ordering: .relaxed).newValue
        guard count > rules.withLock({ $0.admissions }) else { return nil }
        admitted.wrappingSubtract(1, ordering: .relaxed)
        statistics.record(.overloaded, JobTiming(), acquired: false, ran: false)
        let limits = pool.limits
        return PoolError(
            .overloaded,
            "pool \"\(name)\" already has \(count - 1) jobs running or waiting (max = \(limits.maxResources), max_waiters = "
                + "\(limits.maxWaiters)); retry later, or raise max_waiters or max"
        )
    }

    /// The end of a job `admit` let in.
    package func leave() {
        admitted.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Whether a reload can apply `new` to this pool live (same kind and backend target).
    func canApplyLive(_ new: PoolSettings) -> Bool {
        settings.backend == new.backend
    }

    /// Applies reloaded limits and timeouts; leased resources are not disturbed.
    func apply(_ new: PoolSettings) throws(PoolError) {
        try pool.update(new.limits)
        current.withLock { $0 = new }
        rules.withLock { $0 = JobRules(new, limits: new.limits) }
    }

    /// `resize`: new `min` and `max`, live.
    func resize(min: Int, max: Int) throws(PoolError) {
        try pool.resize(min: min, max: max)
        let limits = pool.limits
        rules.withLock { $0.admissions = limits.maxResources + limits.maxWaiters }
    }

    /// Runs statements on one leased connection. `leased` is called once it holds one.
    /// `adhoc`: a client's own SQL (sandboxed on SQLite), not a named job's.
    func execute(_ statements: [SQLStatement], transaction: Bool, adhoc: Bool, stop: StopSignal, leased: @Sendable () -> Void) async throws
        -> [StatementResult]
    {
        switch engine {
        case .exec:
            throw PoolError(.badRequest, "pool \"\(name)\" is an exec pool: send \"input\", not \"sql\" or \"batch\"")
        case .sqlite(let pool):
            return try await pool.withResource(stoppedBy: stop) { connection in
                leased()
                return try await connection.run(statements, transaction: transaction, adhoc: adhoc, stop: stop)
            }
        case .postgres(let pool):
            return try await Self.withLiveResource(pool, stop: stop, isDead: \.isClosed) { session in
                leased()
                return try await session.run(statements, transaction: transaction, stop: stop)
            }
        }
    }

    /// Runs a durable job's statements and its fenced completion as one pipeline, in one
    /// transaction (`PostgresSession.runCompleting`). PostgreSQL pools only.
    func executeCompleting(
        _ statements: [SQLStatement], completion: (sql: String, params: [String?]), stop: StopSignal, leased: @Sendable () -> Void
    ) async throws -> [StatementResult] {
        guard case .postgres(let pool) = engine else {
            throw PoolError(.badConfig, "pool \"\(name)\" is a \(kind.rawValue) pool; a durable queue's store must be a postgres pool")
        }
        return try await Self.withLiveResource(pool, stop: stop, isDead: \.isClosed) { session in
            leased()
            return try await session.runCompleting(statements, completion: completion, stop: stop)
        }
    }

    /// `body` with a connection of this PostgreSQL pool (durable queues' enqueues).
    func withPostgresSession<R>(stop: StopSignal, _ body: (PostgresSession) async throws -> R) async throws -> R {
        guard case .postgres(let pool) = engine else {
            throw PoolError(.badConfig, "pool \"\(name)\" is a \(kind.rawValue) pool; a durable queue's store must be a postgres pool")
        }
        return try await Self.withLiveResource(pool, stop: stop, isDead: \.isClosed, body)
    }

    /// Runs one exec job: `input` to a worker, its output back. `leased` is called once a
    /// worker is held. A worker is replaced after a failure, a stop, or `max_jobs_per_worker`
    /// jobs (the backend's `isBroken` and `shouldRetire`).
    func run(
        input: JSONValue, job: Int64, durable: (job: Int64, attempt: Int)? = nil, stop: StopSignal, leased: @Sendable () -> Void
    ) async throws -> JSONValue {
        guard case .exec(let pool) = engine else {
            throw PoolError(.badRequest, "pool \"\(name)\" is a \(kind.rawValue) pool: send \"sql\" or \"batch\", not \"input\"")
        }
        return try await Self.withLiveResource(pool, stop: stop, isDead: \.process.hasExited) { worker in
            leased()
            return try await worker.run(input: input, id: job, durable: durable, stop: stop)
        }
    }

    /// `withResource`, skipping resources found dead when handed out (a connection the server
    /// closed while it sat idle, a worker that exited): each is replaced, and the job takes the
    /// next one rather than failing on it.
    private static func withLiveResource<Backend: PoolBackend, R>(
        _ pool: Pool<Backend, ContinuousClock>, stop: StopSignal, isDead: (Backend.Resource) -> Bool,
        _ body: (Backend.Resource) async throws -> R
    ) async throws -> R {
        var attempts = 0
        while true {
            do {
                return try await pool.withResource(stoppedBy: stop) { resource in
                    if isDead(resource) { throw DeadResource() }
                    return try await body(resource)
                }
            } catch is DeadResource where attempts < pool.limits.maxResources {
                attempts += 1
            }
        }
    }

    static func log(_ event: PoolEvent, pool: String, logger: Logger) {
        switch event {
        case .openFailed(let failure, let retryIn):
            logger.warning(
                "pool open failed",
                metadata: ["pool": "\(pool)", "error": "\(failure.message)", "retry_in": "\(retryIn.elapsedDescription)"])
        case .degraded(let failure):
            logger.error("pool degraded", metadata: ["pool": "\(pool)", "error": "\(failure.message)", "event": "pool_degraded"])
        case .recovered:
            logger.notice("pool recovered", metadata: ["pool": "\(pool)", "event": "pool_recovered"])
        case .healthCheckFailed(let failure):
            logger.warning("health check failed", metadata: ["pool": "\(pool)", "error": "\(failure.message)"])
        case .drained:
            logger.info("pool drained", metadata: ["pool": "\(pool)"])
        case .closed:
            logger.info("pool closed", metadata: ["pool": "\(pool)"])
        }
    }
}

/// A pooled resource found dead when a job took it; the backend's `isBroken` replaces it.
package struct DeadResource: Error, CustomStringConvertible {
    package var description: String { "every resource the pool handed out had died while idle" }
}
