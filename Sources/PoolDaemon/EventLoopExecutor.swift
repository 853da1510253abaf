import NIOCore

/// A task executor that runs jobs on a SwiftNIO event loop, for pools whose jobs only wait on
/// that loop's sockets (PostgreSQL). A job that prefers it runs on the same thread as its
/// connection's I/O and as the control server: sending the query, reading the rows and writing
/// the answer involve no thread handoff. Such jobs must never block, and they do not.
final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
