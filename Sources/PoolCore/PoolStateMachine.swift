import DequeModule

/// The rules of one bounded pool, with no I/O and no clock: every method takes the event and
/// the current instant, updates the bookkeeping and returns what the shell must do.
///
/// It tracks every resource (connecting, idle, leased, checking, closing) and every waiter.
/// Invariants, checked by `invariantViolations()` in tests after every step:
/// - no open starts while resources open (connecting + idle + leased + checking + closing) are
///   at `max`; after a shrink, no resource sits idle while those not closing exceed it;
/// - a waiter is in the queue until it gets exactly one outcome (grant, failure, cancel);
/// - a resource is in exactly one state; the idle stack holds exactly the idle ones;
/// - while more waiters wait than resources are being checked for them, and the pool is not
///   paused, no resource sits idle.
///
/// Instants are `Duration`s since an epoch the shell picks (its clock's `now` at start).
public struct PoolStateMachine: Sendable {
    public typealias Instant = Duration

    /// A resource slot and the generation of the resource in it, so that an event about a
    /// resource closed long ago can never touch the one that reuses its slot.
    public struct ResourceID: Hashable, Sendable, CustomStringConvertible {
        public let slot: Int
        public let generation: UInt32
        public var description: String { "r\(slot).\(generation)" }
    }

    /// A lease request, numbered by the shell.
    public struct WaiterID: Hashable, Sendable, CustomStringConvertible {
        public let raw: UInt64
        public init(_ raw: UInt64) { self.raw = raw }
        public var description: String { "w\(raw)" }
    }

    public enum Mode: String, Sendable, Hashable {
        /// Serving leases.
        case running
        /// Refusing new leases; queued and leased ones finish, then every resource closes.
        case draining
        /// Every waiter failed; resources close as soon as they are not leased.
        case closing
        /// Nothing open, nothing waiting; final.
        case closed
    }

    public enum Health: String, Sendable, Hashable {
        case healthy
        /// Opens keep failing: waiters fail fast with `backend`, a probe retries with backoff.
        case degraded
    }

    public enum LeaseResult: Sendable, Equatable {
        /// A resource, at once. Effects may still be due (e.g. an expired idle one to close).
        case granted(ResourceID, PoolEffects)
        /// The waiter is queued; it will get exactly one grant or failure later.
        case queued(PoolEffects)
        /// Refused at once: `overloaded`, `shutting_down` or `backend` (degraded).
        case refused(PoolError)
    }

    enum SlotState: Sendable, Equatable {
        case free, connecting, idle, leased, checking, closing
    }

    struct Slot: Sendable {
        var state: SlotState = .free
        var generation: UInt32 = 0
        var openedAt: Instant = .zero
        var idleSince: Instant = .zero
    }

    struct Waiter: Sendable {
        var id: WaiterID
        var enqueuedAt: Instant
        var deadline: Instant
    }

    public let name: String
    public internal(set) var limits: PoolLimits
    public internal(set) var mode: Mode = .running
    public internal(set) var isPaused = false
    public internal(set) var health: Health = .healthy
    /// The last real error from the backend (open or health check), for status and messages.
    public internal(set) var lastError: BackendFailure?

    var slots: [Slot] = []
    var freeSlots: [Int] = []
    /// Idle slots, most recently used last: leases take from the top, so the resources at the
    /// bottom are the ones that have waited longest and are the first to time out.
    var idle: [Int] = []
    var waiters = Deque<Waiter>()

    public internal(set) var connecting = 0
    public internal(set) var leased = 0
    public internal(set) var checking = 0
    public internal(set) var closing = 0

    var consecutiveFailures = 0
    var nextOpenAllowedAt: Instant?
    /// The earliest instant a timer the shell runs will fire; nil when none is pending.
    var armedTimer: Instant?
    var random: SplitMix64

    public init(name: String, limits: PoolLimits, seed: UInt64 = 0x5EED) {
        self.name = name
        self.limits = limits
        self.random = SplitMix64(seed: seed)
        self.waiters.reserveCapacity(min(limits.maxWaiters, 1024))
        self.slots.reserveCapacity(limits.maxResources)
        self.idle.reserveCapacity(limits.maxResources)
    }

    // MARK: Counts

    public var idleCount: Int { idle.count }
    public var waiting: Int { waiters.count }
    /// Resources that hold a backend connection or process, including those opening and closing.
    public var open: Int { connecting + idle.count + leased + checking + closing }
    /// Resources that count toward demand: every open one not on its way out.
    var live: Int { connecting + idle.count + leased + checking }

    // MARK: Starting

    /// Opens `min` resources. Call once when the shell starts.
    public mutating func start(at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        openIfNeeded(at: now, into: &effects)
        return effects
    }

    // MARK: Leases

    /// A job asks for a resource. It gets one at once, is queued, or is refused.
    public mutating func leaseRequested(_ waiter: WaiterID, at now: Instant) -> LeaseResult {
        switch mode {
        case .running:
            break
        case .draining:
            return .refused(PoolError(.shuttingDown, "pool \"\(name)\" is draining and takes no new jobs; try again after it resumes"))
        case .closing, .closed:
            return .refused(PoolError(.shuttingDown, "pool \"\(name)\" is shutting down and takes no new jobs"))
        }
        var effects = PoolEffects()
        let usable = peekIdle(at: now)
        if !isPaused && waiters.isEmpty, case .ready? = usable, case .ready(let slot)? = takeIdle(at: now, into: &effects) {
            setState(slot, .leased)
            if !effects.close.isEmpty { openIfNeeded(at: now, into: &effects) }  // expired ones closed on the way may leave it below min
            return .granted(id(of: slot), effects)
        }
        // Refusals come before anything changes: `.refused` carries no effects, so an expired
        // resource closed or a stale one sent for a check on the way would be lost.
        if health == .degraded && usable == nil && checking == 0 {
            return .refused(degradedError())
        }
        if waiters.count >= limits.maxWaiters {
            return .refused(
                PoolError(
                    .overloaded,
                    "pool \"\(name)\" already has \(waiters.count) jobs waiting (max_waiters = \(limits.maxWaiters)); retry later, or "
                        + "raise max_waiters or max"
                ))
        }
        let deadline = now + limits.acquireTimeout
        waiters.append(Waiter(id: waiter, enqueuedAt: now, deadline: deadline))
        arm(deadline, into: &effects)
        serveWaiters(at: now, into: &effects)  // a stale idle resource is checked for this waiter
        openIfNeeded(at: now, into: &effects)
        return .queued(effects)
    }

    /// A leased resource comes back. `broken`: the job saw it fail, so it is closed and replaced.
    public mutating func released(_ resource: ResourceID, broken: Bool = false, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .leased) else { return effects }
        if broken || mode == .closing || live > limits.maxResources || isPastLifetime(slot, at: now)
            || (mode == .draining && waiters.isEmpty)
        {
            startClose(slot, into: &effects)
            openIfNeeded(at: now, into: &effects)
        } else if !isPaused, let waiter = waiters.popFirst() {
            effects.grant.append(Grant(waiter: waiter.id, resource: resource))
        } else {
            makeIdle(slot, at: now, into: &effects)
        }
        checkFinished(into: &effects)
        return effects
    }

    /// A waiting job gave up (its task was cancelled). Returns nil when it was not waiting
    /// (already granted or failed): then the shell's own bookkeeping decides who owns the grant.
    public mutating func waiterCancelled(_ waiter: WaiterID) -> PoolEffects? {
        guard let index = waiters.firstIndex(where: { $0.id == waiter }) else { return nil }
        waiters.remove(at: index)
        var effects = PoolEffects()
        checkFinished(into: &effects)
        return effects
    }

    // MARK: Backend results

    public mutating func openSucceeded(_ resource: ResourceID, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .connecting) else { return effects }
        slots[slot].openedAt = now
        consecutiveFailures = 0
        nextOpenAllowedAt = nil
        if health == .degraded {
            health = .healthy
            effects.health = .healthy
        }
        hand(slot, at: now, into: &effects)
        openIfNeeded(at: now, into: &effects)
        checkFinished(into: &effects)
        return effects
    }

    public mutating func openFailed(_ resource: ResourceID, _ failure: BackendFailure, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .connecting) else { return effects }
        setState(slot, .free)
        lastError = failure
        consecutiveFailures += 1
        if health == .healthy && (failure.kind != .transient || consecutiveFailures >= limits.degradedAfter) {
            health = .degraded
            effects.health = .degraded
        }
        if health == .degraded {
            let error = degradedError()
            while let waiter = waiters.popFirst() {
                effects.fail.append(WaiterFailure(waiter: waiter.id, error: error))
            }
        }
        let delay = jittered(limits.backoff(afterFailures: consecutiveFailures))
        let retryAt = now + delay
        nextOpenAllowedAt = retryAt
        effects.retryIn = delay
        if mode == .running || mode == .draining {
            arm(retryAt, into: &effects)
        }
        checkFinished(into: &effects)
        return effects
    }

    public mutating func healthCheckSucceeded(_ resource: ResourceID, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .checking) else { return effects }
        if isPastLifetime(slot, at: now) {
            // It reached max_lifetime while being checked: close it, and serve its waiter otherwise.
            startClose(slot, into: &effects)
            serveWaiters(at: now, into: &effects)
            openIfNeeded(at: now, into: &effects)
        } else {
            slots[slot].idleSince = now
            hand(slot, at: now, into: &effects)
        }
        checkFinished(into: &effects)
        return effects
    }

    public mutating func healthCheckFailed(_ resource: ResourceID, _ failure: BackendFailure, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .checking) else { return effects }
        lastError = failure
        startClose(slot, into: &effects)
        serveWaiters(at: now, into: &effects)  // another stale idle resource is checked before opening
        openIfNeeded(at: now, into: &effects)
        checkFinished(into: &effects)
        return effects
    }

    /// The backend finished closing a resource; its slot is free again.
    public mutating func closed(_ resource: ResourceID, at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard let slot = validSlot(resource, in: .closing) else { return effects }
        setState(slot, .free)
        openIfNeeded(at: now, into: &effects)
        checkFinished(into: &effects)
        return effects
    }

    /// A timer the shell scheduled fired (or any timer: firing early or twice is harmless).
    /// Fails waiters past `acquire_timeout`, closes idle resources past their time, retries opens.
    public mutating func timerFired(at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        if let armed = armedTimer, armed <= now { armedTimer = nil }
        expireWaiters(at: now, into: &effects)
        sweepIdle(at: now, into: &effects)
        if let retryAt = nextOpenAllowedAt, retryAt <= now { nextOpenAllowedAt = nil }
        openIfNeeded(at: now, into: &effects)
        if let next = nextDeadline() { arm(next, into: &effects) }
        checkFinished(into: &effects)
        return effects
    }

    // MARK: Operations

    /// New leases wait; leased resources are unaffected.
    public mutating func pause() {
        if mode == .running { isPaused = true }
    }

    /// Undoes `pause` and `drain`: waiters are served again and `min` is reopened.
    public mutating func resume(at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard mode == .running || mode == .draining else { return effects }
        isPaused = false
        mode = .running
        serveWaiters(at: now, into: &effects)
        openIfNeeded(at: now, into: &effects)
        return effects
    }

    /// Changes `min` and `max` live. Shrinking closes idle resources first and leased ones
    /// as they come back; growing opens what waiters and `min` need.
    public mutating func resize(min newMin: Int, max newMax: Int, at now: Instant) -> Result<PoolEffects, PoolError> {
        var proposed = limits
        proposed.minResources = newMin
        proposed.maxResources = newMax
        if let problem = proposed.validate() {
            return .failure(PoolError(.badRequest, "pool \"\(name)\": \(problem)"))
        }
        limits = proposed
        var effects = PoolEffects()
        closeIdle(while: { $0.live > $0.limits.maxResources }, into: &effects)
        openIfNeeded(at: now, into: &effects)
        if let next = nextDeadline() { arm(next, into: &effects) }  // a lower min starts idle timeouts
        checkFinished(into: &effects)
        return .success(effects)
    }

    /// Applies new limits (a reload). `min`/`max` as in `resize`; new timeouts apply to new waits.
    /// Waiters already queued stay queued even if `max_waiters` shrinks below their number:
    /// they were admitted, and only new requests are refused.
    public mutating func updateLimits(_ newLimits: PoolLimits, at now: Instant) -> Result<PoolEffects, PoolError> {
        if let problem = newLimits.validate() {
            return .failure(PoolError(.badConfig, "pool \"\(name)\": \(problem)"))
        }
        limits = newLimits
        var effects = PoolEffects()
        closeIdle(while: { $0.live > $0.limits.maxResources }, into: &effects)
        sweepIdle(at: now, into: &effects)
        openIfNeeded(at: now, into: &effects)
        if let next = nextDeadline() { arm(next, into: &effects) }
        checkFinished(into: &effects)
        return .success(effects)
    }

    /// Refuses new leases with `shutting_down`, serves those already queued, lets leased ones
    /// return, then closes everything. `effects.drained` reports the moment it is done.
    public mutating func drain(at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard mode == .running else {
            if mode == .draining || mode == .closed { checkFinished(into: &effects, force: true) }
            return effects
        }
        mode = .draining
        isPaused = false
        serveWaiters(at: now, into: &effects)
        openIfNeeded(at: now, into: &effects)  // waiters queued while paused have no opens yet
        if waiters.isEmpty { closeIdle(while: { _ in true }, into: &effects) }
        checkFinished(into: &effects, force: true)
        return effects
    }

    /// Fails every waiter with `shutting_down`, closes idle resources now and leased ones on
    /// release. Final: `effects.closed` reports the moment nothing is open any more.
    public mutating func close(at now: Instant) -> PoolEffects {
        var effects = PoolEffects()
        guard mode != .closing && mode != .closed else {
            checkFinished(into: &effects, force: true)
            return effects
        }
        mode = .closing
        isPaused = false
        let error = PoolError(.shuttingDown, "pool \"\(name)\" is shutting down; the job never started")
        while let waiter = waiters.popFirst() {
            effects.fail.append(WaiterFailure(waiter: waiter.id, error: error))
        }
        closeIdle(while: { _ in true }, into: &effects)
        checkFinished(into: &effects, force: true)
        return effects
    }
}
