import ControlProtocol
import NIOPosix
import PoolCore
import PoolKit

/// SQLite connections to one database file, opened on a thread pool so that no blocking
/// call ever runs on the cooperative pool.
struct SQLiteBackend: PoolBackend {
    typealias Resource = SQLiteConnection

    let path: String
    let busyTimeout: Duration
    let threads: NIOThreadPool

    func open() async throws -> SQLiteConnection {
        try await threads.runIfActive { [path, busyTimeout] in
            try SQLiteConnection.open(path: path, busyTimeout: busyTimeout)
        }
    }

    func healthCheck(_ connection: SQLiteConnection) async throws {
        try await threads.runIfActive {
            do throws(SQLiteFailure) {
                _ = try connection.execute(SQLStatement(sql: "SELECT 1"))
            } catch {
                throw BackendFailure("health check failed: \(error.message)")
            }
        }
    }

    func close(_ connection: SQLiteConnection) async {
        do {
            try await threads.runIfActive { connection.close() }
        } catch {
            connection.close()  // the thread pool is gone: close here rather than leak
        }
    }

    func isBroken(_ connection: SQLiteConnection, after error: any Error) -> Bool {
        error is ResourceBroken
    }
}

/// Why a batch stopped: which statement (nil: BEGIN/COMMIT, or the job as a whole) and
/// what the database said, in the protocol's terms.
struct BatchFailure: Error, Sendable {
    var index: Int?
    var code: ErrorCode
    var message: String
    var detail: JSONObject?

    init(index: Int?, code: ErrorCode, message: String, detail: JSONObject?) {
        self.index = index
        self.code = code
        self.message = message
        self.detail = detail
    }

    init(index: Int?, failure: SQLiteFailure) {
        let (code, message, detail) = failure.poolError
        self.init(index: index, code: code, message: message, detail: detail)
    }
}

extension SQLiteConnection {
    /// Runs statements in order, in one transaction if asked. On any failure, a cancellation or
    /// a timeout, the transaction is rolled back before this returns, and a connection left in
    /// a transaction it cannot leave is reported broken so the pool replaces it.
    ///
    /// Cancellation interrupts the running statement (the thread pool call itself cannot be
    /// abandoned: it returns as soon as SQLite notices).
    func run(_ statements: [SQLStatement], transaction: Bool, on threads: NIOThreadPool, stop: (any StopSource)? = nil) async throws -> [StatementResult] {
        clearInterrupt()
        // A stop (timeout, cancel) interrupts the statement; one that came already does so now.
        stop?.onStop { [self] in interrupt() }
        defer { stop?.onStop(nil) }
        if DedicatedExecutor.isCurrentThreadDedicated {
            // Already on a thread that exists for this pool's blocking calls: no handoff.
            return try await withTaskCancellationHandler {
                try runBlocking(statements, transaction: transaction)
            } onCancel: {
                interrupt()
            }
        }
        return try await withTaskCancellationHandler {
            try await threads.runIfActive { [self] in
                try runBlocking(statements, transaction: transaction)
            }
        } onCancel: {
            interrupt()
        }
    }

    /// The statements, on the calling thread. Every failure rolls back before it is thrown.
    private func runBlocking(_ statements: [SQLStatement], transaction: Bool) throws -> [StatementResult] {
        var results: [StatementResult] = []
        results.reserveCapacity(statements.count)
        do {
            if transaction {
                do throws(SQLiteFailure) { try exec("BEGIN IMMEDIATE") } catch { throw BatchFailure(index: nil, failure: error) }
            }
            for (index, statement) in statements.enumerated() {
                do throws(SQLiteFailure) {
                    results.append(try execute(statement))
                } catch {
                    throw BatchFailure(index: index, failure: error)
                }
            }
            if transaction {
                do throws(SQLiteFailure) { try exec("COMMIT") } catch { throw BatchFailure(index: nil, failure: error) }
            }
        } catch {
            try rollBackIfNeeded()
            throw error
        }
        // A job may not leave a transaction of its own open on a pooled connection.
        if inTransaction {
            try rollBackIfNeeded()
            throw BatchFailure(index: nil, failure: .badRequest("the job left a transaction open; it was rolled back (use \"transaction\": true instead of BEGIN)"))
        }
        return results
    }

    /// Rolls back an open transaction, retrying if a late interrupt hits the ROLLBACK itself.
    private func rollBackIfNeeded() throws {
        for _ in 0..<3 where inTransaction {
            clearInterrupt()
            try? exec("ROLLBACK")
        }
        if inTransaction {
            throw ResourceBroken("could not roll back an open transaction")
        }
    }
}
