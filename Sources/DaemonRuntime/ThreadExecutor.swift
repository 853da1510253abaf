import DequeModule

#if canImport(Glibc)
    import Glibc
#endif

/// A task executor with one thread of its own, for work that blocks or must come from one
/// thread: an SQLite connection's statements (`ConnectionThread`), an exec pool's spawning
/// (the parent-death signal is tied to the spawning thread).
///
/// Blocking calls run on the cooperative pool would starve it. Nothing may *wait* here for
/// something a pool hands out: work reaches a connection's thread only once its job holds
/// that connection.
///
/// `open` so that SQLitePools can subclass it (`ConnectionThread`); the module is not a product,
/// so nothing outside the package sees it.
open class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    /// Each job with the executor it was enqueued on (a subclass, or another executor whose
    /// work stays on this thread: see `SQLiteThreads`).
    private var queue = Deque<(UnownedJob, UnownedTaskExecutor)>()
    private var stopping = false
    private var idle = false
    private var thread: pthread_t?

    /// Starts the thread; nil if the system refuses one.
    public init?() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        guard let thread = startThread({ [self] in work() }) else { return nil }
        self.thread = thread
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    /// The thread executor the caller runs on, if any.
    public static var current: ThreadExecutor? {
        guard let pointer = pthread_getspecific(threadKey) else { return nil }
        return Unmanaged<ThreadExecutor>.fromOpaque(pointer).takeUnretainedValue()
    }

    public var isCurrent: Bool { Self.current === self }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !accept(job, as: asUnownedTaskExecutor()) { rejected(job) }
    }

    /// A job enqueued once the thread is stopping. Only a subclass whose work can outlive its
    /// thread (`ConnectionThread`) gets any, and runs them elsewhere.
    open func rejected(_ job: UnownedJob) {
        preconditionFailure("work enqueued on a thread executor after its shutdown")
    }

    /// Queues `job`, to run as `executor`; false once the thread is stopping.
    public func accept(_ job: UnownedJob, as executor: UnownedTaskExecutor) -> Bool {
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

    /// Lets queued work finish, then ends the thread: joins it, or with `join: false` lets it
    /// end by itself (for a caller that must not wait, or that runs on it). Idempotent.
    public func shutdown(join: Bool) {
        pthread_mutex_lock(&mutex)
        stopping = true
        let wake = idle
        let thread = self.thread
        self.thread = nil
        pthread_mutex_unlock(&mutex)
        if wake { pthread_cond_signal(&condition) }
        guard let thread else { return }
        if join { pthread_join(thread, nil) } else { pthread_detach(thread) }
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

/// Starts a thread of its own running `body`; nil if the system refuses one. The thread keeps
/// `body`, and what it captures, alive until `body` returns.
package func startThread(_ body: @escaping () -> Void) -> pthread_t? {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let rc = pthread_create(
        &thread, nil,
        { context in
            guard let context else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(context).takeRetainedValue().run()
            return nil
        }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        return nil
    }
    return thread
}

private final class ThreadBody {
    let run: () -> Void

    init(_ run: @escaping () -> Void) {
        self.run = run
    }
}
