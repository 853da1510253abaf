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
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
                await self.shutdown.waitForStopRequest()
                await group.triggerGracefulShutdown()
            }
            do {
                try await group.run()
            } catch {
                failure = error
            }
            beginStop()  // releases the stop waiter if the group ended for another reason
        }
        for pool in pools.all { pool.executor.shutdown() }
        try? await loops.shutdownGracefully()
        try? await threads.shutdownGracefully()
        let leaked = pools.all.reduce(0) { $0 + $1.pool.snapshot.open }
        let totals = self.totals
        let elapsed = (stopStarted ?? started).duration(to: .now)
        logger.notice("stopped after \(elapsed.elapsedDescription): \(totals.finished) jobs finished, \(totals.cancelled) cancelled, \(leaked) leaked", metadata: ["event": "stopped"])
        if let failure { throw failure }
    }
}

/// Runs every pool's background work; on shutdown, waits until the pools have closed.
struct PoolSupervisor: Service {
    let daemon: Daemon

    func run() async throws {
        await withGracefulShutdownHandler {
            await daemon.pools.supervise()
        } onGracefulShutdown: {
            daemon.beginStop()
            daemon.pools.finish()
        }
    }
}

/// Enforces every job's timeout: one ticker for all jobs (10 ms resolution) instead of a
/// timer per job, which would cost a timer registration on every request.
///
/// It also pings the systemd watchdog, at half its interval, and only as proof of life: the
/// ping comes from this ticker (the job-deadline machinery, on the cooperative pool) after
/// a round trip through the event loop that serves the control socket. If either is wedged
/// the pings stop and systemd restarts poold. Pool threads are not probed: a long statement
/// may rightly keep them busy for longer than the watchdog interval.
struct JobTimer: Service {
    static let tick = Duration.milliseconds(10)
    let jobs: JobRegistry
    let loops: MultiThreadedEventLoopGroup

    func run() async throws {
        let watchdog = Systemd.watchdogInterval.map { $0 / 2 }
        var lastPing = ContinuousClock.now
        if watchdog != nil { Systemd.notify("WATCHDOG=1") }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: Self.tick)
            let now = ContinuousClock.now
            jobs.expire(now: now)
            if let watchdog, lastPing.duration(to: now) >= watchdog {
                if (try? await loops.next().submit({}).get()) != nil {
                    Systemd.notify("WATCHDOG=1")
                }
                lastPing = now
            }
        }
    }
}

/// Keeps systemd's STATUS= current, at most once a second and only when it changed; while
/// stopping, extends the stop timeout so that a long shutdown_grace is not cut short.
struct StatusReporter: Service {
    let daemon: Daemon

    func run() async throws {
        var last = ""
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Woken at once by graceful shutdown, so a stop never waits for this tick.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            if Task.isShuttingDownGracefully { break }
            let line = daemon.statusLine()
            var message: [String] = []
            if line != last { message.append("STATUS=\(line)") }
            if daemon.state == .stopping {
                let grace = daemon.config.daemon.shutdownGrace
                message.append("EXTEND_TIMEOUT_USEC=\((grace + .seconds(5)).microseconds)")
            }
            if !message.isEmpty { Systemd.notify(message) }
            last = line
        }
    }
}

/// SIGTERM/SIGINT stop (a second one skips the grace); SIGHUP reloads.
struct SignalWatcher: Service {
    let daemon: Daemon

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        for await signal in signals.cancelOnGracefulShutdown() {
            switch signal {
            case .sighup:
                _ = await daemon.reload()
            default:
                daemon.logger.notice("signal received", metadata: ["signal": "\(signal)"])
                daemon.stopSignal()
            }
        }
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
