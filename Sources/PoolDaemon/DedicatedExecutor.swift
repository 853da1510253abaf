#if canImport(Glibc)
import Glibc
#endif
import DequeModule

/// A task executor with threads of its own, for work that blocks: an SQLite connection's
/// statements (one thread bound to each connection), an exec pool's spawning and reaping.
///
/// Blocking calls run on the cooperative pool would starve it. Nothing may *wait* here for
/// something the pool hands out: work reaches a connection's thread only once its job holds
/// that connection, so a thread is always free for the lease that needs it.
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

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(&mutex)
        queue.append(unowned)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    /// Lets queued work finish, then stops the threads: joins them, or with `join: false`
    /// lets them end by themselves (for a caller that must not block, or that runs on one of
    /// them). Call once nothing can enqueue any more. Idempotent.
    func shutdown(join: Bool = true) {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_broadcast(&condition)
        let threads = self.threads
        self.threads.removeAll()
        pthread_mutex_unlock(&mutex)
        for thread in threads {
            if join { pthread_join(thread, nil) } else { pthread_detach(thread) }
        }
    }

    /// Whether the calling thread is one of this executor's: blocking work asserts it.
    var isCurrentThread: Bool {
        pthread_getspecific(Self.threadKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    /// How many threads it started (0: the system refused; then nothing may be enqueued).
    var threadCount: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return threads.count
    }

    private func work() {
        pthread_setspecific(Self.threadKey, Unmanaged.passUnretained(self).toOpaque())
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
