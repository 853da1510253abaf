import ControlProtocol
import DaemonRuntime
import PoolCore
import Synchronization

/// Who is on the other end of a control connection (SO_PEERCRED).
public struct Peer: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// Supplementary groups of the connecting process, read when it connected.
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, pid: Int32, groups: [UInt32] = []) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.groups = groups
    }

    package static let unknown = Peer(uid: .max, gid: .max, pid: 0)
}

/// Every job the daemon has accepted and not yet answered: for `jobs`, `cancel` and shutdown.
package final class JobRegistry: Sendable {
    enum State: String, Sendable {
        case queued, acquiring, running
    }

    struct Entry: Sendable {
        var pool: String
        var state: State
        var started: ContinuousClock.Instant
        var peer: Peer
        var signal: StopSignal
        var deadline: ContinuousClock.Instant
        var expired = false
    }

    private struct Registry {
        var nextID: Int64 = 0
        var entries: [Int64: Entry] = [:]
        /// No job that has not expired yet has an earlier deadline (it may be earlier than
        /// any, after jobs finished): the ticker scans only once it has passed.
        var earliest: ContinuousClock.Instant?
    }

    private let registry = Mutex(Registry())

    /// Numbers a new job and starts tracking it, `queued` until it asks its pool for a
    /// resource. `received`: when its request was read; its age and deadline count from then.
    func register(
        pool: String, peer: Peer, limit: Duration, received: ContinuousClock.Instant, signal: StopSignal = StopSignal()
    ) -> (id: Int64, signal: StopSignal) {
        let id = registry.withLock { registry -> Int64 in
            registry.nextID += 1
            let deadline = received + limit
            registry.entries[registry.nextID] = Entry(
                pool: pool, state: .queued, started: received, peer: peer, signal: signal, deadline: deadline)
            registry.earliest = registry.earliest.map { min($0, deadline) } ?? deadline
            return registry.nextID
        }
        return (id, signal)
    }

    func set(_ id: Int64, _ state: State) {
        registry.withLock { $0.entries[id]?.state = state }
    }

    func remove(_ id: Int64) {
        registry.withLock { _ = $0.entries.removeValue(forKey: id) }
    }

    package var count: Int { registry.withLock { $0.entries.count } }

    func peer(of id: Int64) -> Peer? {
        registry.withLock { $0.entries[id]?.peer }
    }

    /// Stops one job; false when no such job is running.
    func cancel(_ id: Int64, reason: StopReason) -> Bool {
        guard let signal = registry.withLock({ $0.entries[id]?.signal }) else { return false }
        signal.fire(reason)
        return true
    }

    /// Stops every job past its deadline, once. Called by one ticker for all jobs; costs
    /// nothing until the earliest deadline has passed, then one scan.
    package func expire(now: ContinuousClock.Instant) {
        let expired = registry.withLock { registry -> [StopSignal] in
            guard let earliest = registry.earliest, earliest <= now else { return [] }
            var signals: [StopSignal] = []
            var next: ContinuousClock.Instant?
            for (id, entry) in registry.entries where !entry.expired {
                if entry.deadline <= now {
                    registry.entries[id]?.expired = true
                    signals.append(entry.signal)
                } else {
                    next = next.map { min($0, entry.deadline) } ?? entry.deadline
                }
            }
            registry.earliest = next
            return signals
        }
        for signal in expired { signal.fire(.timeout) }
    }

    /// Stops every job (shutdown past its grace).
    package func cancelAll(reason: StopReason) {
        let signals = registry.withLock { $0.entries.values.map(\.signal) }
        for signal in signals { signal.fire(reason) }
    }

    /// The `jobs` reply's list, oldest first.
    func list(pool: String?) -> [JSONValue] {
        let now = ContinuousClock.now
        let entries = registry.withLock { registry in
            registry.entries.filter { pool == nil || $0.value.pool == pool }.sorted { $0.key < $1.key }
        }
        return entries.map { id, entry in
            .object([
                "job": .int(id),
                "pool": .string(entry.pool),
                "state": .string(entry.state.rawValue),
                "age_ms": .int(entry.started.duration(to: now).milliseconds),
                "peer": .object(["uid": .int(Int64(entry.peer.uid)), "pid": .int(Int64(entry.peer.pid))]),
            ])
        }
    }
}
