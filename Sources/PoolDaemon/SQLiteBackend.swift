import ControlProtocol
import PoolCore
import PoolKit
import SQLiteSandbox

/// SQLite connections to one database file, each with a thread of its own (see
/// `SQLiteThreads` for how jobs move between the pool and those threads).
struct SQLiteBackend: PoolBackend {
    typealias Resource = SQLiteConnection

    let path: String
    let busyTimeout: Duration
    let pool: String
    let threads: SQLiteThreads

    func open() async throws -> SQLiteConnection {
        guard let thread = ConnectionThread(pool: threads) else {
            throw BackendFailure("cannot start a thread for a connection of pool \"\(pool)\": the system refused; raise the unit's TasksMax= (or ulimit -u), or lower max")
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

    func healthCheck(_ connection: SQLiteConnection) async throws {
        try await withTaskExecutorPreference(connection.thread) {
            do throws(SQLiteFailure) {
                _ = try connection.execute(SQLStatement(sql: "SELECT 1"))
            } catch {
                throw BackendFailure("health check failed: \(error.message)")
            }
        }
    }

    func close(_ connection: SQLiteConnection) async {
        await withTaskExecutorPreference(connection.thread) { connection.close() }
        connection.thread.shutdown(join: false)
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
    /// Runs statements in order, in one transaction if asked, on the connection's own thread.
    /// On any failure, a cancellation or a timeout, the transaction is rolled back before this
    /// returns, and a connection left in a transaction it cannot leave is reported broken so
    /// the pool replaces it.
    ///
    /// A stop (deadline, `cancel`, disconnect) or a cancellation interrupts the running
    /// statement; the call returns as soon as SQLite notices.
    /// `adhoc`: a client's own SQL, run in the sandbox (`SQLiteSandbox`); named jobs are not.
    func run(_ statements: [SQLStatement], transaction: Bool, adhoc: Bool, stop: (any StopSource)? = nil) async throws -> [StatementResult] {
        clearInterrupt()
        // A stop (timeout, cancel) interrupts the statement; one that came already does so now.
        stop?.onStop { [self] in interrupt() }
        defer { stop?.onStop(nil) }
        return try await withTaskCancellationHandler {
            // A job granted the connection as another job gave it back already runs on its
            // thread (see `SQLiteThreads`): no hop there and back.
            if thread.isCurrent { return try runBlocking(statements, transaction: transaction, adhoc: adhoc) }
            return try await withTaskExecutorPreference(thread) { [self] in
                try runBlocking(statements, transaction: transaction, adhoc: adhoc)
            }
        } onCancel: {
            interrupt()
        }
    }

    /// The statements, on the calling thread. Every failure rolls back before it is thrown.
    private func runBlocking(_ statements: [SQLStatement], transaction: Bool, adhoc: Bool) throws -> [StatementResult] {
        assert(thread.isCurrent, "SQLite statements run on their connection's thread")
        sandbox.adhoc = adhoc
        defer { sandbox.adhoc = false }
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
