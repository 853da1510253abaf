#if canImport(Glibc)
import Glibc
#endif
import DequeModule

/// A task executor with its own threads, for the jobs of one SQLite pool.
///
/// SQLite calls block. Run on the cooperative pool they would starve it; run on a thread pool
/// they cost two thread handoffs per statement. A job whose task prefers this executor runs
/// here from start to finish — registry, lease, SQL, reply — so its statements execute inline
/// on a thread that exists for nothing else. Jobs waiting for a lease are suspended and hold
/// no thread, and a thread blocks only in a statement that is running to its end (or its
/// interrupt), so any number of threads ≥ 1 makes progress; with fewer threads than
/// connections, statements beyond the thread count wait their turn.
final class DedicatedExecutor: TaskExecutor, @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var queue = Deque<UnownedJob>()
    private var stopping = false
    private var running = 0
    private var threads: [pthread_t] = []
    let name: String

    init(name: String, threads count: Int) {
        self.name = name
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        for _ in 0..<max(count, 1) {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&thread, nil, { context in
                guard let context else { return nil }
                let executor = Unmanaged<DedicatedExecutor>.fromOpaque(context).takeRetainedValue()
                executor.work()
                return nil
            }, context)
            if rc == 0 {
                threads.append(thread)
            } else {
                Unmanaged<DedicatedExecutor>.fromOpaque(context).release()
            }
        }
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    /// Whether the calling thread is one of a dedicated executor's threads.
    static var isCurrentThreadDedicated: Bool {
        pthread_getspecific(threadKey) != nil
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(&mutex)
        queue.append(unowned)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    /// Lets queued work finish, then stops and joins the threads. Call once nothing can
    /// enqueue any more (the pool is closed and its jobs answered).
    func shutdown() {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    private func work() {
        pthread_setspecific(Self.threadKey, UnsafeRawPointer(bitPattern: 1))
        let executor = asUnownedTaskExecutor()
        while true {
            pthread_mutex_lock(&mutex)
            while queue.isEmpty && !stopping {
                pthread_cond_wait(&condition, &mutex)
            }
            guard let job = queue.popFirst() else {
                pthread_mutex_unlock(&mutex)
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
