import NIOCore

/// A task executor that runs jobs on a SwiftNIO event loop, for pools whose jobs only wait on
/// that loop's sockets (PostgreSQL). A job that prefers it runs on the same thread as its
/// connection's I/O and as the control server: sending the query, reading the rows and writing
/// the answer involve no thread handoff. Such jobs must never block, and they do not.
package final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    package init(loop: any EventLoop) {
        self.loop = loop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

extension Duration {
    /// Whole nanoseconds, for NIO's `TimeAmount` (saturating at `Int64.max`).
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? Int64.max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
