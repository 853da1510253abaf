import DequeModule

/// A consistent picture of one pool for `status`, `pools` and logs.
public struct PoolSnapshot: Sendable, Hashable {
    public var name: String
    public var mode: PoolStateMachine.Mode
    public var isPaused: Bool
    public var health: PoolStateMachine.Health
    public var min: Int
    public var max: Int
    public var open: Int
    public var idle: Int
    public var leased: Int
    public var connecting: Int
    public var checking: Int
    public var closing: Int
    public var waiting: Int
    public var lastError: String?

    /// The protocol's pool state: `ready`, `degraded`, `paused`, `draining` (or `closing`, `closed`).
    public var state: String {
        switch mode {
        case .draining: return "draining"
        case .closing: return "closing"
        case .closed: return "closed"
        case .running:
            if isPaused { return "paused" }
            return health == .degraded ? "degraded" : "ready"
        }
    }
}

extension PoolStateMachine {
    public var snapshot: PoolSnapshot {
        PoolSnapshot(
            name: name, mode: mode, isPaused: isPaused, health: health,
            min: limits.minResources, max: limits.maxResources, open: open, idle: idle.count,
            leased: leased, connecting: connecting, checking: checking, closing: closing,
            waiting: waiters.count, lastError: lastError?.message
        )
    }

    /// What the pool is doing, in the words a timeout message needs: `8/8 leased, 37 waiting`.
    public var situation: String {
        var parts = ["\(leased)/\(limits.maxResources) leased", "\(waiters.count) waiting"]
        if connecting > 0 { parts.append("\(connecting) opening") }
        if checking > 0 { parts.append("\(checking) being checked") }
        if closing > 0 { parts.append("\(closing) closing") }
        if isPaused { parts.append("paused") }
        if let lastError, consecutiveFailures > 0 {
            parts.append("\(health == .degraded ? "degraded" : "last open failed"): \(lastError.message)")
        }
        return parts.joined(separator: ", ")
    }

    /// Every broken invariant, in words; empty when the bookkeeping is sound.
    /// Tests call this after every step; it is too slow for production paths.
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var counted: [SlotState: Int] = [:]
        for slot in slots { counted[slot.state, default: 0] += 1 }
        if counted[.connecting, default: 0] != connecting {
            problems.append("connecting count \(connecting) ≠ \(counted[.connecting, default: 0])")
        }
        if counted[.leased, default: 0] != leased { problems.append("leased count \(leased) ≠ \(counted[.leased, default: 0])") }
        if counted[.checking, default: 0] != checking { problems.append("checking count \(checking) ≠ \(counted[.checking, default: 0])") }
        if counted[.closing, default: 0] != closing { problems.append("closing count \(closing) ≠ \(counted[.closing, default: 0])") }
        if counted[.idle, default: 0] != idle.count || Set(idle).count != idle.count
            || idle.contains(where: { slots[$0].state != .idle })
        {
            problems.append("idle stack \(idle) does not match the idle slots")
        }
        if Set(freeSlots).count != freeSlots.count || freeSlots.contains(where: { slots[$0].state != .free })
            || freeSlots.count != counted[.free, default: 0]
        {
            problems.append("free list \(freeSlots) does not match the free slots")
        }
        if live > limits.maxResources && !idle.isEmpty {
            problems.append("\(live) live above max \(limits.maxResources) while \(idle.count) idle")
        }
        if !isPaused && (mode == .running || mode == .draining) && waiters.count > checking && !idle.isEmpty {
            problems.append("\(waiters.count) waiting (\(checking) being checked) while \(idle.count) idle")
        }
        if Set(waiters.map(\.id)).count != waiters.count { problems.append("a waiter is queued twice") }
        if (mode == .closing || mode == .closed) && !waiters.isEmpty { problems.append("waiters left after close") }
        if mode == .closed && open != 0 { problems.append("closed with \(open) open") }
        return problems
    }
}
