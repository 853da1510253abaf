import CSpawn
import ControlSocket
import DaemonRuntime
import DaemonServices
import ExecPools
import Jobs
import Logging
import MetricsHTTP
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import ServiceLifecycle
import SystemdKit

#if canImport(Glibc)
    import Glibc
#endif

/// The composition root: builds the pools, the router and the services from a config, runs
/// them in one `ServiceGroup` until poold has stopped, and unwinds what they leave.
///
/// Graceful shutdown goes in reverse of the services' order: the control server answers or
/// stops every job and closes every connection, then the pools close, then the rest end.
public final class Daemon: Sendable {
    public static let version = DaemonContext.version
    /// `0.1.0 (commit 1a2b3c4d5e6f)`: what `--version` prints.
    public static let versionDescription = "\(DaemonContext.version) (commit \(DaemonContext.commit))"

    let config: Config
    let logger: Logger

    public init(config: Config, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Runs poold until it has stopped. Throws `PoolError` if a pool cannot be built at start,
    /// `ConfigError` if the metrics endpoint cannot listen where the config says.
    public func run() async throws {
        let started = ContinuousClock.now
        Self.prepareProcess(config: config, logger: logger)
        logger.notice(
            "starting",
            metadata: ["config": "\(config.path)", "version": "\(Self.version)", "commit": "\(DaemonContext.commit)", "event": "started"])
        // The event loop of the control server, the job timer, every PostgreSQL connection
        // and every worker's pipes; shut down once everything on it has ended.
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { loops in
            var served: DaemonContext?
            defer { if let served { logStopped(served, started: started) } }
            // What the daemon holds beside the services, released newest first on every path.
            try await withResourceStack { stack in
                // Where config and password files are read: a thread of its own, so that a file
                // system that is slow or stuck holds up neither the event loop nor the cooperative pool.
                let files = ThreadExecutor()
                stack.push("the file thread") { files?.shutdown(join: false) }
                let exec = ExecSupervision(logger: logger)
                stack.push("what exec workers left behind") { [logger] in
                    let orphaned = exec.finish()
                    if orphaned > 0 {
                        logger.notice("killed processes exec workers had let go", metadata: ["processes": "\(orphaned)"])
                    }
                }
                let factory = PoolFactory(loops: loops, metrics: DaemonMetrics(), exec: exec, files: files, logger: logger)
                let context = DaemonContext(config: config, factory: factory)
                stack.push("exec pools' spawning threads") {
                    for pool in context.pools.all + context.pools.retired { pool.dedicated?.shutdown(join: true) }
                }
                // Bound before anything else starts: an address poold cannot listen on is a
                // config error, at its line, and poold exits.
                let endpoint = MetricsServer(context: context, loops: loops, clock: ContinuousClock())
                stack.push("the metrics endpoint") { endpoint.stop() }
                try await endpoint.start(config.metrics, file: config.path)
                context.attach(endpoint)
                for settings in config.pools { context.pools.add(try factory.make(settings)) }
                let queues = try QueueRunner(config: config, context: context)
                context.attach(queues)
                served = context
                try await serve(context, loops: loops, endpoint: endpoint, queues: queues)
            }
        }
    }

    /// The last line poold logs.
    private func logStopped(_ context: DaemonContext, started: ContinuousClock.Instant) {
        let leaked = (context.pools.all + context.pools.retired).reduce(0) { $0 + $1.pool.snapshot.open }
        let totals = context.totals
        let elapsed = (context.stopStarted ?? started).duration(to: .now)
        let counts = "\(totals.finished) jobs finished, \(totals.cancelled) cancelled, \(leaked) leaked"
        logger.notice("stopped after \(elapsed.elapsedDescription): \(counts)", metadata: ["event": "stopped"])
    }

    /// The services, until the group has stopped. A stop request (signal, `drain --stop`)
    /// triggers the group's graceful shutdown; `maximumGracefulShutdownDuration` is the
    /// backstop should any service not end by itself: past it, the group cancels them.
    private func serve(
        _ context: DaemonContext, loops: MultiThreadedEventLoopGroup, endpoint: MetricsServer<ContinuousClock>, queues: QueueRunner
    ) async throws {
        let router = JobRouter(context: context)
        let server = ControlServer(router: router, loops: loops, clock: ContinuousClock())
        let grace = config.daemon.shutdownGrace
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: SignalWatcher(context: context)),
                .init(service: JobTimer(jobs: context.jobs, loops: loops)),
                .init(service: StatusReporter(context: context)),
                .init(service: PoolSupervisor(context: context)),
                // After the pools: the queues hand their jobs back before the pools close.
                .init(service: QueueService(runner: queues)),
                // After the control server: it stops later, so /healthz says 503 while jobs finish.
                .init(service: endpoint),
                .init(service: server),
            ],
            logger: logger
        )
        configuration.maximumGracefulShutdownDuration = .init(grace + StopTimes.longestClose + .seconds(10))
        let group = ServiceGroup(configuration: configuration)
        try await withThrowingDiscardingTaskGroup { tasks in
            tasks.addTask {
                do {
                    try await context.lifecycle.waitForStopRequest()
                    await group.triggerGracefulShutdown()
                } catch {}  // the group ended first
            }
            defer {
                // Releases the stop waiter if the group ended for another reason.
                context.requestStop(by: .request)
            }
            try await group.run()
        }
    }

    /// What the process needs before anything starts.
    private static func prepareProcess(config: Config, logger: Logger) {
        // A worker that exits makes writes to its stdin fail with EPIPE instead of killing poold.
        signal(SIGPIPE, SIG_IGN)
        // Big results and answers (up to 16 MiB) come from their own mappings and go back to
        // the system when freed. glibc's default raises this threshold after each such free,
        // after which they are carved from per-thread arenas (one per SQLite connection) and
        // stay resident there: 40 MB more after a few rounds of 4 MB answers, never returned.
        _ = cspawn_set_mmap_threshold(1 << 20)
        FileLimit.raise(config: config, logger: logger)
    }
}
