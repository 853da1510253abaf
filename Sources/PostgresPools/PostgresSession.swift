import ControlProtocol
import DaemonRuntime
import Logging
import NIOCore
import NIOPosix
import PoolCore
import PoolKit
import PostgresNIO
import Synchronization

/// One pooled PostgreSQL connection and what is needed to stop its work on the server.
///
/// A job that is stopped (timeout, `cancel`, disconnect, shutdown) while its query runs
/// sends the server a CancelRequest with the connection's key, again every
/// `cancelRetry` while the query still runs (a cancel that lands between two statements is
/// ignored by the server), and closes the connection if the query outlives `cancelGrace`.
/// The job then waits until every cancel it sent has been delivered, rolls back, and the
/// connection goes back to the pool only if it is idle outside a transaction: a late cancel
/// can never hit the next job's query.
package final class PostgresSession: Sendable {
    static let maxRows = 100_000
    static let cancelRetry: TimeAmount = .milliseconds(250)
    static let cancelGrace: Duration = .seconds(3)

    let connection: PostgresConnection
    let wire: PostgresWireState
    let key: PostgresWireState.BackendKey
    let target: PostgresTarget
    private let control = Mutex(Control())
    /// Statements prepared on this connection, by SQL. Only the job holding the lease uses it.
    private let statements = Mutex<[String: Prepared]>([:])
    private static let quiet = Logger(label: "poold.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    private struct Control {
        /// A statement has been sent and has not finished.
        var inFlight = false
        /// The current job was told to stop.
        var stopped = false
        /// When the first cancel for the running statement went out.
        var cancelStarted: ContinuousClock.Instant?
    }
    /// CancelRequests sent and not yet acknowledged (the server closes their socket).
    private let pendingCancels = AsyncCounter()

    init(connection: PostgresConnection, wire: PostgresWireState, key: PostgresWireState.BackendKey, target: PostgresTarget) {
        self.connection = connection
        self.wire = wire
        self.key = key
        self.target = target
    }

    package var isClosed: Bool { connection.isClosed }

    func close() async {
        try? await connection.close()
    }

    /// `SELECT 1`, closing the connection if it does not answer within `limit`.
    func ping(limit: Duration) async throws {
        let watchdog = connection.eventLoop.scheduleTask(in: .nanoseconds(limit.nanoseconds)) { [connection] in
            connection.close().whenComplete { _ in }
        }
        defer { watchdog.cancel() }
        _ = try await connection.query("SELECT 1", logger: Self.quiet).get()
    }

    // MARK: Jobs

    /// Runs statements in order, in one transaction if asked. Every failure, stop or
    /// cancellation leaves the connection idle outside a transaction, or throws
    /// `ResourceBroken` so that the pool replaces it.
    package func run(_ statements: [SQLStatement], transaction: Bool, stop: (any StopSource)?) async throws -> [StatementResult] {
        control.withLock { $0 = Control() }
        stop?.onStop { [self] in requestStop() }
        defer { stop?.onStop(nil) }
        let results = try await withTaskCancellationHandler {
            try await runBatch(statements, transaction: transaction)
        } onCancel: {
            requestStop()
        }
        await settleCancels()
        return results
    }

    /// One statement: its columns (even with no rows), rows and, for a write, rows changed.
    ///
    /// A statement is prepared once per connection and then only bound and executed: the
    /// server skips parsing and planning, and fewer messages cross the socket. Params go
    /// in the binary format of the types the server inferred; when a value does not fit
    /// (a string where it inferred an integer), the statement runs unprepared with untyped
    /// text, exactly as it would have without the cache.
    private func execute(_ statement: SQLStatement, prepare: Bool) async throws -> StatementResult {
        try beginStatement()
        defer { endStatement() }
        if prepare, let prepared = try await prepared(statement.sql),
            let binds = PostgresValues.binaryParams(statement.params, types: prepared.parameterTypes)
        {
            do {
                return try await run(prepared, binds)
            } catch  where Self.invalidatesPlan(error) {
                // The table changed under the cached plan, or someone deallocated it: forget
                // it, and run the statement unprepared if no transaction was aborted by this.
                forget(statement.sql)
                guard wire.transactionStatus == .idle else { throw error }
            }
        }
        return try await runUnprepared(statement)
    }

    private func runUnprepared(_ statement: SQLStatement) async throws -> StatementResult {
        let collector = RowCollector()
        let query = PostgresQuery(unsafeSQL: statement.sql, binds: PostgresValues.bindings(statement.params))
        let metadata = try await connection.query(query, logger: Self.quiet) { row in collector.append(row) }.get()
        let affected: Int64? =
            switch metadata.command {
            case "INSERT", "UPDATE", "DELETE", "MERGE": metadata.rows.map(Int64.init)
            default: nil
            }
        return StatementResult(columns: wire.columns, rows: try collector.result(), affected: affected)
    }

    private func run(_ prepared: Prepared, _ binds: [PostgresData]) async throws -> StatementResult {
        let collector = RowCollector()
        try await prepared.query.execute(binds) { row in collector.append(row) }.get()
        return StatementResult(columns: prepared.columns, rows: try collector.result(), affected: Self.affected(tag: wire.commandTag))
    }

    /// Rows changed, from a CommandComplete tag (`INSERT 0 3`, `UPDATE 2`); nil for a read.
    static func affected(tag: String) -> Int64? {
        let words = tag.split(separator: " ")
        guard let command = words.first, ["INSERT", "UPDATE", "DELETE", "MERGE"].contains(command), let last = words.last else {
            return nil
        }
        return Int64(last)
    }

    // MARK: Prepared statements

    /// A statement prepared on this connection, with what the server said about it.
    struct Prepared: Sendable {
        var query: PreparedQuery
        var parameterTypes: [UInt32]
        var columns: [String]
    }

    static let cacheCapacity = 64

    /// The cached statement for `sql`, preparing it on first use; an error from the server
    /// (a syntax error, say) is the statement's.
    private func prepared(_ sql: String) async throws -> Prepared? {
        if let hit = statements.withLock({ $0[sql] }) { return hit }
        let query = try await connection.prepare(query: sql).get()
        let prepared = Prepared(query: query, parameterTypes: wire.parameterTypes, columns: wire.columns)
        let evicted = statements.withLock { cache -> Prepared? in
            var evicted: Prepared?
            if cache.count >= Self.cacheCapacity, let victim = cache.keys.first {
                evicted = cache.removeValue(forKey: victim)
            }
            cache[sql] = prepared
            return evicted
        }
        if let evicted { try? await evicted.query.deallocate().get() }
        return prepared
    }

    private func forget(_ sql: String) {
        _ = statements.withLock { $0.removeValue(forKey: sql) }
    }

    /// 0A000: "cached plan must not change result type"; 26000: the statement is gone.
    private static func invalidatesPlan(_ error: any Error) -> Bool {
        guard let state = ServerError(error)?.sqlState else { return false }
        return state == "0A000" || state == "26000"
    }

    private func beginStatement() throws {
        let stopped = control.withLock { control -> Bool in
            if control.stopped { return true }
            control.inFlight = true
            return false
        }
        if stopped { throw CancellationError() }
    }

    private func endStatement() {
        control.withLock {
            $0.inFlight = false
            $0.cancelStarted = nil
        }
    }

    /// After a failure: waits until every cancel sent has reached the server (so that none
    /// can hit a later statement), then rolls back whatever transaction is open. A connection
    /// that is closed, or that cannot be brought back to idle, is reported broken with the
    /// reason.
    package func rollBack(after error: any Error) async throws {
        await settleCancels()
        if connection.isClosed {
            throw ResourceBroken(Self.connectionFailure(error))
        }
        for _ in 0..<3 where wire.transactionStatus != .idle && !connection.isClosed {
            _ = try? await connection.query("ROLLBACK", logger: Self.quiet).get()
        }
        if connection.isClosed {
            throw ResourceBroken(Self.connectionFailure(error))
        }
        if wire.transactionStatus != .idle {
            throw ResourceBroken("could not roll back an open transaction")
        }
    }

    private static func connectionFailure(_ error: any Error) -> String {
        if let batch = error as? BatchFailure { return batch.message }
        if let broken = error as? ResourceBroken { return broken.reason }
        return PostgresBackend.describe(error)
    }

    /// A statement's error as the protocol reports it.
    package func batchFailure(_ error: any Error, index: Int?) -> any Error {
        Self.failure(error, index: index)
    }

    static func failure(_ error: any Error, index: Int?) -> any Error {
        if var batch = error as? BatchFailure {
            batch.index = batch.index ?? index
            return batch
        }
        guard let server = ServerError(error) else {
            guard error is PSQLError || error is PostgresError else { return error }
            // The connection failed: the pool replaces it.
            return ResourceBroken(PostgresBackend.describe(error))
        }
        let state = server.sqlState
        let message = server.text
        let detail: JSONObject = ["sqlstate": .string(state)]
        if state == "08P01" || (state == "42601" && message.contains("multiple commands")) {
            // A parameter count that does not match, or two statements in one: the request
            // is wrong, and the connection is fine.
            let words = state == "42601" ? "one statement per \"sql\" (use \"batch\" for several): \(message)" : message
            return BatchFailure(index: index, code: .badRequest, message: words, detail: nil)
        }
        if state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state) {
            return ResourceBroken(message)
        }
        return BatchFailure(index: index, code: .sqlError, message: message, detail: detail)
    }

    // MARK: Stopping

    /// The job's stop: cancels the running statement on the server, or makes the next one
    /// fail before it is sent.
    private func requestStop() {
        let send = control.withLock { control -> Bool in
            guard !control.stopped else { return false }
            control.stopped = true
            guard control.inFlight else { return false }
            control.cancelStarted = .now
            return true
        }
        if send { sendCancel() }
    }

    /// One CancelRequest on a connection of its own; then, while the statement still runs,
    /// another after `cancelRetry`, and closing the connection after `cancelGrace`.
    private func sendCancel() {
        _ = pendingCancels.tryEnter()
        let eventLoop = connection.eventLoop
        let request = Self.cancelRequest(key)
        target.connectForCancel(on: eventLoop).flatMap { channel -> EventLoopFuture<Void> in
            // The server reads the request, signals the backend, then closes the socket.
            let timeout = eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
            channel.writeAndFlush(request, promise: nil)
            return channel.closeFuture.always { _ in timeout.cancel() }
        }.whenComplete { [self] _ in
            cancelDelivered()
        }
        eventLoop.scheduleTask(in: Self.cancelRetry) { [self] in
            retryOrGiveUp()
        }
    }

    private func retryOrGiveUp() {
        enum Next { case nothing, again, close }
        let next = control.withLock { control -> Next in
            guard control.inFlight, let started = control.cancelStarted else { return .nothing }
            return started.duration(to: .now) >= Self.cancelGrace ? .close : .again
        }
        switch next {
        case .nothing: break
        case .again: sendCancel()
        case .close: connection.close().whenComplete { _ in }
        }
    }

    private func cancelDelivered() {
        pendingCancels.leave()
    }

    /// Returns once every CancelRequest sent for this job has reached the server.
    private func settleCancels() async {
        await pendingCancels.waitForZeroIgnoringCancellation()
    }

    /// CancelRequest: length 16, code 80877102, the backend's process id and secret key.
    static func cancelRequest(_ key: PostgresWireState.BackendKey) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(Int32(16), Int32(80_877_102), key.processID, key.secretKey)
        return buffer
    }
}

/// Rows of one statement, appended on the connection's event loop as they arrive and read
/// by the job once the query's future has completed (which orders the two). Past
/// `maxRows` or `SQLValue.maxResultBytes` it keeps nothing more and the statement fails
/// with `bad_request` once the server is done: throwing from PostgresNIO's row callback
/// would fail the connection instead.
private final class RowCollector: @unchecked Sendable {
    private(set) var rows: [[SQLValue]] = []
    private var bytes = 0
    private var refusal: String?

    func append(_ row: PostgresRow) {
        guard refusal == nil else { return }
        guard rows.count < PostgresSession.maxRows else {
            refuse("the result has more than \(PostgresSession.maxRows) rows; add a LIMIT or page through it")
            return
        }
        var values: [SQLValue] = []
        values.reserveCapacity(row.count)
        for cell in row {
            let value = PostgresValues.decode(oid: cell.dataType.rawValue, bytes: cell.bytes)
            bytes += value.replyBytes
            values.append(value)
        }
        guard bytes <= SQLValue.maxResultBytes else {
            refuse(SQLValue.resultTooLargeMessage)
            return
        }
        rows.append(values)
    }

    private func refuse(_ message: String) {
        refusal = message
        rows = []
    }

    /// The rows, or the refusal of a result over its bounds.
    func result() throws -> [[SQLValue]] {
        if let refusal { throw BatchFailure(index: nil, code: .badRequest, message: refusal, detail: nil) }
        return rows
    }
}

extension PostgresTarget {
    /// A plain connection for a CancelRequest (never TLS: the server reads the request
    /// before any negotiation).
    func connectForCancel(on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop).connectTimeout(.seconds(2))
        if isUnixSocket {
            return bootstrap.connect(unixDomainSocketPath: socketPath)
        }
        return bootstrap.connect(host: host, port: port)
    }
}

/// What the batch runner and `withTransaction` need: BEGIN and COMMIT go unprepared, job
/// statements through the statement cache.
extension PostgresSession: StatementConnection {
    package func execute(_ statement: SQLStatement) async throws -> StatementResult {
        try await execute(statement, prepare: true)
    }

    package func begin() async throws { _ = try await execute(SQLStatement(sql: "BEGIN"), prepare: false) }
    package func commit() async throws { _ = try await execute(SQLStatement(sql: "COMMIT"), prepare: false) }
    package var isInTransaction: Bool { wire.transactionStatus != .idle }
}
