import Jobs
import NIOCore
import NIOPosix
import PoolCore
import ServiceLifecycle
import SystemdKit

/// Enforces every job's timeout: one ticker for all jobs (10 ms resolution) instead of a
/// timer per job, which would cost a timer registration on every request.
///
/// It also pings the systemd watchdog, at half its interval, and only as proof of life: the
/// ping comes from this ticker (the job-deadline machinery, on the cooperative pool) after
/// a round trip through the event loop that serves the control socket. If either is wedged
/// the pings stop and systemd restarts poold. Pool threads are not probed: a long statement
/// may rightly keep them busy for longer than the watchdog interval.
package struct JobTimer: Service {
    static let tick = Duration.milliseconds(10)
    let jobs: JobRegistry
    let loops: MultiThreadedEventLoopGroup

    package init(jobs: JobRegistry, loops: MultiThreadedEventLoopGroup) {
        self.jobs = jobs
        self.loops = loops
    }

    package func run() async throws {
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
