import Synchronization

/// The `AsyncExitStack` analogue: cleanups pushed as resources are acquired at run time,
/// run in reverse order when the scope ends.
///
/// Every cleanup runs, even when an earlier one throws; their errors are reported together
/// in one `ResourceStackError`. Cleanups run in the task that ends the scope, which may be
/// cancelled: a cleanup must release its resource anyway and not give up on cancellation.
public final class ResourceStack: Sendable {
    public typealias Cleanup = @Sendable () async throws -> Void

    private let cleanups = Mutex<[(name: String, run: Cleanup)]>([])

    public init() {}

    /// Registers `cleanup` to run when the stack unwinds, before every cleanup pushed earlier.
    public func push(_ name: String, _ cleanup: @escaping Cleanup) {
        cleanups.withLock { $0.append((name, cleanup)) }
    }

    /// Acquires a value and registers its release, so that no await separates the two.
    public func enter<Value: Sendable>(
        _ name: String,
        acquire: () async throws -> Value,
        release: @escaping @Sendable (Value) async throws -> Void
    ) async throws -> Value {
        let value = try await acquire()
        push(name) { try await release(value) }
        return value
    }

    /// Number of cleanups still to run.
    public var count: Int { cleanups.withLock { $0.count } }

    /// Runs every pending cleanup, newest first, and empties the stack.
    /// Throws `ResourceStackError` listing each cleanup that failed.
    public func unwind() async throws(ResourceStackError) {
        var failures: [ResourceStackError.Failure] = []
        while let (name, cleanup) = cleanups.withLock({ $0.popLast() }) {
            do {
                try await cleanup()
            } catch {
                failures.append(.init(name: name, error: error))
            }
        }
        if !failures.isEmpty { throw ResourceStackError(bodyError: nil, failures: failures) }
    }
}

/// One or more cleanups failed; `bodyError` is what the scope itself threw, if anything.
public struct ResourceStackError: Error, Sendable, CustomStringConvertible {
    public struct Failure: Sendable {
        public let name: String
        public let error: any Error
    }

    public var bodyError: (any Error)?
    public var failures: [Failure]

    public var description: String {
        var parts = failures.map { "\($0.name): \($0.error)" }
        if let bodyError { parts.insert("\(bodyError)", at: 0) }
        return parts.joined(separator: "; ")
    }
}

/// Runs `body` with a fresh `ResourceStack` and unwinds it on every exit path.
///
/// If only the body threw, its error is rethrown unchanged; if any cleanup failed, a
/// `ResourceStackError` carries the body's error (if any) and every cleanup failure.
public func withResourceStack<R>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ResourceStack) async throws -> R
) async throws -> R {
    let stack = ResourceStack()
    let result: Result<R, any Error>
    do {
        result = .success(try await body(stack))
    } catch {
        result = .failure(error)
    }
    do {
        try await stack.unwind()
    } catch var error {
        if case .failure(let bodyError) = result { error.bodyError = bodyError }
        throw error
    }
    return try result.get()
}
