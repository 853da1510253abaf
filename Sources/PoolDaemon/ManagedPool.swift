import ControlProtocol
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import Synchronization

/// One configured pool as the daemon runs it: the generic pool, its backend, its statistics.
final class ManagedPool: Sendable {
    typealias SQLitePool = Pool<SQLiteBackend, ContinuousClock>

    let name: String
    let kind: PoolKind
    let pool: SQLitePool
    let statistics = PoolStatistics()
    let threads: NIOThreadPool
    /// Where this pool's jobs run, so their SQL executes inline on a thread of its own.
    let executor: DedicatedExecutor
    private let current: Mutex<PoolSettings>

    init(settings: PoolSettings, threads: NIOThreadPool, logger: Logger) throws(PoolError) {
        guard case .sqlite(let sqlite) = settings.backend else {
            throw PoolError(.badConfig, "pool \"\(settings.name)\": \(settings.kind.rawValue) pools are not supported by this build yet")
        }
        self.name = settings.name
        self.kind = settings.kind
        self.threads = threads
        // As many threads as the pool has connections, but no more than the machine has cores:
        // SQLite reads are CPU-bound, and extra threads only add hand-offs (measured: 40-44 µs
        // of CPU per point read with 2 threads on 2 cores, 50-56 µs with 4).
        self.executor = DedicatedExecutor(name: settings.name, threads: min(settings.limits.maxResources, max(System.coreCount, 2), 32))
        self.current = Mutex(settings)
        let name = settings.name
        self.pool = Pool(
            name: settings.name,
            limits: settings.limits,
            backend: SQLiteBackend(path: sqlite.path, busyTimeout: sqlite.busyTimeout, threads: threads),
            clock: ContinuousClock()
        ) { event in
            ManagedPool.log(event, pool: name, logger: logger)
        }
    }

    var settings: PoolSettings { current.withLock { $0 } }

    /// Whether a reload can apply `new` to this pool live (same kind and backend target).
    func canApplyLive(_ new: PoolSettings) -> Bool {
        settings.backend == new.backend
    }

    /// Applies reloaded limits and timeouts; leased resources are not disturbed.
    func apply(_ new: PoolSettings) throws(PoolError) {
        try pool.update(new.limits)
        current.withLock { $0 = new }
    }

    /// Runs statements on one leased connection. `leased` is called once it holds one.
    func execute(_ statements: [SQLStatement], transaction: Bool, stop: CancelSignal, leased: @Sendable () -> Void) async throws -> [StatementResult] {
        try await pool.withResource(stoppedBy: stop) { connection in
            leased()
            return try await connection.run(statements, transaction: transaction, on: threads, stop: stop)
        }
    }

    static func log(_ event: PoolEvent, pool: String, logger: Logger) {
        switch event {
        case .openFailed(let failure, let retryIn):
            logger.warning("pool open failed", metadata: ["pool": "\(pool)", "error": "\(failure.message)", "retry_in": "\(retryIn.elapsedDescription)"])
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

/// The set of running pools, by name, in the order they were started.
final class PoolSet: Sendable {
    private let pools = Mutex<[ManagedPool]>([])
    private enum Work: Sendable {
        case run(ManagedPool)
        case retire(ManagedPool)
    }

    private let work: AsyncStream<Work>.Continuation
    private let queue: AsyncStream<Work>

    init() {
        (queue, work) = AsyncStream.makeStream(of: Work.self)
    }

    var all: [ManagedPool] { pools.withLock { $0 } }

    func named(_ name: String) -> ManagedPool? {
        pools.withLock { $0.first { $0.name == name } }
    }

    /// Adds a pool and has the supervisor run it.
    func add(_ pool: ManagedPool) {
        pools.withLock { $0.append(pool) }
        work.yield(.run(pool))
    }

    /// Takes a pool out of service: new jobs no longer find it; those queued and running
    /// finish, then it closes.
    @discardableResult
    func retire(_ name: String) -> ManagedPool? {
        let pool = pools.withLock { pools -> ManagedPool? in
            guard let index = pools.firstIndex(where: { $0.name == name }) else { return nil }
            return pools.remove(at: index)
        }
        if let pool { work.yield(.retire(pool)) }
        return pool
    }

    /// Runs every pool's background work as a child task, until `finish()` and every pool closed.
    func supervise() async {
        await withDiscardingTaskGroup { group in
            for await item in queue {
                switch item {
                case .run(let pool):
                    group.addTask { await pool.pool.run() }
                case .retire(let pool):
                    group.addTask {
                        await pool.pool.drain()
                        await pool.pool.close()
                        pool.executor.shutdown()
                    }
                }
            }
        }
    }

    /// No more pools will be added; `supervise()` returns once the running ones are closed.
    func finish() {
        work.finish()
    }
}
