import Jobs
import PoolCore
import ServiceLifecycle

/// Runs every pool's background work; on shutdown, waits until the pools have closed.
package struct PoolSupervisor: Service {
    let context: DaemonContext

    package init(context: DaemonContext) {
        self.context = context
    }

    package func run() async throws {
        await withGracefulShutdownHandler {
            await context.pools.supervise()
        } onGracefulShutdown: {
            context.requestStop(by: .request)
            context.pools.finish()
        }
    }
}
