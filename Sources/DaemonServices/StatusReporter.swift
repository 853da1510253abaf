import Jobs
import PoolConfig
import PoolCore
import ServiceLifecycle
import SystemdKit

/// Keeps systemd's STATUS= current, at most once a second and only when it changed; while
/// stopping, extends the stop timeout so that a long shutdown_grace is not cut short. Once a
/// second it also tends the processes exec workers let go (`Orphans`).
package struct StatusReporter: Service {
    let context: DaemonContext

    package init(context: DaemonContext) {
        self.context = context
    }

    package func run() async throws {
        var last = ""
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Woken at once by graceful shutdown, so a stop never waits for this tick.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            if Task.isShuttingDownGracefully { break }
            context.tendExecWorkers()
            let line = context.statusLine()
            var message: [String] = []
            if line != last { message.append("STATUS=\(line)") }
            if context.state == .stopping || context.state == .stopped {
                let grace = context.config.daemon.shutdownGrace
                message.append("EXTEND_TIMEOUT_USEC=\((grace + .seconds(5)).microseconds)")
            }
            if !message.isEmpty { Systemd.notify(message) }
            last = line
        }
    }
}
