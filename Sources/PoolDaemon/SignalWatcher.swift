import Logging
import PoolCore
import ServiceLifecycle
import UnixSignals

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
                daemon.requestStop(by: .signal)
            }
        }
    }
}
