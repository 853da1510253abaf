#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import ServiceLifecycle
import SystemdKit
import UnixSignals

extension Daemon {
    /// Runs poold until it has stopped: one `ServiceGroup` with the signal watcher, the pool
    /// supervisor and the control server. Graceful shutdown goes in reverse: the control server
    /// answers or stops every job, then the pools close, then the watcher ends.
    public func run() async throws {
        let started = ContinuousClock.now
        logger.notice("starting", metadata: ["config": "\(config.path)", "version": "\(Self.version)", "event": "started"])
        let server = ControlServer(daemon: self, group: loops)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: SignalWatcher(daemon: self)),
                .init(service: JobTimer(jobs: jobs, loops: loops)),
                .init(service: StatusReporter(daemon: self)),
                .init(service: PoolSupervisor(daemon: self)),
                .init(service: server),
            ],
            logger: logger
        ))
        var failure: (any Error)?
        await withDiscardingTaskGroup { tasks in
            tasks.addTask {
                await self.lifecycle.waitForStopRequest()
                await group.triggerGracefulShutdown()
            }
            do {
                try await group.run()
            } catch {
                failure = error
            }
            requestStop(by: .request)  // releases the stop waiter if the group ended for another reason
        }
        for pool in pools.all + pools.retired { pool.dedicated?.shutdown(join: true) }
        let orphaned = orphans.killAll()
        if orphaned > 0 {
            logger.notice("killed processes exec workers had let go", metadata: ["processes": "\(orphaned)"])
        }
        stopWorkerReaper()
        files?.shutdown(join: false)
        try? await loops.shutdownGracefully()
        let leaked = (pools.all + pools.retired).reduce(0) { $0 + $1.pool.snapshot.open }
        let totals = self.totals
        let elapsed = (stopStarted ?? started).duration(to: .now)
        logger.notice("stopped after \(elapsed.elapsedDescription): \(totals.finished) jobs finished, \(totals.cancelled) cancelled, \(leaked) leaked", metadata: ["event": "stopped"])
        if let failure { throw failure }
    }
}

/// Now on the wall clock, as RFC 3339 UTC (`2026-11-25T14:03:07Z`).
func wallClockRFC3339() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var seconds = time_t(now.tv_sec)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
