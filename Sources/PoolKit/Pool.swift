import DequeModule
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

    /// A resource on loan to one job.
    public struct Lease: Sendable {
        @usableFromInline let id: ResourceID
        public let resource: Resource

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

    /// Takes a resource, waiting in FIFO order if none is free. Daemon code uses
    /// `withResource`; a bare acquire must be paired with exactly one `release`.
    @inlinable
    public func acquire(isolation: isolated (any Actor)? = #isolation, stoppedBy stop: (any StopSource)? = nil) async throws -> Lease {
        if Task.isCancelled { throw CancellationError() }
        let now = now()
        let (fast, waiter) = state.withLock { state -> (FastLease, WaiterID) in
            let waiter = state.nextWaiter()
            switch state.machine.leaseRequested(waiter, at: now) {
            case .granted(let id, let effects):
                let lease = state.lease(id)
                if effects.isEmpty { return (.granted(lease, nil), waiter) }
                return (.granted(lease, state.apply(effects)), waiter)
            case .refused(let error):
                return (.refused(error), waiter)
            case .queued(let effects):
                return (.queued(state.apply(effects)), waiter)
            }
        }
        switch fast {
        case .granted(let lease, let resumptions):
            resumptions?.perform(onEvent)
            return lease
        case .refused(let error):
            throw error
        case .queued(let resumptions):
            resumptions.perform(onEvent)
            return try await wait(for: waiter, stoppedBy: stop)
        }
    }

    /// Gives a resource back. `broken`: close it and open a replacement.
    @inlinable
    public func release(_ lease: Lease, broken: Bool = false) {
        let now = now()
        let resumptions = state.withLock { state -> Resumptions? in
            let effects = state.machine.released(lease.id, broken: broken, at: now)
            return effects.isEmpty ? nil : state.apply(effects)
        }
        resumptions?.perform(onEvent)
    }

    @usableFromInline
    enum FastLease {
        case granted(Lease, Resumptions?)
        case refused(PoolError)
        case queued(Resumptions)
    }

    /// The slow path: park until the machine grants or fails this waiter. Cancellation
    /// removes it from the queue; a grant that races with the cancellation is given back.
    @inlinable
    func wait(for waiter: WaiterID, stoppedBy stop: (any StopSource)?) async throws -> Lease {
        stop?.onStop { [self] in cancelWaiter(waiter) }
        defer { stop?.onStop(nil) }
        let lease = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Lease, any Error>) in
                let early = state.withLock { state -> Result<Lease, any Error>? in
                    if let early = state.early.removeValue(forKey: waiter) { return early }
                    state.parked[waiter] = continuation
                    return nil
                }
                if let early { continuation.resume(with: early) }
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
        let (continuation, resumptions) = state.withLock { state -> (CheckedContinuation<Lease, any Error>?, Resumptions?) in
            guard let effects = state.machine.waiterCancelled(waiter) else { return (nil, nil) }
            let resumptions = state.apply(effects)
            guard let continuation = state.parked.removeValue(forKey: waiter) else {
                state.early[waiter] = .failure(CancellationError())
                return (nil, resumptions)
            }
            return (continuation, resumptions)
        }
        continuation?.resume(throwing: CancellationError())
        resumptions?.perform(onEvent)
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
        let resumptions = state.withLock { state in
            var resumptions = state.apply(state.machine.resume(at: now))
            resumptions.finished += state.drainWaiters.map { ($0, false) }
            state.drainWaiters.removeAll()
            return resumptions
        }
        resumptions.perform(onEvent)
    }

    /// Changes `min`/`max` live: shrinking closes idle resources first, leased ones on release.
    public func resize(min: Int, max: Int) throws(PoolError) {
        let now = now()
        let result = state.withLock { state -> Result<Resumptions, PoolError> in
            state.machine.resize(min: min, max: max, at: now).map { state.apply($0) }
        }
        try result.get().perform(onEvent)
    }

    /// Applies reloaded limits without disturbing leased resources.
    public func update(_ limits: PoolLimits) throws(PoolError) {
        let now = now()
        let result = state.withLock { state -> Result<Resumptions, PoolError> in
            state.machine.updateLimits(limits, at: now).map { state.apply($0) }
        }
        try result.get().perform(onEvent)
    }

    /// Refuses new leases with `shutting_down`, serves those queued, waits for leased ones to
    /// return, closes everything. Returns true when drained, false if `resume()` came first.
    @discardableResult
    public func drain() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let now = now()
            let resumptions = state.withLock { state in
                state.drainWaiters.append(continuation)
                return state.apply(state.machine.drain(at: now))
            }
            resumptions.perform(onEvent)
        }
    }

    /// Fails every waiter with `shutting_down`, closes idle resources now and leased ones as
    /// they come back; returns when nothing is open. Final.
    public func close() async {
        _ = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let resumptions = startClose(adding: continuation)
            resumptions.perform(onEvent)
        }
    }

    func startClose(adding continuation: CheckedContinuation<Bool, Never>?) -> Resumptions {
        let now = now()
        return state.withLock { state in
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
        state.withLock { $0.apply($0.machine.start(at: now)) }.perform(onEvent)
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
            startClose(adding: nil).perform(onEvent)
        }
    }

    /// The next batch of work, or nil once the pool is closed and no work is left.
    /// Deliberately not cancellation-aware: a cancelled pool still has resources to close.
    enum NextWork { case batch([Work]), finished, wait }

    func nextWork() async -> [Work]? {
        while true {
            let next = state.withLock { state -> NextWork in
                if !state.work.isEmpty {
                    let batch = Array(state.work)
                    state.work.removeAll(keepingCapacity: true)
                    return .batch(batch)
                }
                return state.machine.mode == .closed ? .finished : .wait
            }
            switch next {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        if !state.work.isEmpty || state.machine.mode == .closed { return true }
                        state.runWaiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    func performOpen(_ id: ResourceID) async {
        do {
            let resource = try await backend.open()
            let now = now()
            state.withLock { state in
                state.store(resource, in: id)
                return state.apply(state.machine.openSucceeded(id, at: now))
            }.perform(onEvent)
        } catch {
            let failure = backend.failure(from: error)
            let now = now()
            state.withLock { $0.apply($0.machine.openFailed(id, failure, at: now)) }.perform(onEvent)
        }
    }

    func performClose(_ id: ResourceID, _ resource: Resource) async {
        await backend.close(resource)
        let now = now()
        state.withLock { $0.apply($0.machine.closed(id, at: now)) }.perform(onEvent)
    }

    func performCheck(_ id: ResourceID, _ resource: Resource) async {
        do {
            try await backend.healthCheck(resource)
            let now = now()
            state.withLock { $0.apply($0.machine.healthCheckSucceeded(id, at: now)) }.perform(onEvent)
        } catch {
            let failure = backend.failure(from: error)
            let now = now()
            var resumptions = state.withLock { $0.apply($0.machine.healthCheckFailed(id, failure, at: now)) }
            resumptions.events.append(.healthCheckFailed(failure))
            resumptions.perform(onEvent)
        }
    }

    func performTimer(at instant: PoolStateMachine.Instant) async {
        do {
            try await clock.sleep(until: epoch.advanced(by: instant), tolerance: nil)
        } catch {
            return  // cancelled: the pool is closed and nothing waits for this timer
        }
        let now = now()
        state.withLock { $0.apply($0.machine.timerFired(at: now)) }.perform(onEvent)
    }
}

extension Pool {
    /// Starts draining without waiting: from now on new leases are refused with
    /// `shutting_down`. `drain()` waits for the end (calling it again is harmless).
    public func beginDrain() {
        let now = now()
        state.withLock { $0.apply($0.machine.drain(at: now)) }.perform(onEvent)
    }

    /// Starts closing without waiting: every waiter fails with `shutting_down` now, idle
    /// resources close now, leased ones when they come back. `close()` waits for the end.
    public func beginClose() {
        startClose(adding: nil).perform(onEvent)
    }
}
