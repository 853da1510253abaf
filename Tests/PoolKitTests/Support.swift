import PoolCore
import PoolKit
import PoolTestSupport
import Synchronization
import Testing

typealias MockPool = Pool<MockBackend, MockClock>

/// Runs a pool for the length of `body`, then closes it and checks that nothing is left open.
func withRunningPool<R>(
    _ limits: PoolLimits = PoolLimits(minResources: 0, maxResources: 2, idleTimeout: nil, maxLifetime: nil),
    backend: MockBackend = MockBackend(),
    clock: MockClock = MockClock(),
    _ body: (MockPool, MockBackend, MockClock) async throws -> R
) async throws -> R {
    let pool = Pool(name: "test", limits: limits, backend: backend, clock: clock, seed: 7)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await pool.run() }
        let result: R
        do {
            result = try await body(pool, backend, clock)
        } catch {
            await pool.close()
            throw error
        }
        await pool.close()
        try await group.waitForAll()
        #expect(backend.openCount == 0, "every resource is closed once the pool is")
        return result
    }
}

/// A one-shot signal between tasks.
struct Signal: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Void.self)
    }

    func fire() { continuation.yield() }

    func wait() async {
        for await _ in stream { return }
    }
}

/// Suspends until the task is cancelled.
func hangUntilCancelled() async throws {
    try await Task.sleep(for: .seconds(3600))
}

/// Yields until `condition` holds; for states reached by other tasks without a signal to await.
func eventually(_ condition: () -> Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) async {
    for _ in 0..<100_000 {
        if condition() { return }
        await Task.yield()
    }
    Issue.record(comment ?? "condition never became true", sourceLocation: sourceLocation)
}

/// A value shared between test tasks.
final class Box<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// Runs `body` while a child task holds one of `pool`'s resources (so the pool can be kept
/// full); the resource goes back when `body` returns. `body` may add children to `group`.
func whileHoldingOne(
    _ pool: MockPool,
    _ body: (inout ThrowingTaskGroup<Void, any Error>) async throws -> Void
) async throws {
    let holding = Signal()
    let finish = Signal()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await pool.withResource { _ in
                holding.fire()
                await finish.wait()
            }
        }
        await holding.wait()
        do {
            try await body(&group)
        } catch {
            finish.fire()
            throw error
        }
        finish.fire()
        try await group.waitForAll()
    }
}
