import CSpawn
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One worker process: started (fork and exec, `cspawn_start`) in its own process group, with
/// pipes for stdin, stdout and stderr and no other inherited descriptor, and the parent-death
/// signal SIGKILL so that it dies with poold even when poold is killed. (That signal fires when
/// the spawning *thread* exits: workers are spawned from an exec pool's own thread, which
/// lives until every worker has been reaped.) A hardened unit (no capabilities at all) allows
/// this; `setpriv --pdeathsig`, used before, failed there on applying capabilities.
///
/// The pipe descriptors are handed over at once: stdin and stdout to the worker's channel on
/// the event loop, stderr to its `WorkerStderr`. This type only signals and reaps.
package final class WorkerProcess: Sendable {
    let pid: pid_t
    /// Our ends of the pipes, until their new owners take them: we write the worker's stdin,
    /// read its stdout and stderr.
    let stdin: Int32
    let stdout: Int32
    let stderr: Int32
    private let state = Mutex(State())

    private struct State {
        var exit: ExitStatus?
        /// Succeeds once the process has exited (`ExitWatcher`); nil when nothing watches it.
        var exited: EventLoopFuture<Void>?
    }

    enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signaled(let signal): "exited on signal \(signal) (\(WorkerProcess.signalName(signal)))"
            }
        }
    }

    private init(pid: pid_t, stdin: Int32, stdout: Int32, stderr: Int32) {
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts `command` (argv; `command[0]` a path, or a name looked up in the worker's PATH).
    static func spawn(command: [String], directory: String?, environment: [String: String]) throws(SpawnError) -> WorkerProcess {
        guard let program = command.first else { throw SpawnError(description: "command is empty") }
        // A minimal environment, never poold's own (which may hold CREDENTIALS_DIRECTORY, the
        // socket systemd passed, tokens): PATH, LANG and HOME as poold has them, and the pool's
        // `environment` on top.
        var merged: [String: String] = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        for key in Self.inheritedEnvironment {
            if let value = getenv(key) { merged[key] = String(cString: value) }
        }
        for (key, value) in environment { merged[key] = value }
        guard let path = resolve(program, path: merged["PATH"] ?? "/usr/local/bin:/usr/bin:/bin", directory: directory) else {
            throw SpawnError(description: "cannot start \(program): no such executable (in PATH, or not executable)")
        }

        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        var errFromChild: [Int32] = [-1, -1]
        guard cspawn_pipe_cloexec(&toChild) == 0 else { throw SpawnError(description: "pipe: \(errnoText())") }
        guard cspawn_pipe_cloexec(&fromChild) == 0 else {
            closeAll(toChild)
            throw SpawnError(description: "pipe: \(errnoText())")
        }
        guard cspawn_pipe_cloexec(&errFromChild) == 0 else {
            closeAll(toChild + fromChild)
            throw SpawnError(description: "pipe: \(errnoText())")
        }
        let cArgv = command.map { strdup($0) } + [nil]
        let cEnv = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArgv { free(pointer) }
            for pointer in cEnv { free(pointer) }
        }
        // A process group of its own (signals reach what it starts too), default signal
        // dispositions (poold ignores SIGPIPE; workers must not inherit that), and the
        // parent-death signal: it dies with the thread that spawns it, which lives as long
        // as the pool's workers do, and so with poold even when poold is killed.
        var error: Int32 = 0
        let pid = cspawn_start(path, cArgv, cEnv, toChild[0], fromChild[1], errFromChild[1], directory, &error)
        close(toChild[0])
        close(fromChild[1])
        close(errFromChild[1])
        guard pid > 0 else {
            closeAll([toChild[1], fromChild[0], errFromChild[0]])
            throw SpawnError(description: "cannot start \(program): \(String(cString: strerror(error)))")
        }
        for fd in [toChild[1], fromChild[0]] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return WorkerProcess(pid: pid, stdin: toChild[1], stdout: fromChild[0], stderr: errFromChild[0])
    }

    /// What a worker's environment takes from poold's.
    static let inheritedEnvironment = ["PATH", "LANG", "HOME"]

    /// `program` itself if it names a path (relative to `directory`, where the worker starts),
    /// else the first executable of that name in `path`'s directories.
    static func resolve(_ program: String, path: String, directory: String?) -> String? {
        if program.contains("/") {
            let full = program.hasPrefix("/") || directory == nil ? program : "\(directory ?? "")/\(program)"
            return access(full, X_OK) == 0 ? full : nil
        }
        for entry in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = "\(entry.isEmpty ? "." : entry)/\(program)"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    private static func closeAll(_ fds: [Int32]) {
        for fd in fds where fd >= 0 { close(fd) }
    }

    // MARK: Life and death

    /// The exit status if the process has ended (reaping it once), nil while it runs.
    func exitStatus() -> ExitStatus? {
        if let known = state.withLock({ $0.exit }) { return known }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        guard rc == pid else { return nil }
        let exit = Self.decode(status)
        state.withLock { $0.exit = exit }
        return exit
    }

    package var hasExited: Bool { exitStatus() != nil }

    /// Sends `signal` to the worker's process group, unless it has been reaped (its group id
    /// could belong to someone else by then).
    func signalGroup(_ signal: Int32) {
        guard state.withLock({ $0.exit == nil }) else { return }
        kill(-pid, signal)
    }

    /// Has `watcher` announce the process's exit (`exited`).
    func watchExit(with watcher: ExitWatcher, on loop: any EventLoop) {
        let exited = watcher.watch(pid, on: loop)
        state.withLock { $0.exited = exited }
    }

    /// Succeeds once the process has exited; nil until `watchExit`.
    var exited: EventLoopFuture<Void>? { state.withLock { $0.exited } }

    /// Waits up to `limit` for the process to exit (reaping it); its status, or nil if it is
    /// still running. Waits for the exit event raced against `loop`'s timer, neither of which a
    /// cancelled task cuts short: a stop in progress goes to its end.
    func waitForExit(limit: Duration, on loop: any EventLoop) async -> ExitStatus? {
        if let status = exitStatus() { return status }
        await exited?.wait(atMost: limit, on: loop)
        return exitStatus()
    }

    /// After the worker's input was closed: up to 100 ms to exit on its own, then SIGTERM to
    /// its group, up to `grace`, then SIGKILL; returns once it is reaped (or, if even SIGKILL
    /// does not end it within 10 s — a process stuck in the kernel — false).
    func stop(grace: Duration, on loop: any EventLoop) async -> Bool {
        var status = await waitForExit(limit: min(grace, .milliseconds(100)), on: loop)
        if status == nil {
            signalGroup(SIGTERM)
            status = await waitForExit(limit: grace, on: loop)
        }
        if status == nil {
            signalGroup(SIGKILL)
            status = await waitForExit(limit: .seconds(10), on: loop)
        }
        // The group may hold children of the worker: they go too. The leader is reaped; its
        // group id stays reserved while members remain, so it names no one else.
        if status != nil, kill(-pid, 0) == 0 { kill(-pid, SIGKILL) }
        return status != nil
    }

    static func decode(_ status: Int32) -> ExitStatus {
        let signal = status & 0x7F
        if signal == 0 { return .exited((status >> 8) & 0xFF) }
        return .signaled(signal)
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGINT: "SIGINT"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGPIPE: "SIGPIPE"
        case SIGHUP: "SIGHUP"
        default: "signal \(signal)"
        }
    }
}

package func errnoText() -> String {
    String(cString: strerror(errno))
}
