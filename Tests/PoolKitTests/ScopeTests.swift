import PoolCore
import PoolKit
import PoolTestSupport
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ScopeTests {
    @Test func timeoutInsideATransactionRollsBackAndReturnsTheLease() async throws {
        try await withRunningPool { pool, _, clock in
            let used = Box<MockResource?>(nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let error = await #expect(throws: TimeoutError.self) {
                        try await withTimeout(.seconds(2), clock: clock) {
                            try await pool.withResource { resource in
                                used.withLock { $0 = resource }
                                try await resource.withTransaction {
                                    resource.execute("UPDATE t SET v = v + 1")
                                    try await hangUntilCancelled()
                                }
                            }
                        }
                    }
                    #expect(error?.limit == .seconds(2))
                    #expect(error?.description == "exceeded 2s")
                }
                await eventually { used.withLock { $0 != nil } }
                await clock.waitForSleepers(1)
                clock.advance(by: .seconds(2))
                try await group.waitForAll()
            }
            let resource = try #require(used.withLock { $0 })
            #expect(resource.statements == ["BEGIN", "UPDATE t SET v = v + 1", "ROLLBACK"])
            #expect(pool.snapshot.leased == 0, "the lease was returned before withTimeout threw")
        }
    }

    @Test func bodyThatFinishesInTimeReturnsItsValue() async throws {
        let clock = MockClock()
        let value = try await withTimeout(.seconds(1), clock: clock) { 42 }
        #expect(value == 42)
        #expect(clock.sleeperCount == 0, "the timer is cancelled once the body is done")
    }

    @Test func callerCancellationIsNotATimeout() async throws {
        let clock = MockClock()
        let started = Signal()
        let task = Task {
            try await withTimeout(.seconds(10), clock: clock) {
                started.fire()
                try await hangUntilCancelled()
            }
        }
        await started.wait()
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test func resourceStackUnwindsInReverseAndRunsEveryCleanup() async throws {
        struct CleanupFailed: Error {}
        struct BodyFailed: Error {}
        let order = Box<[String]>([])
        let error = await #expect(throws: ResourceStackError.self) {
            try await withResourceStack { stack in
                let a = try await stack.enter("a", acquire: { "A" }, release: { value in order.withLock { $0.append("release \(value)") } })
                stack.push("b") {
                    order.withLock { $0.append("b") }
                    throw CleanupFailed()
                }
                stack.push("c") { order.withLock { $0.append("c") } }
                #expect(a == "A")
                #expect(stack.count == 3)
                throw BodyFailed()
            }
        }
        #expect(order.withLock { $0 } == ["c", "b", "release A"])
        #expect(error?.bodyError is BodyFailed)
        #expect(error?.failures.map(\.name) == ["b"])
    }

    @Test func resourceStackRethrowsTheBodyErrorUnchangedWhenCleanupsSucceed() async throws {
        struct BodyFailed: Error {}
        let ran = Box(0)
        await #expect(throws: BodyFailed.self) {
            try await withResourceStack { stack in
                stack.push("one") { ran.withLock { $0 += 1 } }
                stack.push("two") { ran.withLock { $0 += 1 } }
                throw BodyFailed()
            }
        }
        #expect(ran.withLock { $0 } == 2)
    }

    @Test func resourceStackReportsEveryFailedCleanupAfterSuccess() async throws {
        struct Failed: Error { let n: Int }
        let error = await #expect(throws: ResourceStackError.self) {
            try await withResourceStack { stack in
                stack.push("first") { throw Failed(n: 1) }
                stack.push("second") { throw Failed(n: 2) }
                return 5
            }
        }
        #expect(error?.bodyError == nil)
        #expect(error?.failures.map(\.name) == ["second", "first"])
    }

    @Test func measurementCountsOutcomesAndPhases() async throws {
        let clock = MockClock()
        let statistics = PoolStatistics()

        let ok = JobStopwatch(clock: clock)
        clock.advance(by: .milliseconds(3))
        ok.acquiring()
        clock.advance(by: .milliseconds(20))
        ok.running()
        let value = try await withMeasurement(ok, into: statistics) {
            clock.advance(by: .milliseconds(100))
            return 1
        }
        #expect(value == 1)
        #expect(ok.timing == JobTiming(queue: .milliseconds(3), acquire: .milliseconds(20), exec: .milliseconds(100)))

        let slow = JobStopwatch(clock: clock)
        await #expect(throws: TimeoutError.self) {
            try await withMeasurement(slow, into: statistics) { throw TimeoutError(limit: .seconds(1)) }
        }
        let refused = JobStopwatch(clock: clock)
        await #expect(throws: PoolError.self) {
            try await withMeasurement(refused, into: statistics) { throw PoolError(.overloaded, "full") }
        }
        let stopped = JobStopwatch(clock: clock)
        await #expect(throws: CancellationError.self) {
            try await withMeasurement(stopped, into: statistics) { throw CancellationError() }
        }
        let broken = JobStopwatch(clock: clock)
        await #expect(throws: PoolError.self) {
            try await withMeasurement(broken, into: statistics) { throw PoolError(.sqlError, "no such table") }
        }

        let snapshot = statistics.snapshot
        #expect(snapshot.count(.succeeded) == 1)
        #expect(snapshot.count(.timedOut) == 1)
        #expect(snapshot.count(.overloaded) == 1)
        #expect(snapshot.count(.cancelled) == 1)
        #expect(snapshot.count(.failed) == 1)
        // Only the first job reached the acquire and exec phases.
        #expect(snapshot.execMicros.max >= 99_900 && snapshot.execMicros.max <= 100_100)
        #expect(snapshot.acquireMicros.p50 >= 19_900 && snapshot.acquireMicros.p50 <= 20_100)
    }
}
