import ControlProtocol
import DaemonRuntime
import NIOCore
import NIOPosix
import PoolCore
import PoolKit
import PostgresWire
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
    static let tooManyRows = "the result has more than \(maxRows) rows; add a LIMIT or page through it"

    package let client: WireClient
    let key: BackendMessage.BackendKey
    let target: PostgresTarget
    private let control = Mutex(Control())

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

    init(client: WireClient, key: BackendMessage.BackendKey, target: PostgresTarget) {
        self.client = client
        self.key = key
        self.target = target
    }

    package var isClosed: Bool { client.isClosed }

    /// What a job did that outlives it on this connection (see `WireClient.sessionChanged`).
    var sessionChanged: String? { client.sessionChanged }

    func close() async {
        await client.close()
    }

    /// `SELECT 1`, closing the connection if it does not answer within `limit`.
    func ping(limit: Duration) async throws {
        let watchdog = client.channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: limit.nanoseconds))) { [client] in
            client.abort()
        }
        defer { watchdog.cancel() }
        _ = try await client.run("SELECT 1", StatementQuery(params: [], typed: true))
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

    /// Runs a durable job's statements and then `completion` (its fenced completion) as one
    /// pipeline: one write, one implicit transaction, committed at its Sync only if every
    /// statement and the completion succeeded. A failure of the completion comes back as a
    /// `BatchFailure` whose index is `statements.count`. Stops and failures leave the connection
    /// as `run` does.
    package func runCompleting(
        _ statements: [SQLStatement], completion: (sql: String, params: [String?]), stop: (any StopSource)?
    ) async throws -> [StatementResult] {
        control.withLock { $0 = Control() }
        stop?.onStop { [self] in requestStop() }
        defer { stop?.onStop(nil) }
        do {
            let results = try await withTaskCancellationHandler {
                try await pipeline(statements, completion: completion)
            } onCancel: {
                requestStop()
            }
            await settleCancels()
            return results
        } catch {
            let failure: any Error
            if let pipeline = error as? PipelineStateMachine.Failure {
                failure = Self.failure(pipeline.failure, index: pipeline.index)
            } else {
                failure = Self.failure(error, index: nil)
            }
            try await rollBack(after: failure)
            throw failure
        }
    }

    private func pipeline(_ statements: [SQLStatement], completion: (sql: String, params: [String?])) async throws -> [StatementResult] {
        try beginStatement()
        defer { endStatement() }
        var typed = false
        while true {
            let queries = statements.map { StatementQuery(params: $0.params, typed: typed) }
            var wire = zip(statements, queries).map { statement, query in
                WireStatement(statement.sql, declaring: typed ? PostgresValues.declaredTypes(statement.params) : [], query)
            }
            wire.append(WireStatement(completion.sql, TextQuery(completion.params)))
            do {
                let outcomes = try await client.runPipeline(wire)
                return try zip(queries, outcomes).map { try $0.result($1) }
            } catch is ParametersDoNotFit where !typed {
                typed = true  // as `execute` does: once more with the values' own types
            }
        }
    }

    /// One statement: its columns (even with no rows), rows and, for a write, rows changed.
    ///
    /// A statement is prepared once per connection and then only bound and executed: the
    /// server skips parsing and planning, and fewer messages cross the socket. Params go in the
    /// binary format of the types the server inferred; when a value does not fit (a string
    /// where it inferred an integer), the statement is prepared once more with the values' own
    /// types declared (bool, int8, float8, bytea; strings untyped), exactly as libpq would send
    /// them. At most `maxRows` rows: the server stops at the next one, and the statement fails.
    package func execute(_ statement: SQLStatement) async throws -> StatementResult {
        try beginStatement()
        defer { endStatement() }
        let limit = Int32(Self.maxRows + 1)
        let inferred = StatementQuery(params: statement.params, typed: false)
        do {
            let outcome = try await client.run(statement.sql, inferred, rowLimit: limit)
            return try inferred.result(outcome)
        } catch is ParametersDoNotFit {
            let typed = StatementQuery(params: statement.params, typed: true)
            let declared = PostgresValues.declaredTypes(statement.params)
            let outcome = try await client.run(statement.sql, declaring: declared, typed, rowLimit: limit)
            return try typed.result(outcome)
        }
    }

    /// Rows changed, from a CommandComplete tag (`INSERT 0 3`, `UPDATE 2`); nil for a read.
    static func affected(tag: String) -> Int64? {
        let words = tag.split(separator: " ")
        guard let command = words.first, ["INSERT", "UPDATE", "DELETE", "MERGE"].contains(command), let last = words.last else {
            return nil
        }
        return Int64(last)
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
        if client.isClosed {
            throw ResourceBroken(Self.connectionFailure(error))
        }
        for _ in 0..<3 where client.transactionStatus != .idle && !client.isClosed {
            _ = try? await client.run("ROLLBACK", StatementQuery(params: [], typed: true))
        }
        if client.isClosed {
            throw ResourceBroken(Self.connectionFailure(error))
        }
        if client.transactionStatus != .idle {
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

    package static func failure(_ error: any Error, index: Int?) -> any Error {
        if var batch = error as? BatchFailure {
            batch.index = batch.index ?? index
            return batch
        }
        switch error as? QueryStateMachine.Failure {
        case .rowLimit:
            return BatchFailure(index: index, code: .badRequest, message: tooManyRows, detail: nil)
        case .copyRefused:
            let message = "COPY is not supported: poold runs one statement at a time and moves no COPY data; use INSERT or SELECT"
            return BatchFailure(index: index, code: .badRequest, message: message, detail: nil)
        case .server, nil:
            break
        }
        guard let server = ServerError(error) else {
            guard error is WireError || error is ChannelError || error is IOError else { return error }
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
        let eventLoop = client.channel.eventLoop
        var request = ByteBuffer()
        Frontend.cancelRequest(key, into: &request)
        target.connectForCancel(on: eventLoop).flatMap { [request] channel -> EventLoopFuture<Void> in
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
        case .close: client.abort()
        }
    }

    private func cancelDelivered() {
        pendingCancels.leave()
    }

    /// Returns once every CancelRequest sent for this job has reached the server.
    private func settleCancels() async {
        await pendingCancels.waitForZeroIgnoringCancellation()
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

/// What the batch runner and `withTransaction` need; BEGIN and COMMIT are statements like others.
extension PostgresSession: StatementConnection {
    package func begin() async throws { _ = try await execute(SQLStatement(sql: "BEGIN")) }
    package func commit() async throws { _ = try await execute(SQLStatement(sql: "COMMIT")) }
    package var isInTransaction: Bool { client.transactionStatus != .idle }
}

/// One statement's side of `WireClient.run`, on the connection's event loop: its params bound
/// to the types the server described (or to the values' own, `typed`), results in binary for
/// the types `PostgresValues` decodes and in text for the others, and each row decoded as it
/// arrives. Past `maxRows` or `SQLValue.maxResultBytes` it keeps nothing more, and the
/// statement fails with `bad_request` once the server is done.
final class StatementQuery: WireQuery, @unchecked Sendable {
    private let params: [SQLValue]
    private let typed: Bool
    private var types: [UInt32] = []
    private var rows: [[SQLValue]] = []
    private var bytes = 0
    private var refusal: String?

    init(params: [SQLValue], typed: Bool) {
        self.params = params
        self.typed = typed
    }

    func bind(parameterTypes: [UInt32], columns: [BackendMessage.Column]?) -> WireBinding? {
        let parameters = typed ? PostgresValues.typedParameters(params) : PostgresValues.binaryParameters(params, types: parameterTypes)
        guard let parameters else { return nil }
        types = columns?.map(\.typeOID) ?? []
        rows = []
        bytes = 0
        refusal = nil
        return WireBinding(parameters: parameters, binaryResults: types.map { PostgresValues.knownTypes.contains($0) })
    }

    func row(_ row: BackendMessage.DataRow) {
        guard refusal == nil else { return }
        guard rows.count < PostgresSession.maxRows else {
            refuse(PostgresSession.tooManyRows)
            return
        }
        var values: [SQLValue] = []
        values.reserveCapacity(row.count)
        var cells = row.bytes
        for index in 0..<row.count {
            guard let length = cells.readInteger(as: Int32.self) else { break }
            let cell = length < 0 ? nil : cells.readSlice(length: Int(length))
            let value = PostgresValues.decode(oid: index < types.count ? types[index] : 0, bytes: cell)
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

    /// The statement's result, or the refusal of one over its bounds; read once the query has
    /// been answered (its future orders the two).
    func result(_ outcome: WireOutcome) throws -> StatementResult {
        if let refusal { throw BatchFailure(index: nil, code: .badRequest, message: refusal, detail: nil) }
        return StatementResult(
            columns: outcome.columns?.map(\.name) ?? [], rows: rows, affected: PostgresSession.affected(tag: outcome.tag))
    }
}
