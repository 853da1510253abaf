import Jobs
import ServiceLifecycle

/// Runs the durable queues' hosts (`QueueRunner`). They watch poold's own stop request, not the
/// group's shutdown: they stop fetching as soon as poold begins to stop, give running jobs the
/// shutdown grace, and hand back what is left before this service ends. It sits after
/// `PoolSupervisor` in the group, so that the pools close only once it has ended.
package struct QueueService: Service {
    let runner: QueueRunner

    package init(runner: QueueRunner) {
        self.runner = runner
    }

    package func run() async throws {
        await runner.run()
        // Ended with poold's stop request; a service may end only once the group is shutting
        // down, or the group takes it for a failure.
        try? await gracefulShutdown()
    }
}
