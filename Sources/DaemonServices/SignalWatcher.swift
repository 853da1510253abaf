import Jobs
import Logging
import PoolCore
import ServiceLifecycle
import UnixSignals

/// SIGTERM/SIGINT stop (a second one skips the grace); SIGHUP reloads.
package struct SignalWatcher: Service {
    let context: DaemonContext

    package init(context: DaemonContext) {
        self.context = context
    }

    package func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        for await signal in signals.cancelOnGracefulShutdown() {
            switch signal {
            case .sighup:
                _ = await context.reload()
            default:
                context.logger.notice("signal received", metadata: ["signal": "\(signal)"])
                context.requestStop(by: .signal)
            }
        }
    }
}
