import ControlProtocol
import DaemonRuntime
import PoolCore
import PoolKit
import SQLiteSandbox

/// SQLite connections to one database file, each with a thread of its own (see
/// `SQLiteThreads` for how jobs move between the pool and those threads).
package struct SQLiteBackend: PoolBackend {
    package typealias Resource = SQLiteConnection

    let path: String
    let busyTimeout: Duration
    let pool: String
    let threads: SQLiteThreads

    package init(path: String, busyTimeout: Duration, pool: String, threads: SQLiteThreads) {
        self.path = path
        self.busyTimeout = busyTimeout
        self.pool = pool
        self.threads = threads
    }

    package func open() async throws -> SQLiteConnection {
        guard let thread = ConnectionThread(pool: threads) else {
            throw BackendFailure(
                "cannot start a thread for a connection of pool \"\(pool)\": the system refused; raise the unit's TasksMax= (or ulimit "
                    + "-u), or lower max"
            )
        }
        do {
            return try await withTaskExecutorPreference(thread) { [path, busyTimeout] in
                try SQLiteConnection.open(path: path, busyTimeout: busyTimeout, thread: thread)
            }
        } catch {
            thread.shutdown(join: false)
            throw error
        }
    }

    package func healthCheck(_ connection: SQLiteConnection) async throws {
        try await withTaskExecutorPreference(connection.thread) {
            do throws(SQLiteFailure) {
                _ = try connection.execute(SQLStatement(sql: "SELECT 1"))
            } catch {
                throw BackendFailure("health check failed: \(error.message)")
            }
        }
    }

    package func close(_ connection: SQLiteConnection) async {
        await withTaskExecutorPreference(connection.thread) { connection.close() }
        connection.thread.shutdown(join: false)
    }

    package func isBroken(_ connection: SQLiteConnection, after error: any Error) -> Bool {
        error is ResourceBroken
    }
}

extension BatchFailure {
    init(index: Int?, failure: SQLiteFailure) {
        let (code, message, detail) = failure.poolError
        self.init(index: index, code: code, message: message, detail: detail)
    }
}

extension SQLiteConnection {
    /// Runs statements in order, in one transaction if asked, on the connection's own thread.
    /// On any failure, a cancellation or a timeout, the transaction is rolled back before this
    /// returns, and a connection left in a transaction it cannot leave is reported broken so
    /// the pool replaces it.
    ///
    /// A stop (deadline, `cancel`, disconnect) or a cancellation interrupts the running
    /// statement; the call returns as soon as SQLite notices.
    /// `adhoc`: a client's own SQL, run in the sandbox (`SQLiteSandbox`); named jobs are not.
    package func run(_ statements: [SQLStatement], transaction: Bool, adhoc: Bool, stop: (any StopSource)? = nil) async throws
        -> [StatementResult]
    {
        clearInterrupt()
        // A stop (timeout, cancel) interrupts the statement; one that came already does so now.
        stop?.onStop { [self] in interrupt() }
        defer { stop?.onStop(nil) }
        return try await withTaskCancellationHandler {
            // A job granted the connection as another job gave it back already runs on its
            // thread (see `SQLiteThreads`): no hop there and back.
            if thread.isCurrent { return try await runOnThread(statements, transaction: transaction, adhoc: adhoc) }
            return try await withTaskExecutorPreference(thread) { [self] in
                try await runOnThread(statements, transaction: transaction, adhoc: adhoc)
            }
        } onCancel: {
            interrupt()
        }
    }

    /// The statements, on the connection's thread (the batch runner never suspends here:
    /// every call it makes is synchronous).
    private func runOnThread(_ statements: [SQLStatement], transaction: Bool, adhoc: Bool) async throws -> [StatementResult] {
        assert(thread.isCurrent, "SQLite statements run on their connection's thread")
        sandbox.adhoc = adhoc
        defer { sandbox.adhoc = false }
        return try await runBatch(statements, transaction: transaction)
    }
}

/// What the batch runner and `withTransaction` need, on the connection's own thread.
extension SQLiteConnection: StatementConnection {
    package func begin() throws(SQLiteFailure) { try exec("BEGIN IMMEDIATE") }
    package func commit() throws(SQLiteFailure) { try exec("COMMIT") }
    package var isInTransaction: Bool { inTransaction }

    /// Rolls back an open transaction, retrying if a late interrupt hits the ROLLBACK itself.
    package func rollBack(after error: any Error) throws {
        for _ in 0..<3 where inTransaction {
            clearInterrupt()
            try? exec("ROLLBACK")
        }
        if inTransaction {
            throw ResourceBroken("could not roll back an open transaction")
        }
    }

    package func batchFailure(_ error: any Error, index: Int?) -> any Error {
        guard let failure = error as? SQLiteFailure else { return error }
        return BatchFailure(index: index, failure: failure)
    }
}
