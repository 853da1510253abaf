import DequeModule

extension PoolStateMachine {
    enum Taken {
        case ready(Int)
        case checking
    }

    func id(of slot: Int) -> ResourceID {
        ResourceID(slot: slot, generation: slots[slot].generation)
    }

    /// The slot of `resource` if it is current and in `state`; nil for a stale or wrong event
    /// (the shell reports each resource once, so nil means a bug upstream, and it is ignored).
    func validSlot(_ resource: ResourceID, in state: SlotState) -> Int? {
        guard slots.indices.contains(resource.slot) else { return nil }
        let slot = slots[resource.slot]
        guard slot.generation == resource.generation, slot.state == state else { return nil }
        return resource.slot
    }

    /// Moves a slot between states, keeping the counters true. The idle stack is the
    /// caller's business: a slot leaving `.idle` must already be off the stack.
    mutating func setState(_ slot: Int, _ new: SlotState) {
        let old = slots[slot].state
        switch old {
        case .connecting: connecting -= 1
        case .leased: leased -= 1
        case .checking: checking -= 1
        case .closing: closing -= 1
        case .idle, .free: break
        }
        switch new {
        case .connecting: connecting += 1
        case .leased: leased += 1
        case .checking: checking += 1
        case .closing: closing += 1
        case .idle: idle.append(slot)
        case .free:
            slots[slot].generation &+= 1
            freeSlots.append(slot)
        }
        slots[slot].state = new
    }

    func isPastLifetime(_ slot: Int, at now: Instant) -> Bool {
        guard let lifetime = limits.maxLifetime else { return false }
        return now - slots[slot].openedAt >= lifetime
    }

    /// Pops the most recently used idle resource that may be handed out. Expired ones are
    /// closed on the way; one that sat idle too long is sent for a health check instead.
    mutating func takeIdle(at now: Instant, into effects: inout PoolEffects) -> Taken? {
        while let slot = idle.popLast() {
            if isPastLifetime(slot, at: now) {
                startClose(slot, into: &effects)
                continue
            }
            if needsCheck(slot, at: now) {
                setState(slot, .checking)
                effects.healthCheck.append(id(of: slot))
                return .checking
            }
            return .ready(slot)
        }
        return nil
    }

    func needsCheck(_ slot: Int, at now: Instant) -> Bool {
        guard let threshold = limits.healthCheckAfter else { return false }
        return now - slots[slot].idleSince > threshold
    }

    /// What `takeIdle` would find, without changing anything.
    func peekIdle(at now: Instant) -> Taken? {
        for slot in idle.reversed() where !isPastLifetime(slot, at: now) {
            return needsCheck(slot, at: now) ? .checking : .ready(slot)
        }
        return nil
    }

    /// A resource that just became usable (opened, or checked) goes to the first waiter,
    /// or to the idle stack, or is closed when the pool no longer wants it.
    mutating func hand(_ slot: Int, at now: Instant, into effects: inout PoolEffects) {
        if mode == .closing || mode == .closed || live > limits.maxResources || (mode == .draining && waiters.isEmpty) {
            startClose(slot, into: &effects)
        } else if !isPaused, let waiter = waiters.popFirst() {
            setState(slot, .leased)
            effects.grant.append(Grant(waiter: waiter.id, resource: id(of: slot)))
        } else {
            makeIdle(slot, at: now, into: &effects)
        }
    }

    mutating func makeIdle(_ slot: Int, at now: Instant, into effects: inout PoolEffects) {
        slots[slot].idleSince = now
        setState(slot, .idle)
        if let deadline = idleDeadline(slot) { arm(deadline, into: &effects) }
    }

    /// When this idle resource must next be looked at: its idle timeout (if the pool is above
    /// `min`) or its lifetime, whichever comes first.
    func idleDeadline(_ slot: Int) -> Instant? {
        var deadline: Instant?
        if let timeout = limits.idleTimeout, live > limits.minResources {
            deadline = slots[slot].idleSince + timeout
        }
        if let lifetime = limits.maxLifetime {
            let end = slots[slot].openedAt + lifetime
            deadline = deadline.map { Swift.min($0, end) } ?? end
        }
        return deadline
    }

    /// The slot must not be on the idle stack.
    mutating func startClose(_ slot: Int, into effects: inout PoolEffects) {
        setState(slot, .closing)
        effects.close.append(id(of: slot))
    }

    /// Closes idle resources, the longest idle first, while `condition` holds.
    mutating func closeIdle(while condition: (Self) -> Bool, into effects: inout PoolEffects) {
        while !idle.isEmpty && condition(self) {
            let slot = idle.removeFirst()
            startClose(slot, into: &effects)
        }
    }

    /// Closes idle resources past their lifetime, and those idle past `idle_timeout` while the
    /// pool is above `min` (the longest idle first).
    mutating func sweepIdle(at now: Instant, into effects: inout PoolEffects) {
        guard !idle.isEmpty, limits.idleTimeout != nil || limits.maxLifetime != nil else { return }
        var kept = 0
        var liveCount = live
        for index in idle.indices {
            let slot = idle[index]
            let expired = isPastLifetime(slot, at: now)
            let unused = limits.idleTimeout.map { now - slots[slot].idleSince >= $0 && liveCount > limits.minResources } ?? false
            if expired || unused {
                liveCount -= 1
                slots[slot].state = .closing
                closing += 1
                effects.close.append(id(of: slot))
            } else {
                idle[kept] = slot
                kept += 1
            }
        }
        idle.removeLast(idle.count - kept)
    }

    /// Hands idle resources to waiters, and sends stale ones for a check, until every waiter
    /// has one on its way (a resource being checked goes to the head of the queue).
    mutating func serveWaiters(at now: Instant, into effects: inout PoolEffects) {
        while !isPaused && waiters.count > checking {
            switch takeIdle(at: now, into: &effects) {
            case .ready(let slot)?:
                let waiter = waiters.removeFirst()
                setState(slot, .leased)
                effects.grant.append(Grant(waiter: waiter.id, resource: id(of: slot)))
            case .checking?:
                continue
            case nil:
                return
            }
        }
    }

    mutating func expireWaiters(at now: Instant, into effects: inout PoolEffects) {
        guard waiters.contains(where: { $0.deadline <= now }) else { return }
        let situation = self.situation
        var kept = waiters
        kept.removeAll(keepingCapacity: true)
        for waiter in waiters {
            if waiter.deadline <= now {
                let waited = now - waiter.enqueuedAt
                let message =
                    "pool \"\(name)\": no resource within \(limits.acquireTimeout.limitDescription) (waited \(waited.elapsedDescription)): "
                    + "\(situation)"
                effects.fail.append(WaiterFailure(waiter: waiter.id, error: PoolError(.poolTimeout, message)))
            } else {
                kept.append(waiter)
            }
        }
        waiters = kept
    }

    /// Starts the opens that `min` and the waiters need, within `max`. While opens are
    /// failing, at most one attempt runs at a time, after the backoff delay; a degraded pool
    /// keeps one probe going so that it notices when the backend is back.
    mutating func openIfNeeded(at now: Instant, into effects: inout PoolEffects) {
        guard mode == .running || mode == .draining else { return }
        if let retryAt = nextOpenAllowedAt {
            guard retryAt <= now else { return }
            nextOpenAllowedAt = nil
        }
        let forWaiters = isPaused ? 0 : waiters.count - connecting - checking
        let forMin = mode == .running ? limits.minResources - live : 0
        var wanted = Swift.max(forWaiters, forMin, 0)
        if consecutiveFailures > 0 {
            wanted = Swift.min(wanted, 1 - connecting)
            if health == .degraded && mode == .running && connecting == 0 { wanted = 1 }
        }
        wanted = Swift.min(wanted, limits.maxResources - open)
        guard wanted > 0 else { return }
        for _ in 0..<wanted {
            let slot: Int
            if let reused = freeSlots.popLast() {
                slot = reused
            } else {
                slot = slots.count
                slots.append(Slot())
            }
            setState(slot, .connecting)
            slots[slot].openedAt = now
            effects.open.append(id(of: slot))
        }
        // Opens are the only way above `min`: idle resources that went idle at `min` now time out.
        if !idle.isEmpty && live > limits.minResources, let next = nextDeadline() { arm(next, into: &effects) }
    }

    mutating func arm(_ deadline: Instant, into effects: inout PoolEffects) {
        if let armed = armedTimer, armed <= deadline { return }
        armedTimer = deadline
        effects.timer = deadline
    }

    /// The earliest instant at which `timerFired` has work to do.
    func nextDeadline() -> Instant? {
        var next: Instant?
        func consider(_ t: Instant?) {
            guard let t else { return }
            next = next.map { Swift.min($0, t) } ?? t
        }
        for waiter in waiters { consider(waiter.deadline) }
        for slot in idle { consider(idleDeadline(slot)) }
        if mode == .running || mode == .draining { consider(nextOpenAllowedAt) }
        return next
    }

    mutating func checkFinished(into effects: inout PoolEffects, force: Bool = false) {
        switch mode {
        case .running:
            break
        case .draining:
            if waiters.isEmpty && !idle.isEmpty {
                closeIdle(while: { _ in true }, into: &effects)
            }
            if waiters.isEmpty && open == 0 {
                effects.drained = true
            }
        case .closing:
            if open == 0 {
                mode = .closed
                effects.closed = true
            }
        case .closed:
            if force { effects.closed = true }
        }
    }

    func degradedError() -> PoolError {
        let reason = lastError?.message ?? "the backend is unavailable"
        return PoolError(
            .backend,
            "pool \"\(name)\" cannot open a resource: \(reason) (\(consecutiveFailures) attempts failed; retrying in the background)")
    }

    mutating func jittered(_ delay: Duration) -> Duration {
        let jitter = limits.backoffJitter
        guard jitter > 0 else { return delay }
        let unit = Double(random.next() >> 11) / Double(UInt64(1) << 53)
        let factor = 1 - jitter + 2 * jitter * unit
        return Swift.min(delay * factor, limits.backoffMax)
    }
}
