import DequeModule
public import PoolCore
public import PoolKit
import Synchronization

/// A resource of the mock backend: records what the job did with it.
public final class MockResource: Sendable, CustomStringConvertible {
    public let id: Int
    private let log = Mutex<[String]>([])

    init(id: Int) { self.id = id }

    public var description: String { "mock#\(id)" }

    /// Every statement run on this resource, in order (`BEGIN`, `COMMIT`, `ROLLBACK`, …).
    public var statements: [String] { log.withLock { $0 } }

    public func execute(_ statement: String) {
        log.withLock { $0.append(statement) }
    }

    /// A transaction-shaped scope: BEGIN, then COMMIT when `body` returns, ROLLBACK when it
    /// throws (including cancellation and timeouts).
    public func withTransaction<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> R
    ) async throws -> R {
        execute("BEGIN")
        do {
            let result = try await body()
            execute("COMMIT")
            return result
        } catch {
            execute("ROLLBACK")
            throw error
        }
    }
}

/// A backend whose opens, health checks and closes do what the test says: succeed, fail,
/// hang until released or cancelled, or take a while. It counts what is open at any time.
public final class MockBackend: PoolBackend, Sendable {
    public enum Behaviour: Sendable {
        case succeed
        case fail(BackendFailure)
        /// Wait until `releaseHung()` (then succeed) or until the task is cancelled.
        case hang
        /// Take this long (real time), then succeed.
        case slow(Duration)
    }

    private struct State {
        var openScript = Deque<Behaviour>()
        var defaultOpen: Behaviour = .succeed
        var checkScript = Deque<Behaviour>()
        var defaultCheck: Behaviour = .succeed
        var closeScript = Deque<Behaviour>()
        var closeFailures = 0
        var nextID = 0
        var open: Set<Int> = []
        var opened = 0
        var closed = 0
        var checks = 0
        var closedIDs: [Int] = []
        var hung: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var hungCounter: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// The next opens behave like this, in order; after them, `defaultOpen`.
    public func scriptOpens(_ behaviours: Behaviour...) {
        state.withLock { $0.openScript.append(contentsOf: behaviours) }
    }

    public func setDefaultOpen(_ behaviour: Behaviour) {
        state.withLock { $0.defaultOpen = behaviour }
    }

    public func scriptChecks(_ behaviours: Behaviour...) {
        state.withLock { $0.checkScript.append(contentsOf: behaviours) }
    }

    /// The next closes behave like this. A close cannot throw (the resource is gone either way):
    /// `.fail` is counted in `closeFailures`, `.hang` and `.slow` delay it.
    public func scriptCloses(_ behaviours: Behaviour...) {
        state.withLock { $0.closeScript.append(contentsOf: behaviours) }
    }

    public var closeFailures: Int { state.withLock { $0.closeFailures } }

    /// Resources open right now (opened and not yet closed).
    public var openCount: Int { state.withLock { $0.open.count } }
    public var openedTotal: Int { state.withLock { $0.opened } }
    public var closedTotal: Int { state.withLock { $0.closed } }
    public var checkCount: Int { state.withLock { $0.checks } }
    public var closedIDs: [Int] { state.withLock { $0.closedIDs } }
    /// Operations hanging right now.
    public var hungCount: Int { state.withLock { $0.hung.count } }

    /// Lets every hanging operation finish (successfully).
    public func releaseHung() {
        let hung = state.withLock { state in
            defer { state.hung.removeAll() }
            return Array(state.hung.values)
        }
        for continuation in hung { continuation.resume() }
    }

    public func open() async throws -> MockResource {
        let behaviour = state.withLock { $0.openScript.popFirst() ?? $0.defaultOpen }
        try await perform(behaviour)
        return state.withLock { state in
            state.nextID += 1
            state.opened += 1
            state.open.insert(state.nextID)
            return MockResource(id: state.nextID)
        }
    }

    public func healthCheck(_ resource: MockResource) async throws {
        let behaviour = state.withLock { state in
            state.checks += 1
            return state.checkScript.popFirst() ?? state.defaultCheck
        }
        try await perform(behaviour)
    }

    public func close(_ resource: MockResource) async {
        let behaviour = state.withLock { $0.closeScript.popFirst() ?? .succeed }
        do {
            try await perform(behaviour)
        } catch {
            state.withLock { $0.closeFailures += 1 }
        }
        state.withLock { state in
            if state.open.remove(resource.id) != nil {
                state.closed += 1
                state.closedIDs.append(resource.id)
            }
        }
    }

    private func perform(_ behaviour: Behaviour) async throws {
        switch behaviour {
        case .succeed:
            return
        case .fail(let failure):
            throw failure
        case .slow(let duration):
            try await Task.sleep(for: duration)
        case .hang:
            let id = state.withLock { state -> UInt64 in
                state.hungCounter += 1
                return state.hungCounter
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let cancelled = state.withLock { state -> Bool in
                        if Task.isCancelled { return true }
                        state.hung[id] = continuation
                        return false
                    }
                    if cancelled { continuation.resume(throwing: CancellationError()) }
                }
            } onCancel: {
                let continuation = state.withLock { $0.hung.removeValue(forKey: id) }
                continuation?.resume(throwing: CancellationError())
            }
        }
    }
}
