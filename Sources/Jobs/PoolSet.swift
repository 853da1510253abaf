import DaemonRuntime
import ExecPools
import Logging
import NIOCore
import PoolConfig
import PoolCore
import PoolKit
import Synchronization

/// Builds the pools a config names, at start and on reload, with what they share: the event
/// loop, the metrics, the keeper of exec workers, the thread files are read on.
package struct PoolFactory: Sendable {
    package let loops: any EventLoopGroup
    package let metrics: DaemonMetrics
    package let exec: ExecSupervision
    package let files: ThreadExecutor?
    package let logger: Logger

    package init(loops: any EventLoopGroup, metrics: DaemonMetrics, exec: ExecSupervision, files: ThreadExecutor?, logger: Logger) {
        self.loops = loops
        self.metrics = metrics
        self.exec = exec
        self.files = files
        self.logger = logger
    }

    package func make(_ settings: PoolSettings) throws(PoolError) -> ManagedPool {
        try ManagedPool(
            settings: settings, loops: loops, metrics: metrics, exec: exec, files: files, logger: logger)
    }
}

/// The set of running pools, by name, in the order they were started.
package final class PoolSet: Sendable {
    private let pools = Mutex<[ManagedPool]>([])
    /// Pools a reload took out of service that have not closed yet: still holding resources,
    /// so stopping closes them too and counts what they leave.
    private let retiring = Mutex<[ManagedPool]>([])
    private enum Work: Sendable {
        case run(ManagedPool)
        case retire(ManagedPool)
    }

    private let work: AsyncStream<Work>.Continuation
    private let queue: AsyncStream<Work>

    init() {
        (queue, work) = AsyncStream.makeStream(of: Work.self)
    }

    package var all: [ManagedPool] { pools.withLock { $0 } }

    /// Pools retired by a reload and not closed yet.
    package var retired: [ManagedPool] { retiring.withLock { $0 } }

    func named(_ name: String) -> ManagedPool? {
        pools.withLock { $0.first { $0.name == name } }
    }

    /// Adds a pool and has the supervisor run it.
    package func add(_ pool: ManagedPool) {
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
        if let pool {
            retiring.withLock { $0.append(pool) }
            work.yield(.retire(pool))
        }
        return pool
    }

    /// Runs every pool's background work as a child task, until `finish()` and every pool closed.
    package func supervise() async {
        await withDiscardingTaskGroup { group in
            for await item in queue {
                switch item {
                case .run(let pool):
                    group.addTask { await pool.pool.run() }
                case .retire(let pool):
                    group.addTask {
                        await pool.pool.drain()
                        await pool.pool.close()
                        pool.dedicated?.shutdown(join: true)
                        self.retiring.withLock { $0.removeAll { $0 === pool } }
                    }
                }
            }
        }
    }

    /// Waits (at most `limit`) until every pool has made its first attempt to open: ready
    /// means usable, but a backend that is down must not hold readiness back — such a pool
    /// is reported degraded instead.
    package func waitForFirstAttempts<C: Clock>(limit: Duration = .seconds(2), clock: C) async where C.Duration == Duration {
        let pools = all
        try? await withTimeout(limit, clock: clock) {
            try await withThrowingDiscardingTaskGroup { group in
                for pool in pools {
                    group.addTask { try await pool.pool.waitForFirstOpenAttempt() }
                }
            }
        }
    }

    /// No more pools will be added; `supervise()` returns once the running ones are closed.
    package func finish() {
        work.finish()
    }
}
