import CSpawn
import DaemonRuntime
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Announces that a worker process has exited, as an event: each watched process gets a
/// pidfd, which becomes readable when it exits, and one thread of the watcher's own waits on
/// all of them in `poll()`. Nothing is reaped here — that stays with `WorkerProcess`, which
/// keeps the exit status — so a process is watched without racing its reaping.
///
/// On a kernel without pidfds (before Linux 5.3) the thread asks each process every 20 ms
/// instead, without reaping it (`waitid` with `WNOWAIT`).
package final class ExitWatcher: @unchecked Sendable {
    private struct Watch {
        let pid: pid_t
        /// -1: no pidfd, asked in turn.
        let pidfd: Int32
        let exited: EventLoopPromise<Void>
    }

    private struct State {
        var added: [Watch] = []
        var stopping = false
    }

    private let state = Mutex(State())
    /// Written to wake the thread: something was added, or it must stop.
    private let wake: Int32
    private var thread: pthread_t?
    /// Owned by the thread.
    private var watching: [Watch] = []

    static let fallbackInterval: Int32 = 20  // ms

    /// Starts the thread; nil if the system refuses a thread or an eventfd.
    package init?() {
        wake = cspawn_eventfd()
        guard wake >= 0 else { return nil }
        // Without a thread the init fails after every property is set: deinit closes `wake`.
        guard let thread = startThread({ [self] in work() }) else { return nil }
        self.thread = thread
    }

    deinit {
        close(wake)
    }

    /// A future that succeeds, on `loop`, once process `pid` (a child of poold) has exited.
    /// Fails if the watcher stops first.
    package func watch(_ pid: pid_t, on loop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let watch = Watch(pid: pid, pidfd: cspawn_pidfd_open(pid), exited: promise)
        let refused = state.withLock { state -> Bool in
            guard !state.stopping else { return true }
            state.added.append(watch)
            return false
        }
        if refused {
            if watch.pidfd >= 0 { close(watch.pidfd) }
            promise.fail(Stopped())
        } else {
            signalThread()
        }
        return promise.futureResult
    }

    /// Ends the thread and fails what it still watched. Idempotent.
    package func stop() {
        let thread = state.withLock { state -> pthread_t? in
            state.stopping = true
            defer { self.thread = nil }
            return self.thread
        }
        signalThread()
        if let thread { pthread_join(thread, nil) }
    }

    struct Stopped: Error, CustomStringConvertible {
        var description: String { "poold stopped watching worker exits" }
    }

    private func signalThread() {
        var one: UInt64 = 1
        _ = write(wake, &one, MemoryLayout<UInt64>.size)
    }

    private func work() {
        var fds: [pollfd] = []
        while true {
            let (added, stopping) = state.withLock { state in
                defer { state.added.removeAll() }
                return (state.added, state.stopping)
            }
            watching += added
            if stopping { break }
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
            for watch in watching where watch.pidfd >= 0 {
                fds.append(pollfd(fd: watch.pidfd, events: Int16(POLLIN), revents: 0))
            }
            let asking = watching.contains { $0.pidfd < 0 }
            let ready = poll(&fds, nfds_t(fds.count), asking ? Self.fallbackInterval : -1)
            if ready < 0 && errno != EINTR { break }  // not expected; what is watched fails below
            if fds[0].revents != 0 {
                var count: UInt64 = 0
                _ = read(wake, &count, MemoryLayout<UInt64>.size)
            }
            let readable = Set(fds.dropFirst().filter { $0.revents != 0 }.map(\.fd))
            watching.removeAll { watch in
                let exited = watch.pidfd >= 0 ? readable.contains(watch.pidfd) : cspawn_has_exited(watch.pid) != 0
                guard exited else { return false }
                if watch.pidfd >= 0 { close(watch.pidfd) }
                watch.exited.succeed(())
                return true
            }
        }
        let left =
            watching
            + state.withLock { state in
                state.stopping = true
                defer { state.added.removeAll() }
                return state.added
            }
        watching.removeAll()
        for watch in left {
            if watch.pidfd >= 0 { close(watch.pidfd) }
            watch.exited.fail(Stopped())
        }
    }
}

extension EventLoopFuture where Value == Void {
    /// Waits, on `loop`, until this future completes or `limit` has passed, whichever comes
    /// first. Deliberately not cut short by the task's cancellation: it paces the steps of
    /// stopping a process, which must go to their end.
    func wait(atMost limit: Duration, on loop: any EventLoop) async {
        let timeout = loop.scheduleTask(in: .nanoseconds(max(limit.nanoseconds, 0))) {}
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = ResumeOnce(continuation)
            self.whenComplete { _ in once.resume() }
            timeout.futureResult.whenComplete { _ in once.resume() }
        }
        timeout.cancel()
    }
}

/// A continuation two events race to resume: the first does.
private final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>

    init(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume() {
        continuation.withLock { pending in
            defer { pending = nil }
            return pending
        }?.resume()
    }
}
