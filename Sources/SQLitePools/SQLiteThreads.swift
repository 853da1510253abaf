import DaemonRuntime
import NIOCore

/// Where an SQLite pool's jobs run: the task executor every one of its jobs prefers.
///
/// Each connection owns one thread (`ConnectionThread`); a job moves there only once it holds
/// the connection, so a job never waits behind another job's statement anywhere but in the
/// pool's queue, where `acquire_timeout`, `cancel`, `jobs` and shutdown reach it.
///
/// Work that reaches this executor from a connection's own thread stays on that thread; work
/// from anywhere else runs on the `lobby` event loop, which never blocks. That one rule keeps
/// a busy pool's threads hot without ever parking a job behind a blocked thread:
/// - a job starts, registers and asks for a connection in the lobby, and waits (if it must)
///   in the pool, holding no thread;
/// - its statements run on the connection's thread, and so does the rest of the job (the reply,
///   the statistics, giving the lease back), since it resumes from there;
/// - giving the lease back grants it to the next waiter, whose continuation resumes on the
///   same thread — the one of the connection it was just granted — so under load a
///   connection's thread goes from job to job without sleeping and without a wakeup.
/// Only code running for a job that holds (or just gave back) that thread's connection ever
/// runs on it, so nothing waits there for anything but that connection.
package final class SQLiteThreads: TaskExecutor, @unchecked Sendable {
    let lobby: any EventLoop

    package init(lobby: any EventLoop) {
        self.lobby = lobby
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if let thread = ConnectionThread.currentConnection, thread.pool === self, thread.accept(job, as: asUnownedTaskExecutor()) {
            return
        }
        runInLobby(job)
    }

    /// Runs `job` on the lobby loop, as this executor.
    func runInLobby(_ job: UnownedJob) {
        lobby.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }

}

/// The thread of one SQLite connection, and the task executor of the blocking calls made on
/// it. It lives as long as the connection: `shutdown(join: false)` ends it once its work is
/// done; what reaches it later (a job's last steps) runs in its pool's lobby.
package final class ConnectionThread: ThreadExecutor, @unchecked Sendable {
    let pool: SQLiteThreads

    /// Starts the thread; nil if the system refuses one.
    init?(pool: SQLiteThreads) {
        self.pool = pool
        super.init()
    }

    /// The connection thread the caller runs on, if any.
    static var currentConnection: ConnectionThread? { ThreadExecutor.current as? ConnectionThread }

    package override func rejected(_ job: UnownedJob) {
        pool.runInLobby(job)
    }
}
