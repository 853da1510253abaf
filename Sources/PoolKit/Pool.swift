public import PoolCore
import Synchronization

/// A bounded pool of `Backend.Resource`s: the shell around `PoolStateMachine`.
///
/// The state machine decides; this class performs. It holds the machine behind a `Mutex`,
/// never awaits or does I/O while holding it, and hands opens, closes, health checks and
/// timers to `run()`, which owns every task the pool starts. `run()` must be running for
/// resources to open; it returns once `close()` has closed everything, and cancelling it
/// closes the pool first.
///
/// Jobs reach resources only through `withResource`, which returns the lease on every path.
public final class Pool<Backend: PoolBackend, C: Clock>: Sendable where C.Duration == Duration {
    public typealias Resource = Backend.Resource
    public typealias ResourceID = PoolStateMachine.ResourceID
    public typealias WaiterID = PoolStateMachine.WaiterID

    /// A resource on loan to one job, between `acquire` and `release`.
    @usableFromInline
    struct Lease: Sendable {
        @usableFromInline let id: ResourceID
        @usableFromInline let resource: Resource

        @inlinable init(id: ResourceID, resource: Resource) {
            self.id = id
            self.resource = resource
        }
    }

    public let name: String
    @usableFromInline let backend: Backend
    @usableFromInline let clock: C
    @usableFromInline let epoch: C.Instant
    @usableFromInline let state: Mutex<State>
    @usableFromInline let onEvent: @Sendable (PoolEvent) -> Void
    /// Opened when the first attempt to open a resource has ended, either way.
    let firstOpenAttempt = Latch()

    /// - Parameters:
    ///   - seed: seeds the backoff jitter; fixed in tests, random by default.
    ///   - onEvent: called (outside the pool's lock) for things worth logging.
    public init(
        name: String,
        limits: PoolLimits,
        backend: Backend,
        clock: C,
        seed: UInt64 = UInt64.random(in: .min ... .max),
        onEvent: @escaping @Sendable (PoolEvent) -> Void = { _ in }
    ) {
        self.name = name
        self.backend = backend
        self.clock = clock
        self.epoch = clock.now
        self.onEvent = onEvent
        self.state = Mutex(State(machine: PoolStateMachine(name: name, limits: limits, seed: seed)))
    }

    /// Now, as the state machine counts time: since the pool was made.
    @inlinable
    func now() -> PoolStateMachine.Instant {
        epoch.duration(to: clock.now)
    }

    // MARK: Scopes

    /// Runs `body` with a resource leased from the pool. The lease goes back on every path:
    /// return, throw, timeout and cancellation. If `body` throws an error that the backend
    /// says broke the resource, or succeeds on a resource the backend retires, the resource is
    /// closed and replaced instead.
    @inlinable
    public func withResource<R>(
        isolation: isolated (any Actor)? = #isolation,
        stoppedBy stop: (any StopSource)? = nil,
        _ body: (Resource) async throws -> R
    ) async throws -> R {
        let lease = try await acquire(stoppedBy: stop)
        let result: R
        do {
            result = try await body(lease.resource)
        } catch {
            release(lease, broken: backend.isBroken(lease.resource, after: error))
            throw error
        }
        release(lease, broken: backend.shouldRetire(lease.resource))
        return result
    }

    // MARK: Leases

    /// Takes a resource, waiting in FIFO order if none is free. Internal: jobs reach resources
    /// only through `withResource`, which pairs it with exactly one `release`.
    @inlinable
    func acquire(isolation: isolated (any Actor)? = #isolation, stoppedBy stop: (any StopSource)? = nil) async throws -> Lease {
        if Task.isCancelled { throw CancellationError() }
        let now = now()
        let fast = modifyStateAndRunActionsReturning { state -> (FastLease, Resumptions) in
            let waiter = state.nextWaiter()
            switch state.machine.leaseRequested(waiter, at: now) {
            case .granted(let id, let effects):
                let lease = state.lease(id)
                return (.granted(lease), state.apply(effects))
            case .refused(let error):
                return (.refused(error), Resumptions())
            case .queued(let effects):
                return (.queued(waiter), state.apply(effects))
            }
        }
        switch fast {
        case .granted(let lease): return lease
        case .refused(let error): throw error
        case .queued(let waiter): return try await wait(for: waiter, stoppedBy: stop)
        }
    }

    /// Gives a resource back. `broken`: close it and open a replacement.
    @inlinable
    func release(_ lease: Lease, broken: Bool = false) {
        let now = now()
        modifyStateAndRunActions { $0.apply($0.machine.released(lease.id, broken: broken, at: now)) }
    }

    @usableFromInline
    enum FastLease: Sendable {
        case granted(Lease)
        case refused(PoolError)
        case queued(WaiterID)
    }

    /// The slow path: park until the machine grants or fails this waiter. Cancellation
    /// removes it from the queue; a grant that races with the cancellation is given back.
    @inlinable
    func wait(for waiter: WaiterID, stoppedBy stop: (any StopSource)?) async throws -> Lease {
        stop?.onStop { [self] in cancelWaiter(waiter) }
        defer { stop?.onStop(nil) }
        let lease = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Lease, any Error>) in
                modifyStateAndRunActions { $0.park(waiter, continuation) }
            }
        } onCancel: {
            cancelWaiter(waiter)
        }
        if Task.isCancelled {
            release(lease)
            throw CancellationError()
        }
        return lease
    }

    @inlinable
    func cancelWaiter(_ waiter: WaiterID) {
        modifyStateAndRunActions { state in
            guard let effects = state.machine.waiterCancelled(waiter) else { return Resumptions() }
            var resumptions = state.apply(effects)
            state.settle(waiter, .failure(CancellationError()), into: &resumptions)
            return resumptions
        }
    }

    // MARK: Changing state

    /// The one way the pool changes state. `body` runs under the lock: it feeds the machine an
    /// event and `apply`s the decision. The continuations and events that decision produces are
    /// resumed and reported only after the lock is released, so no job, `drain()`, `close()` or
    /// `run()` wakes while it is held. A decision the machine refuses (`resize`, `update`) is
    /// thrown out of `body` before anything is applied.
    @inlinable
    func modifyStateAndRunActionsReturning<Value: Sendable, Failure: Error>(
        _ body: (inout State) throws(Failure) -> (Value, Resumptions)
    ) throws(Failure) -> Value {
        let (value, resumptions) = try state.withLock { state throws(Failure) in try body(&state) }
        resumptions.perform(onEvent)
        return value
    }

    /// `modifyStateAndRunActionsReturning` for the decisions that answer nothing but the
    /// resumptions.
    @inlinable
    func modifyStateAndRunActions<Failure: Error>(_ body: (inout State) throws(Failure) -> Resumptions) throws(Failure) {
        try modifyStateAndRunActionsReturning { state throws(Failure) in ((), try body(&state)) }
    }

    // MARK: Operations

    public var snapshot: PoolSnapshot {
        state.withLock { $0.machine.snapshot }
    }

    public var limits: PoolLimits {
        state.withLock { $0.machine.limits }
    }

    /// New leases wait; leased resources are unaffected.
    public func pause() {
        state.withLock { $0.machine.pause() }
    }

    /// Undoes `pause` and `drain`. A `drain()` still waiting returns false.
    public func resume() {
        let now = now()
        modifyStateAndRunActions { state in
            var resumptions = state.apply(state.machine.resume(at: now))
            resumptions.finished += state.drainWaiters.map { ($0, false) }
            state.drainWaiters.removeAll()
            return resumptions
        }
    }

    /// Changes `min`/`max` live: shrinking closes idle resources first, leased ones on release.
    public func resize(min: Int, max: Int) throws(PoolError) {
        let now = now()
        try modifyStateAndRunActions { state throws(PoolError) in
            state.apply(try state.machine.resize(min: min, max: max, at: now).get())
        }
    }

    /// Applies reloaded limits without disturbing leased resources.
    public func update(_ limits: PoolLimits) throws(PoolError) {
        let now = now()
        try modifyStateAndRunActions { state throws(PoolError) in
            state.apply(try state.machine.updateLimits(limits, at: now).get())
        }
    }

    /// Refuses new leases with `shutting_down`, serves those queued, waits for leased ones to
    /// return, closes everything. Returns true when drained, false if `resume()` came first.
    @discardableResult
    public func drain() async -> Bool {
        let now = now()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            modifyStateAndRunActions { state in
                state.drainWaiters.append(continuation)
                return state.apply(state.machine.drain(at: now))
            }
        }
    }

    /// Fails every waiter with `shutting_down`, closes idle resources now and leased ones as
    /// they come back; returns when nothing is open. Final.
    public func close() async {
        _ = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            startClose(adding: continuation)
        }
    }

    /// `continuation`, if any, is resumed once nothing is open.
    func startClose(adding continuation: CheckedContinuation<Bool, Never>?) {
        let now = now()
        modifyStateAndRunActions { state in
            if let continuation { state.closeWaiters.append(continuation) }
            return state.apply(state.machine.close(at: now))
        }
    }

    // MARK: Running

    @usableFromInline
    enum Work: Sendable {
        case open(ResourceID)
        case close(ResourceID, Resource)
        case check(ResourceID, Resource)
        case timer(PoolStateMachine.Instant)
    }

    /// Performs the pool's background work: opens, closes, health checks, timers, each a child
    /// task of this call. Returns once the pool is closed; cancelling it closes the pool (idle
    /// resources at once, leased ones when their jobs give them back) and then returns.
    public func run() async {
        let now = now()
        modifyStateAndRunActions { $0.apply($0.machine.start(at: now)) }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                while let batch = await nextWork() {
                    for work in batch {
                        switch work {
                        case .open(let id):
                            group.addTask { await self.performOpen(id) }
                        case .close(let id, let resource):
                            group.addTask { await self.performClose(id, resource) }
                        case .check(let id, let resource):
                            group.addTask { await self.performCheck(id, resource) }
                        case .timer(let instant):
                            group.addTask { await self.performTimer(at: instant) }
                        }
                    }
                }
                group.cancelAll()  // only timers can be left: nothing is open any more
            }
        } onCancel: {
            startClose(adding: nil)
        }
    }

    /// The next batch of work, or nil once the pool is closed and no work is left.
    ///
    /// Deliberately not cancellation-aware: a cancelled pool still has resources to close. That
    /// is why this is a parked continuation and not an `AsyncStream`, whose iterator ends as
    /// soon as the task consuming it is cancelled and would drop the closes still to come.
    /// Returns once the pool has made its first attempt to open a resource (at once if `min`
    /// is 0): whether it worked shows in `snapshot`. Throws `CancellationError` if the task is
    /// cancelled first.
    public func waitForFirstOpenAttempt() async throws {
        if limits.minResources == 0 { return }
        try await firstOpenAttempt.wait()
    }

    func nextWork() async -> [Work]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[Work]?, Never>) in
            modifyStateAndRunActions { $0.parkRun(continuation) }
        }
    }

    func performOpen(_ id: ResourceID) async {
        defer { firstOpenAttempt.open() }
        do {
            let resource = try await backend.open()
            let now = now()
            modifyStateAndRunActions { state in
                state.store(resource, in: id)
                return state.apply(state.machine.openSucceeded(id, at: now))
            }
        } catch {
            let failure = backend.failure(from: error)
            let now = now()
            modifyStateAndRunActions { $0.apply($0.machine.openFailed(id, failure, at: now)) }
        }
    }

    func performClose(_ id: ResourceID, _ resource: Resource) async {
        await backend.close(resource)
        let now = now()
        modifyStateAndRunActions { $0.apply($0.machine.closed(id, at: now)) }
    }

    func performCheck(_ id: ResourceID, _ resource: Resource) async {
        do {
            try await backend.healthCheck(resource)
            let now = now()
            modifyStateAndRunActions { $0.apply($0.machine.healthCheckSucceeded(id, at: now)) }
        } catch {
            let failure = backend.failure(from: error)
            let now = now()
            modifyStateAndRunActions { state in
                var resumptions = state.apply(state.machine.healthCheckFailed(id, failure, at: now))
                resumptions.events.append(.healthCheckFailed(failure))
                return resumptions
            }
        }
    }

    func performTimer(at instant: PoolStateMachine.Instant) async {
        do {
            try await clock.sleep(until: epoch.advanced(by: instant), tolerance: nil)
        } catch {
            return  // cancelled: the pool is closed and nothing waits for this timer
        }
        let now = now()
        modifyStateAndRunActions { $0.apply($0.machine.timerFired(at: now)) }
    }
}

extension Pool {
    /// Starts draining without waiting: from now on new leases are refused with
    /// `shutting_down`. `drain()` waits for the end (calling it again is harmless).
    public func beginDrain() {
        let now = now()
        modifyStateAndRunActions { $0.apply($0.machine.drain(at: now)) }
    }

    /// Starts closing without waiting: every waiter fails with `shutting_down` now, idle
    /// resources close now, leased ones when they come back. `close()` waits for the end.
    public func beginClose() {
        startClose(adding: nil)
    }
}
