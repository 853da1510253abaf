import PoolKit
import PoolTestSupport
import Testing

/// The one waiting primitive: back-pressure under a limit, waiting for zero, latches, races.
@Suite(.timeLimit(.minutes(1)))
struct AsyncCounterTests {
    @Test func enterWaitsAtTheLimitAndTheOldestWaiterGoesFirst() async throws {
        let counter = AsyncCounter(limit: 2)
        #expect(counter.tryEnter())
        await counter.enter()
        #expect(!counter.tryEnter())
        let order = Box<[Int]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 1...2 {
                group.addTask {
                    await counter.enter()
                    order.withLock { $0.append(n) }
                }
                // The first waiter queues before the second starts.
                await eventually { counter.waitingToEnter == n }
            }
            #expect(order.withLock { $0 }.isEmpty)
            counter.leave()
            await eventually { order.withLock { $0 } == [1] }
            #expect(counter.count == 2, "the place passed straight to the waiter")
            counter.leave()
            try await group.waitForAll()
        }
        #expect(order.withLock { $0 } == [1, 2])
        #expect(counter.count == 2)
    }

    @Test func waitForZeroReturnsAtZeroAndNeverBelow() async throws {
        let counter = AsyncCounter()
        try await counter.waitForZero()  // already zero: at once
        #expect(counter.tryEnter() && counter.tryEnter())
        let done = Box(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await counter.waitForZero()
                done.withLock { $0 = true }
            }
            counter.leave()
            try await Task.sleep(for: .milliseconds(20))
            #expect(!done.withLock { $0 }, "one left")
            counter.leave()
            try await group.waitForAll()
        }
        #expect(done.withLock { $0 })
        counter.leave()
        #expect(counter.count == 0)
    }

    @Test func aCancelledWaiterThrowsAndLeavesNothingBehind() async throws {
        let counter = AsyncCounter(count: 1)
        let task = Task { try await counter.waitForZero() }
        try await Task.sleep(for: .milliseconds(10))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        counter.leave()
        #expect(counter.count == 0)
    }

    @Test func withTimeoutBoundsAWait() async throws {
        let clock = MockClock()
        let counter = AsyncCounter(count: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await #expect(throws: TimeoutError.self) {
                    try await withTimeout(.seconds(5), clock: clock) { try await counter.waitForZero() }
                }
            }
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(5))
            try await group.waitForAll()
        }
        #expect(counter.count == 1)
    }

    @Test func aLatchOpensOnceForEveryWaiter() async throws {
        let latch = Latch()
        #expect(!latch.isOpen)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 { group.addTask { try await latch.wait() } }
            latch.open()
            latch.open()
            try await group.waitForAll()
        }
        #expect(latch.isOpen)
        try await latch.wait()
    }

    @Test func firstOfEndsWithTheFirstEventAndCancelsTheRest() async throws {
        let first = Latch()
        let never = Latch()
        let cancelled = Box(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await firstOf(
                    { try await first.wait() },
                    {
                        do { try await never.wait() } catch { cancelled.withLock { $0 = true } }
                    })
            }
            first.open()
            try await group.waitForAll()
        }
        #expect(cancelled.withLock { $0 })
        #expect(!never.isOpen)
    }
}
