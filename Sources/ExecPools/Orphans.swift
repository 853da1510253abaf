import CSpawn
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a worker starts and then lets go (a daemon: `setsid` and a double fork) leaves the
/// worker's process group, so neither a group kill nor the reaper's reaches it, and outside
/// systemd it would outlive poold. poold is a child subreaper (set on the first exec pool):
/// such orphans are reparented to poold itself instead of to init. `Orphans` finds them among
/// poold's children (what poold did not spawn), reaps those that ended, tells the worker
/// reaper their groups (so that a SIGKILL of poold kills them too), and kills them all when
/// poold stops.
package final class Orphans: Sendable {
    /// Processes poold spawned itself (workers, the reaper): not orphans.
    private let spawned = Mutex<Set<pid_t>>([])
    /// Orphans seen, with the group the reaper was told about.
    private let adopted = Mutex<[pid_t: pid_t]>([:])
    private let isSubreaper = Atomic<Bool>(false)

    /// From now on orphaned descendants come to poold. Idempotent.
    package func adopt() {
        guard !isSubreaper.exchange(true, ordering: .relaxed) else { return }
        _ = cspawn_become_subreaper()
    }

    func spawned(_ pid: pid_t) { spawned.withLock { _ = $0.insert(pid) } }
    func reaped(_ pid: pid_t) { spawned.withLock { _ = $0.remove(pid) } }

    /// poold's children it did not spawn: /proc/self/task/*/children (a reparented orphan is
    /// the child of one of poold's threads).
    func orphans() -> [pid_t] {
        guard isSubreaper.load(ordering: .relaxed) else { return [] }
        var children: Set<pid_t> = []
        guard let tasks = opendir("/proc/self/task") else { return [] }
        defer { closedir(tasks) }
        while let entry = readdir(tasks) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard tid.first?.isNumber == true, let text = try? readSmallFile("/proc/self/task/\(tid)/children") else { continue }
            for field in text.split(separator: " ") { if let pid = pid_t(field) { children.insert(pid) } }
        }
        let known = spawned.withLock { $0 }
        return children.subtracting(known).sorted()
    }

    /// Reaps orphans that ended and has the reaper watch the groups of those that run.
    func tend(reaper: WorkerReaper?) {
        for pid in orphans() {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                adopted.withLock { _ = $0.removeValue(forKey: pid) }
                continue
            }
            let group = getpgid(pid)
            guard group > 1 else { continue }
            let new = adopted.withLock { adopted -> Bool in
                guard adopted[pid] == nil else { return false }
                adopted[pid] = group
                return true
            }
            if new { reaper?.watch(group) }
        }
    }

    /// Kills every orphan and its group, and reaps it. Called once the pools are closed.
    /// Returns how many there were.
    @discardableResult
    func killAll() -> Int {
        let pids = orphans()
        for pid in pids {
            let group = getpgid(pid)
            if group > 1 { kill(-group, SIGKILL) }
            kill(pid, SIGKILL)
        }
        for pid in pids {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        return pids.count
    }

    private func readSmallFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OrphanScanFailed() }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw OrphanScanFailed() }
        return String(decoding: bytes[..<n], as: UTF8.self)
    }

    private struct OrphanScanFailed: Error {}
}
