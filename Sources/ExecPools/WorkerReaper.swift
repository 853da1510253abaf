import CSpawn
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Kills exec workers' process groups if poold dies without stopping them (SIGKILL, a crash).
///
/// The parent-death signal (see `WorkerProcess`) ends a worker with poold, but not
/// what the worker started itself: its children stay in its process group, and outside
/// systemd (whose cgroup would kill them) nothing else would end them. So poold starts one
/// small process of its own, `poold --reap-worker-groups`, in a process group of its own,
/// and tells it each worker group as it starts and stops. The reaper only reads its stdin:
/// when that reaches its end — poold has gone, however it went — it sends SIGKILL to every
/// group still listed, and exits. A poold that stops normally has stopped its workers first,
/// so then the list is empty.
public final class WorkerReaper: Sendable {
    let pid: pid_t
    private let input = Mutex<Int32>(-1)

    private init(pid: pid_t, input fd: Int32) {
        self.pid = pid
        input.withLock { $0 = fd }
    }

    /// Starts the reaper (this same binary); nil if it cannot be started, with why.
    static func start() -> Result<WorkerReaper, WorkerProcess.SpawnError> {
        var pipe: [Int32] = [-1, -1]
        guard cspawn_pipe_cloexec(&pipe) == 0 else { return .failure(.init(description: "pipe: \(errnoText())")) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        cspawn_addclosefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)  // not reached by signals meant for poold's group
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("poold"), strdup(reaperFlag), nil]
        defer { for pointer in argv { free(pointer) } }
        let environment: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, environment)
        close(pipe[0])
        guard rc == 0 else {
            close(pipe[1])
            return .failure(.init(description: "cannot start the worker reaper: \(String(cString: strerror(rc)))"))
        }
        return .success(WorkerReaper(pid: pid, input: pipe[1]))
    }

    /// From now on, `group` is killed if poold dies.
    func watch(_ group: pid_t) { send("+\(group)\n") }

    /// `group` is gone (its leader reaped): no longer the reaper's business.
    func forget(_ group: pid_t) { send("-\(group)\n") }

    private func send(_ line: String) {
        input.withLock { fd in
            guard fd >= 0 else { return }
            let bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return  // the reaper is gone: nothing to tell
                }
            }
        }
    }

    /// Ends the reaper (poold is stopping, its workers stopped) and reaps it.
    func stop() {
        let fd = input.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        guard fd >= 0 else { return }
        close(fd)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// The flag that makes poold the reaper.
    public static let reaperFlag = "--reap-worker-groups"

    /// The reaper's side (`poold --reap-worker-groups`): reads `+GROUP` and `-GROUP` lines from
    /// stdin until its end, then kills every group still listed. Signals meant to stop poold
    /// do not stop it: only poold's going does.
    public static func runReaper() -> Int32 {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        var groups = Set<pid_t>()
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += buffer[..<n]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[..<newline]
                pending.removeSubrange(...newline)
                guard let sign = line.first, let group = pid_t(String(decoding: line.dropFirst(), as: UTF8.self)), group > 1 else {
                    continue
                }
                if sign == UInt8(ascii: "+") { groups.insert(group) } else { groups.remove(group) }
            }
        }
        for group in groups { kill(-group, SIGKILL) }
        return 0
    }
}
