import PoolCore
import PoolKit
import PoolTestSupport
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct PoolTests {
    @Test func leaseIsReturnedAfterTheBody() async throws {
        try await withRunningPool { pool, backend, _ in
            let id = try await pool.withResource { $0.id }
            #expect(id == 1)
            let again = try await pool.withResource { $0.id }
            #expect(again == 1, "the idle resource is reused, not reopened")
            #expect(backend.openedTotal == 1)
            #expect(pool.snapshot.leased == 0)
            #expect(pool.snapshot.idle == 1)
        }
    }

    @Test func leaseIsReturnedWhenTheBodyThrows() async throws {
        struct Oops: Error {}
        try await withRunningPool { pool, backend, _ in
            await #expect(throws: Oops.self) {
                try await pool.withResource { _ in throw Oops() }
            }
            #expect(pool.snapshot.leased == 0)
            #expect(pool.snapshot.idle == 1, "an ordinary error does not cost the resource")
            #expect(backend.closedTotal == 0)
        }
    }

    @Test func brokenResourceIsClosedAndReplaced() async throws {
        try await withRunningPool { pool, backend, _ in
            await #expect(throws: ResourceBroken.self) {
                try await pool.withResource { _ in throw ResourceBroken("connection reset") }
            }
            await eventually({ backend.closedTotal == 1 }, "the broken resource is closed")
            let id = try await pool.withResource { $0.id }
            #expect(id == 2, "a new resource replaces the broken one")
        }
    }

    @Test func cancelledWaiterLeavesTheQueueAndNothingLeaks() async throws {
        let limits = PoolLimits(maxResources: 1, idleTimeout: nil, maxLifetime: nil)
        try await withRunningPool(limits) { pool, backend, _ in
            try await whileHoldingOne(pool) { group in
                let waiter = Task {  // test-only: a separately cancellable task
                    try await pool.withResource { $0.id }
                }
                await eventually { pool.snapshot.waiting == 1 }
                waiter.cancel()
                await #expect(throws: CancellationError.self) { try await waiter.value }
                #expect(pool.snapshot.waiting == 0)
            }
            #expect(pool.snapshot.leased == 0)
            #expect(pool.snapshot.idle == 1)
            #expect(backend.openedTotal == 1)
        }
    }

    @Test func stopSourceTakesAWaiterOutOfTheQueueWithoutCancellingItsTask() async throws {
        let limits = PoolLimits(maxResources: 1, idleTimeout: nil, maxLifetime: nil)
        try await withRunningPool(limits) { pool, _, _ in
            let stop = TestStop()
            try await whileHoldingOne(pool) { group in
                group.addTask {
                    await #expect(throws: CancellationError.self) {
                        try await pool.withResource(stoppedBy: stop) { _ in }
                    }
                    #expect(!Task.isCancelled, "the waiter's task itself was not cancelled")
                }
                await eventually { pool.snapshot.waiting == 1 }
                stop.fire()
                await eventually { pool.snapshot.waiting == 0 }
            }
            #expect(pool.snapshot.leased == 0)
            // A stop that happened before the wait began fails the wait at once.
            try await whileHoldingOne(pool) { group in
                await #expect(throws: CancellationError.self) {
                    try await pool.withResource(stoppedBy: stop) { _ in }
                }
            }
        }
    }

    @Test func cancelledRunningJobReturnsItsLease() async throws {
        try await withRunningPool { pool, _, _ in
            let running = Signal()
            let job = Task {
                try await pool.withResource { _ in
                    running.fire()
                    try await hangUntilCancelled()
                }
            }
            await running.wait()
            #expect(pool.snapshot.leased == 1)
            job.cancel()
            await #expect(throws: CancellationError.self) { try await job.value }
            #expect(pool.snapshot.leased == 0)
            #expect(pool.snapshot.idle == 1)
        }
    }

    @Test func waiterTimesOutWithPoolTimeoutSayingWhatThePoolWasDoing() async throws {
        let limits = PoolLimits(maxResources: 1, acquireTimeout: .seconds(5), idleTimeout: nil, maxLifetime: nil)
        try await withRunningPool(limits) { pool, _, clock in
            try await whileHoldingOne(pool) { group in
                group.addTask {
                    let error = await #expect(throws: PoolError.self) {
                        try await pool.withResource { _ in }
                    }
                    #expect(error?.code == .poolTimeout)
                    #expect(error?.message.contains("waited 5.0s") == true)
                    #expect(error?.message.contains("1/1 leased, 1 waiting") == true)
                }
                await eventually { pool.snapshot.waiting == 1 }
                await clock.waitForSleepers(1)
                clock.advance(by: .seconds(5))
                await eventually { pool.snapshot.waiting == 0 }
            }
        }
    }

    @Test func overloadedBeyondMaxWaiters() async throws {
        let limits = PoolLimits(maxResources: 1, maxWaiters: 1, idleTimeout: nil, maxLifetime: nil)
        try await withRunningPool(limits) { pool, _, _ in
            try await whileHoldingOne(pool) { group in
                group.addTask { try await pool.withResource { _ in } }
                await eventually { pool.snapshot.waiting == 1 }
                let error = await #expect(throws: PoolError.self) {
                    try await pool.withResource { _ in }
                }
                #expect(error?.code == .overloaded)
                #expect(error?.message.contains("max_waiters = 1") == true)
            }
        }
    }

    @Test func authenticationFailureFailsFastAsBackend() async throws {
        let backend = MockBackend()
        backend.setDefaultOpen(.fail(BackendFailure(.authentication, "authentication failed for user \"app\"")))
        try await withRunningPool(backend: backend) { pool, _, _ in
            let error = await #expect(throws: PoolError.self) {
                try await pool.withResource { _ in }
            }
            #expect(error?.code == .backend)
            #expect(error?.message.contains("authentication failed for user \"app\"") == true)
            #expect(pool.snapshot.state == "degraded")
            // Fails fast from now on, without waiting for acquire_timeout.
            let again = await #expect(throws: PoolError.self) {
                try await pool.withResource { _ in }
            }
            #expect(again?.code == .backend)
        }
    }

    @Test func degradedPoolRecoversWhenTheBackendComesBack() async throws {
        let backend = MockBackend()
        let limits = PoolLimits(minResources: 1, maxResources: 2, idleTimeout: nil, maxLifetime: nil, degradedAfter: 2)
        backend.scriptOpens(.fail(BackendFailure("connection refused")), .fail(BackendFailure("connection refused")))
        let events = EventLog()
        let clock = MockClock()
        let pool = Pool(name: "pg", limits: limits, backend: backend, clock: clock, seed: 1) { events.append($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            await eventually { pool.snapshot.lastError == "connection refused" }
            #expect(pool.snapshot.state == "ready", "one failure is not yet degraded")
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(1))  // past the first backoff (≤ 120 ms with jitter)
            await eventually { pool.snapshot.state == "degraded" }
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(1))  // past the second backoff (≤ 240 ms with jitter)
            await eventually { pool.snapshot.state == "ready" && pool.snapshot.idle == 1 }
            #expect(events.events.contains(.recovered))
            #expect(events.events.contains(.degraded(BackendFailure("connection refused"))))
            await pool.close()
            try await group.waitForAll()
        }
        #expect(backend.openCount == 0)
    }

    @Test func healthCheckFailureReplacesTheResource() async throws {
        let limits = PoolLimits(maxResources: 1, idleTimeout: nil, maxLifetime: nil, healthCheckAfter: .seconds(30))
        try await withRunningPool(limits) { pool, backend, clock in
            let first = try await pool.withResource { $0.id }
            #expect(first == 1)
            clock.advance(by: .seconds(31))
            backend.scriptChecks(.fail(BackendFailure("server closed the connection")))
            let second = try await pool.withResource { $0.id }
            #expect(second == 2, "the stale resource failed its check and was replaced")
            #expect(backend.checkCount == 1)
            #expect(pool.snapshot.lastError == "server closed the connection")
        }
    }

    @Test func closeFailsWaitersAndWaitsForLeasedResources() async throws {
        let backend = MockBackend()
        let clock = MockClock()
        let limits = PoolLimits(maxResources: 1, idleTimeout: nil, maxLifetime: nil)
        let pool = Pool(name: "main", limits: limits, backend: backend, clock: clock, seed: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            let holding = Signal()
            let finish = Signal()
            group.addTask {
                try await pool.withResource { _ in
                    holding.fire()
                    await finish.wait()
                }
            }
            await holding.wait()
            group.addTask {
                let error = await #expect(throws: PoolError.self) { try await pool.withResource { _ in } }
                #expect(error?.code == .shuttingDown)
            }
            await eventually { pool.snapshot.waiting == 1 }
            group.addTask { await pool.close() }
            await eventually { pool.snapshot.mode == .closing && pool.snapshot.waiting == 0 }
            #expect(backend.openCount == 1, "the leased resource stays open until its job returns it")
            let late = await #expect(throws: PoolError.self) { try await pool.withResource { _ in } }
            #expect(late?.code == .shuttingDown)
            finish.fire()
            try await group.waitForAll()  // includes run(), which returns once the pool is closed
        }
        #expect(backend.openCount == 0)
        #expect(pool.snapshot.mode == .closed)
    }

    @Test func cancellingRunClosesEverything() async throws {
        let backend = MockBackend()
        let limits = PoolLimits(minResources: 3, maxResources: 4, idleTimeout: nil, maxLifetime: nil)
        let pool = Pool(name: "main", limits: limits, backend: backend, clock: MockClock(), seed: 1)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            await eventually { pool.snapshot.idle == 3 }
            #expect(backend.openCount == 3)
            group.cancelAll()
            await group.waitForAll()
        }
        #expect(backend.openCount == 0)
        #expect(pool.snapshot.mode == .closed)
    }

    @Test func hangingOpenIsCancelledWhenThePoolStops() async throws {
        let backend = MockBackend()
        backend.setDefaultOpen(.hang)
        let pool = Pool(name: "main", limits: PoolLimits(minResources: 1, maxResources: 1), backend: backend, clock: MockClock(), seed: 1)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            await eventually { backend.hungCount == 1 }
            group.cancelAll()
            await group.waitForAll()
        }
        #expect(backend.hungCount == 0)
        #expect(backend.openCount == 0)
        #expect(pool.snapshot.mode == .closed)
    }

    @Test func drainWaitsForLeasedResourcesThenClosesThem() async throws {
        try await withRunningPool { pool, backend, _ in
            let holding = Signal()
            let finish = Signal()
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await pool.withResource { _ in
                        holding.fire()
                        await finish.wait()
                    }
                    return true
                }
                await holding.wait()
                group.addTask { await pool.drain() }
                await eventually { pool.snapshot.state == "draining" }
                let refused = await #expect(throws: PoolError.self) { try await pool.withResource { _ in } }
                #expect(refused?.code == .shuttingDown)
                finish.fire()
                for try await finished in group { #expect(finished) }
            }
            #expect(backend.openCount == 0)
            pool.resume()
            let reopened = try await pool.withResource { $0.id }
            #expect(reopened == 2, "resume makes the pool usable again")
        }
    }

    @Test func alreadyCancelledJobGetsNoResource() async throws {
        try await withRunningPool { pool, _, _ in
            _ = try await pool.withResource { $0.id }  // one idle resource to tempt it
            let job = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await pool.withResource { $0.id }
            }
            await #expect(throws: CancellationError.self) { try await job.value }
            #expect(pool.snapshot.leased == 0)
            #expect(pool.snapshot.idle == 1)
        }
    }

    @Test func closeWaitsForASlowBackendClose() async throws {
        let backend = MockBackend()
        backend.scriptCloses(.hang)
        let pool = Pool(name: "main", limits: PoolLimits(minResources: 1, maxResources: 1), backend: backend, clock: MockClock(), seed: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            await eventually { pool.snapshot.idle == 1 }
            let closed = Box(false)
            group.addTask {
                await pool.close()
                closed.withLock { $0 = true }
            }
            await eventually { backend.hungCount == 1 }
            #expect(!closed.value, "close() has not returned while the backend is still closing")
            #expect(pool.snapshot.closing == 1)
            backend.releaseHung()
            try await group.waitForAll()
            #expect(closed.value)
        }
        #expect(backend.openCount == 0)
    }

    @Test func resizeShrinksLive() async throws {
        let limits = PoolLimits(minResources: 3, maxResources: 4, idleTimeout: nil, maxLifetime: nil)
        try await withRunningPool(limits) { pool, backend, _ in
            await eventually { pool.snapshot.idle == 3 }
            try pool.resize(min: 1, max: 1)
            await eventually { backend.openCount == 1 }
            #expect(pool.snapshot.max == 1)
            #expect(throws: PoolError.self) { try pool.resize(min: 2, max: 1) }
        }
    }
}

/// Collects pool events for assertions.
final class EventLog: Sendable {
    private let storage = Box<[PoolEvent]>([])
    func append(_ event: PoolEvent) { storage.withLock { $0.append(event) } }
    var events: [PoolEvent] { storage.value }
}

/// A stop source fired by hand.
final class TestStop: StopSource {
    private let state = Box<(fired: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    func fire() {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            state.fired = true
            return state.action
        }
        action?()
    }

    func onStop(_ action: (@Sendable () -> Void)?) {
        let now = state.withLock { state -> (@Sendable () -> Void)? in
            state.action = action
            return state.fired ? action : nil
        }
        now?()
    }
}
