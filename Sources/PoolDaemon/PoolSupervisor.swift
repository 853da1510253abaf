import PoolCore
import ServiceLifecycle

/// Runs every pool's background work; on shutdown, waits until the pools have closed.
struct PoolSupervisor: Service {
    let daemon: Daemon

    func run() async throws {
        await withGracefulShutdownHandler {
            await daemon.pools.supervise()
        } onGracefulShutdown: {
            daemon.requestStop(by: .request)
            daemon.pools.finish()
        }
    }
}
