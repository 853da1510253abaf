import ControlProtocol
import PoolCore
import PoolKit

/// Why a batch stopped: which statement (nil: BEGIN/COMMIT, or the job as a whole) and
/// what the database said, in the protocol's terms.
package struct BatchFailure: Error, Sendable {
    package var index: Int?
    package var code: ErrorCode
    package var message: String
    package var detail: JSONObject?

    package init(index: Int?, code: ErrorCode, message: String, detail: JSONObject?) {
        self.index = index
        self.code = code
        self.message = message
        self.detail = detail
    }

    /// A job may not leave a transaction of its own open on a pooled connection.
    package static let leftTransactionOpen = BatchFailure(
        index: nil, code: .badRequest,
        message: "the job left a transaction open; it was rolled back (use \"transaction\": true instead of BEGIN)", detail: nil)
}

/// A connection that runs a job's statements: what the batch runner and `withTransaction`
/// need from SQLite and PostgreSQL alike.
package protocol StatementConnection {
    /// Runs one statement of the job.
    func execute(_ statement: SQLStatement) async throws -> StatementResult
    /// BEGIN, and COMMIT.
    func begin() async throws
    func commit() async throws
    /// Whether the connection is inside a transaction.
    var isInTransaction: Bool { get }
    /// Leaves whatever transaction is open, after a failure (`error`), a stop or a
    /// cancellation; throws `ResourceBroken` if the connection cannot be brought back to idle
    /// (the pool replaces it). Runs whatever the task's cancellation state.
    func rollBack(after error: any Error) async throws
    /// The protocol's view of an error the connection threw (`index`: the statement's; nil
    /// for BEGIN and COMMIT).
    func batchFailure(_ error: any Error, index: Int?) -> any Error
}

extension StatementConnection {
    /// Runs `body` in a transaction: BEGIN, the body, COMMIT. Any failure — the body's, the
    /// COMMIT's, a stop, a cancellation — rolls back before it is rethrown.
    package func withTransaction<R>(_ body: () async throws -> R) async throws -> R {
        do {
            try await begin()
        } catch {
            let failure = batchFailure(error, index: nil)
            try await rollBack(after: failure)
            throw failure
        }
        do {
            let result = try await body()
            do { try await commit() } catch { throw batchFailure(error, index: nil) }
            if isInTransaction {
                throw BatchFailure(index: nil, code: .backend, message: "COMMIT left the connection in a transaction", detail: nil)
            }
            return result
        } catch {
            try await rollBack(after: error)
            throw error
        }
    }

    /// A job's statements in order, in one transaction if asked. On any failure the open
    /// transaction is rolled back before this returns, and the error names the statement
    /// (`BatchFailure.index`). A job that leaves a transaction of its own open (its own BEGIN)
    /// has it rolled back, and fails.
    package func runBatch(_ statements: [SQLStatement], transaction: Bool) async throws -> [StatementResult] {
        let run = { () async throws -> [StatementResult] in
            var results: [StatementResult] = []
            results.reserveCapacity(statements.count)
            for (index, statement) in statements.enumerated() {
                do {
                    results.append(try await execute(statement))
                } catch {
                    throw batchFailure(error, index: index)
                }
            }
            return results
        }
        if transaction { return try await withTransaction(run) }
        let results: [StatementResult]
        do {
            results = try await run()
        } catch {
            try await rollBack(after: error)
            throw error
        }
        if isInTransaction {
            try await rollBack(after: BatchFailure.leftTransactionOpen)
            throw BatchFailure.leftTransactionOpen
        }
        return results
    }
}
