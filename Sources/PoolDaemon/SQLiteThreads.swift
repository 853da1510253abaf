#if canImport(Glibc)
import Glibc
#endif
import DequeModule
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
final class SQLiteThreads: TaskExecutor, @unchecked Sendable {
    let lobby: any EventLoop

    init(lobby: any EventLoop) {
        self.lobby = lobby
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if let thread = ConnectionThread.current, thread.pool === self, thread.accept(job, as: asUnownedTaskExecutor()) {
            return
        }
        runInLobby(job)
    }

    /// Runs `job` on the lobby loop, as this executor.
    fileprivate func runInLobby(_ job: UnownedJob) {
        lobby.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }

}

/// The thread of one SQLite connection, and the task executor of the blocking calls made on
/// it. It lives as long as the connection: `shutdown()` ends it once its work is done.
final class ConnectionThread: TaskExecutor, @unchecked Sendable {
    let pool: SQLiteThreads
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var queue = Deque<(UnownedJob, UnownedTaskExecutor)>()
    private var stopping = false
    private var idle = false
    private var thread: pthread_t?

    /// Starts the thread; nil if the system refuses one.
    init?(pool: SQLiteThreads) {
        self.pool = pool
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<ConnectionThread>.fromOpaque(context).takeRetainedValue().work()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<ConnectionThread>.fromOpaque(context).release()
            return nil
        }
        pthread_detach(thread)
        self.thread = thread
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    /// The connection thread the caller runs on, if any.
    static var current: ConnectionThread? {
        guard let pointer = pthread_getspecific(threadKey) else { return nil }
        return Unmanaged<ConnectionThread>.fromOpaque(pointer).takeUnretainedValue()
    }

    var isCurrent: Bool { Self.current === self }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !accept(job, as: asUnownedTaskExecutor()) {
            pool.runInLobby(job)  // the connection is closed: nothing blocking is left to run
        }
    }

    /// Queues `job`, to run as `executor`; false once the thread is stopping.
    fileprivate func accept(_ job: UnownedJob, as executor: UnownedTaskExecutor) -> Bool {
        pthread_mutex_lock(&mutex)
        guard !stopping else {
            pthread_mutex_unlock(&mutex)
            return false
        }
        queue.append((job, executor))
        let wake = idle
        pthread_mutex_unlock(&mutex)
        if wake { pthread_cond_signal(&condition) }
        return true
    }

    /// Ends the thread once its queued work is done; later work goes to the lobby.
    func shutdown() {
        pthread_mutex_lock(&mutex)
        stopping = true
        let wake = idle
        pthread_mutex_unlock(&mutex)
        if wake { pthread_cond_signal(&condition) }
    }

    private func work() {
        pthread_setspecific(Self.threadKey, Unmanaged.passUnretained(self).toOpaque())
        while true {
            pthread_mutex_lock(&mutex)
            while queue.isEmpty && !stopping {
                idle = true
                pthread_cond_wait(&condition, &mutex)
                idle = false
            }
            guard let (job, executor) = queue.popFirst() else {
                pthread_mutex_unlock(&mutex)
                pthread_setspecific(Self.threadKey, nil)
                return
            }
            pthread_mutex_unlock(&mutex)
            job.runSynchronously(on: executor)
        }
    }

    private static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
}
