import DequeModule
import NIOCore
import NIOPosix
import Synchronization

/// How a described statement's parameters and results go on the wire.
package struct WireBinding: Sendable {
    package var parameters: [Frontend.Parameter]
    /// Binary results: one entry for every column, or one per column; empty: all in text.
    package var binaryResults: [Bool]

    package init(parameters: [Frontend.Parameter], binaryResults: [Bool]) {
        self.parameters = parameters
        self.binaryResults = binaryResults
    }
}

/// A query's own side of `WireClient.run`, called on the connection's event loop only: how to
/// bind its parameters once the server has described the statement, and where its rows go.
package protocol WireQuery: AnyObject, Sendable {
    /// The binding for the parameter types the server inferred (or was told), and the
    /// statement's columns (nil: it returns no rows); nil when the parameters do not fit those
    /// types, and the query then fails with `ParametersDoNotFit`.
    func bind(parameterTypes: [UInt32], columns: [BackendMessage.Column]?) -> WireBinding?
    /// Each row, in order. A query that is prepared again (its cached plan was invalid) is bound
    /// again, before any row.
    func row(_ row: BackendMessage.DataRow)
}

/// A query with its params as text (nil: NULL), results in text and its rows kept as text:
/// for statements whose values are few and small (the durable queues' store, tests, tools).
/// Its params must match the statement's count, or `bind` refuses them.
package final class TextQuery: WireQuery, @unchecked Sendable {
    let parameters: [Frontend.Parameter]
    /// Read once the query has been answered (its future orders the two).
    package private(set) var rows: [[String?]] = []

    package init(_ values: [String?] = []) {
        parameters = values.map { Frontend.Parameter(bytes: $0.map { Array($0.utf8) }, binary: false) }
    }

    package func bind(parameterTypes: [UInt32], columns: [BackendMessage.Column]?) -> WireBinding? {
        rows = []
        return parameters.count == parameterTypes.count ? WireBinding(parameters: parameters, binaryResults: []) : nil
    }

    package func row(_ row: BackendMessage.DataRow) {
        rows.append(row.columns.map { $0.map { String(buffer: $0) } })
    }
}

/// What a query came to, its rows aside.
package struct WireOutcome: Sendable {
    /// nil: the statement returns no rows.
    package var columns: [BackendMessage.Column]?
    package var parameterTypes: [UInt32]
    /// CommandComplete's tag (`SELECT 1`, `INSERT 0 3`).
    package var tag: String
}

/// `WireQuery.bind` refused the types the server inferred: nothing ran.
package struct ParametersDoNotFit: Error, Sendable {
    package var parameterTypes: [UInt32]
    /// In a pipeline, the statement whose parameters did not fit.
    package var index = 0
}

/// One statement of a pipeline (`WireClient.runPipeline`).
package struct WireStatement: Sendable {
    package var sql: String
    package var declaredTypes: [UInt32]
    package var query: any WireQuery

    package init(_ sql: String, declaring declaredTypes: [UInt32] = [], _ query: any WireQuery) {
        self.sql = sql
        self.declaredTypes = declaredTypes
        self.query = query
    }
}

/// A PostgreSQL connection driven from its event loop: the hot path Benchmarks/WireSpike
/// measured. A statement is prepared once per connection (Parse, Describe and Sync, one round
/// trip); from then on a query is Bind/Execute/Sync in one write, with its parameters and
/// result formats chosen by its `WireQuery` from what the server described. The answer is read
/// by `QueryStateMachine` as it arrives, rows handed to the query in place, and a job that runs
/// on the connection's event loop (poold's PostgreSQL jobs do) sends and is answered with no
/// thread handoff.
package final class WireClient: Sendable {
    package let channel: any Channel
    let handler: WireClientHandler
    let observed: Observed
    package let key: BackendMessage.BackendKey?
    package let parameters: [String: String]

    private init(
        channel: any Channel, handler: WireClientHandler, observed: Observed, key: BackendMessage.BackendKey?,
        parameters: [String: String]
    ) {
        self.channel = channel
        self.handler = handler
        self.observed = observed
        self.key = key
        self.parameters = parameters
    }

    /// Runs `body` with a connected client, and closes it after (Terminate), whatever `body` did.
    package static func withClient<R: Sendable>(
        _ configuration: WireConnection.Configuration, on loop: any EventLoop, _ body: (WireClient) async throws -> R
    ) async throws -> R {
        let client = try await connect(configuration, on: loop)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    /// Connects, negotiates TLS as `configuration.tls` says, and authenticates, within
    /// `configuration.connectTimeout`. The caller closes it (`close`): a pool's backend does, or
    /// `withClient` does.
    package static func connect(_ configuration: WireConnection.Configuration, on loop: any EventLoop) async throws -> WireClient {
        let tls = try TLSSetup(configuration)
        let tlsSettled = loop.makePromise(of: Void.self)
        let ready = loop.makePromise(of: (BackendMessage.BackendKey?, [String: String]).self)
        let observed = Observed()
        let handler = WireClientHandler(configuration: configuration, observed: observed, tlsSettled: tlsSettled.futureResult, ready: ready)
        var bootstrap = ClientBootstrap(group: loop).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try tls.install(on: channel, done: tlsSettled)
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }
        if let limit = configuration.connectTimeout {
            bootstrap = bootstrap.connectTimeout(TimeAmount(limit))
        }
        let channel: any Channel
        do {
            channel =
                switch configuration.address {
                case .tcp(let host, let port): try await bootstrap.connect(host: host, port: port).get()
                case .unixSocket(let path): try await bootstrap.connect(unixDomainSocketPath: path).get()
                }
        } catch {
            tlsSettled.fail(error)
            ready.fail(error)
            throw error
        }
        if tls.mode == .disable { tlsSettled.succeed(()) }
        let timer = configuration.connectTimeout.map { limit in
            loop.scheduleTask(in: TimeAmount(limit)) {
                handler.timedOut(after: limit)
            }
        }
        do {
            let (key, parameters) = try await ready.futureResult.get()
            timer?.cancel()
            return WireClient(channel: channel, handler: handler, observed: observed, key: key, parameters: parameters)
        } catch {
            timer?.cancel()
            try? await channel.close()
            throw error
        }
    }

    /// Runs `sql`: prepared on first use on this connection (with `declaredTypes` for its
    /// parameters, 0 or none: the server infers them), then bound as `query` says and executed.
    /// Throws `QueryStateMachine.Failure` for what the server refused (or the row limit),
    /// `ParametersDoNotFit` when `query` refused the types, `WireError` if the connection broke.
    package func run(_ sql: String, declaring declaredTypes: [UInt32] = [], _ query: some WireQuery, rowLimit: Int32 = 0) async throws
        -> WireOutcome
    {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: WireOutcome.self)
        let request = WireClientHandler.Request(sql: sql, declaredTypes: declaredTypes, query: query, rowLimit: rowLimit, promise: promise)
        if loop.inEventLoop {
            handler.enqueue(.single(request))
        } else {
            loop.execute { [handler] in handler.enqueue(.single(request)) }
        }
        return try await promise.futureResult.get()
    }

    /// Runs `statements` as one pipeline: each is prepared first if this connection has not
    /// prepared it yet (a round trip each, once), then every Bind/Execute goes out in one write
    /// with one Sync and is answered in one read. They run in one implicit transaction unless
    /// they open their own: the first error stops the rest, and nothing of the pipeline
    /// commits. Throws `PipelineStateMachine.Failure` (which statement, and why),
    /// `ParametersDoNotFit` (with its index), or `WireError` if the connection broke. A cached
    /// plan the server no longer has or can use (26000, 0A000) is prepared again and the whole
    /// pipeline sent once more.
    package func runPipeline(_ statements: [WireStatement]) async throws -> [WireOutcome] {
        guard !statements.isEmpty else { return [] }
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: [WireOutcome].self)
        let pipeline = WireClientHandler.Pipeline(statements: statements, promise: promise)
        if loop.inEventLoop {
            handler.enqueue(.pipeline(pipeline))
        } else {
            loop.execute { [handler] in handler.enqueue(.pipeline(pipeline)) }
        }
        return try await promise.futureResult.get()
    }

    /// Runs `sql` with `parameters` as given, results in text, the rows kept (for tests and
    /// tools).
    package func execute(_ sql: String, _ parameters: [Frontend.Parameter] = [], rowLimit: Int32 = 0) async throws
        -> QueryStateMachine.Result
    {
        let collector = RowKeeper(parameters: parameters)
        let outcome = try await run(sql, collector, rowLimit: rowLimit)
        return QueryStateMachine.Result(
            columns: outcome.columns, parameterTypes: outcome.parameterTypes, rows: collector.taken, tag: outcome.tag)
    }

    /// The transaction status of the last ReadyForQuery.
    package var transactionStatus: BackendMessage.TransactionStatus { observed.state.withLock { $0.status } }

    /// What a query did that outlives it on this connection, if anything: a command whose tag
    /// says so (`SessionChange.tags`), or a setting the server reports changed after startup
    /// (a `SET`, `set_config`). Such a connection is not the one a fresh connection would be.
    package var sessionChanged: String? { observed.state.withLock { $0.sessionChanged } }

    /// Whether the connection has ended (closed by either side, or failed).
    package var isClosed: Bool { observed.state.withLock { $0.closed } }

    /// Sends Terminate and closes the connection; what is queued fails.
    package func close() async {
        var buffer = ByteBuffer()
        Frontend.terminate(into: &buffer)
        try? await channel.writeAndFlush(buffer)
        try? await channel.close()
    }

    /// Closes the connection at once, failing what runs and what is queued (a watchdog's way out).
    package func abort() {
        channel.close(promise: nil)
    }

    /// What the connection's event loop learned, for any thread to read.
    final class Observed: Sendable {
        struct State {
            var status = BackendMessage.TransactionStatus.idle
            var sessionChanged: String?
            var closed = false
        }
        let state = Mutex(State())

        func noteSessionChange(_ why: String) {
            state.withLock { if $0.sessionChanged == nil { $0.sessionChanged = why } }
        }
    }
}

/// Commands whose CommandComplete tag says that they change the session for whatever runs next
/// on the connection (or may: a `CREATE` tag does not tell a temporary table from another, nor
/// `SELECT INTO` one).
package enum SessionChange {
    package static let tags = [
        "SET", "RESET", "PREPARE", "DEALLOCATE", "LISTEN", "UNLISTEN", "DECLARE CURSOR", "DISCARD", "LOAD",
        "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE", "CREATE FUNCTION", "CREATE INDEX", "SELECT INTO", "CREATE TABLE AS",
    ]

    /// Why a command with `tag` changed the session; nil if it did not.
    package static func reason(tag: String) -> String? {
        // The tags of plain reads and writes first: they are most of what runs.
        if let first = tag.utf8.first,
            first == UInt8(ascii: "I") || first == UInt8(ascii: "B") || first == UInt8(ascii: "M")
                || tag.hasPrefix("SELECT ") || tag.hasPrefix("UPDATE ") || tag.hasPrefix("DELETE ")
        {
            return nil
        }
        return tags.contains(where: { tag == $0 || tag.hasPrefix($0 + " ") }) ? "it ran \(tag)" : nil
    }
}

/// Binds parameters as given, results in text, and keeps the rows.
private final class RowKeeper: WireQuery, @unchecked Sendable {
    let parameters: [Frontend.Parameter]
    private var rows: [BackendMessage.DataRow] = []

    init(parameters: [Frontend.Parameter]) { self.parameters = parameters }

    func bind(parameterTypes: [UInt32], columns: [BackendMessage.Column]?) -> WireBinding? {
        rows = []
        return WireBinding(parameters: parameters, binaryResults: [])
    }

    func row(_ row: BackendMessage.DataRow) { rows.append(row) }

    /// Read once the query has been answered (its promise orders the two).
    var taken: [BackendMessage.DataRow] { rows }
}

/// The connection's state on its event loop: startup, then one query at a time, the next
/// queued ones waiting their turn.
final class WireClientHandler: ChannelInboundHandler, @unchecked Sendable {
    /// The server's bytes, cut into messages here rather than by a `ByteToMessageHandler`
    /// before it: a message passed down the pipeline is boxed, an allocation per message.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Request {
        var sql: String
        var declaredTypes: [UInt32]
        var query: any WireQuery
        var rowLimit: Int32
        var promise: EventLoopPromise<WireOutcome>

        /// The statement cache's key: the same SQL with other declared types is another statement.
        var key: String { Self.key(sql, declaredTypes) }

        static func key(_ sql: String, _ declaredTypes: [UInt32]) -> String {
            declaredTypes.allSatisfy({ $0 == 0 }) ? sql : sql + "\u{0}" + declaredTypes.map(String.init).joined(separator: ",")
        }
    }

    struct Pipeline {
        var statements: [WireStatement]
        var promise: EventLoopPromise<[WireOutcome]>
        var retried = false

        func key(_ index: Int) -> String {
            Request.key(statements[index].sql, statements[index].declaredTypes)
        }
    }

    enum Pending {
        case single(Request)
        case pipeline(Pipeline)

        func fail(_ error: any Error) {
            switch self {
            case .single(let request): request.promise.fail(error)
            case .pipeline(let pipeline): pipeline.promise.fail(error)
            }
        }
    }

    /// A statement being prepared (Parse, Describe, Sync) before its query or its pipeline goes out.
    private struct Preparing {
        enum Owner {
            case single(Request, retried: Bool)
            case pipeline(Pipeline, index: Int)
        }
        var owner: Owner
        /// The statement cache's key for it.
        var key: String
        var name: String
        var machine: QueryStateMachine
    }

    /// A prepared statement's Bind/Execute/Sync out, its answer coming.
    private struct Running {
        var request: Request
        var machine: QueryStateMachine
        var retried: Bool
        var entry: StatementCache.Entry
    }

    private struct RunningPipeline {
        var pipeline: Pipeline
        var entries: [StatementCache.Entry]
        var machine: PipelineStateMachine
    }

    private enum State {
        case starting(StartupStateMachine)
        case ready
        case preparing(Preparing)
        case running(Running)
        case pipelining(RunningPipeline)
        case closed(any Error)
    }

    private var state: State
    private var queue = Deque<Pending>()
    private var decoder = BackendMessageDecoder()
    /// Bytes of a message not whole yet.
    private var partial: ByteBuffer?
    private var statements = StatementCache()
    private var context: ChannelHandlerContext?
    private let observed: WireClient.Observed
    private let onNotice: (@Sendable (BackendMessage.ServerFields) -> Void)?
    private let onNotification: (@Sendable (String, String) -> Void)?
    private let tlsSettled: EventLoopFuture<Void>
    private let ready: EventLoopPromise<(BackendMessage.BackendKey?, [String: String])>

    init(
        configuration: WireConnection.Configuration, observed: WireClient.Observed, tlsSettled: EventLoopFuture<Void>,
        ready: EventLoopPromise<(BackendMessage.BackendKey?, [String: String])>
    ) {
        self.state = .starting(StartupStateMachine(configuration))
        self.observed = observed
        self.onNotice = configuration.onNotice
        self.onNotification = configuration.onNotification
        self.tlsSettled = tlsSettled
        self.ready = ready
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        // The startup message goes out once TLS is settled (at once without TLS).
        tlsSettled.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            guard case .starting(let machine) = self.state else { return }
            switch result {
            case .success:
                context.writeAndFlush(self.wrapOutboundOut(machine.startupMessage), promise: nil)
            case .failure(let error):
                self.fail(error, context: context)
            }
        }
        context.fireChannelActive()
    }

    /// Connecting took longer than the configured limit.
    func timedOut(after limit: Duration) {
        guard case .starting = state, let context else { return }
        fail(WireError("connecting took longer than connect_timeout (\(limit))", kind: .closed), context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var held = partial {
            held.writeBuffer(&buffer)
            buffer = held
            partial = nil
        }
        while true {
            let message: BackendMessage
            do {
                guard let decoded = try decoder.decode(buffer: &buffer) else { break }
                message = decoded
            } catch {
                fail(error, context: context)
                return
            }
            received(message, context: context)
            if case .closed = state { return }
        }
        if buffer.readableBytes > 0 { partial = buffer }
    }

    private func received(_ message: BackendMessage, context: ChannelHandlerContext) {
        switch state {
        case .starting(var machine):
            let action = machine.received(message)
            state = .starting(machine)
            switch action {
            case .none: break
            case .write(let buffer): context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            case .ready(let key, let parameters):
                state = .ready
                ready.succeed((key, parameters))
                next(context: context)
            case .refused(let fields): fail(WireConnection.ServerError(fields: fields), context: context)
            case .fail(let error): fail(error, context: context)
            }
        case .preparing(var preparing):
            let action = preparing.machine.received(message)
            state = .preparing(preparing)
            if let (outcome, _) = perform(action, context: context) { prepared(preparing, outcome, context: context) }
        case .running(var running):
            let action = running.machine.received(message)
            if case .row(let row) = action {
                // The hot path: no copy of the state back.
                running.request.query.row(row)
                return
            }
            state = .running(running)
            if let (outcome, status) = perform(action, context: context) { executed(running, outcome, status: status, context: context) }
        case .pipelining(var running):
            let action = running.machine.received(message)
            if case .row(let index, let row) = action {
                running.pipeline.statements[index].query.row(row)
                return
            }
            state = .pipelining(running)
            switch action {
            case .none, .row: break
            case .notification(let channel, let payload): onNotification?(channel, payload)
            case .notice(let fields): onNotice?(fields)
            case .parameterChanged(let name, _): observed.noteSessionChange("it changed \(name)")
            case .write(let buffer): context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            case .fail(let error): fail(error, context: context)
            case .done(let outcome, let status):
                observed.state.withLock { $0.status = status }
                state = .ready
                pipelineDone(running, outcome, status: status, context: context)
            }
        case .ready:
            switch message {
            case .noticeResponse(let fields): onNotice?(fields)
            case .parameterStatus(let name, _): observed.noteSessionChange("it changed \(name)")
            case .notificationResponse(_, let channel, let payload): onNotification?(channel, payload)
            default: fail(WireError("\(message) with no query running"), context: context)
            }
        case .closed:
            break
        }
    }

    /// What a query's machine hands out between messages is done here; at its end (returned) the
    /// connection is ready again, and the caller settles the outcome.
    private func perform(
        _ action: QueryStateMachine.Action, context: ChannelHandlerContext
    ) -> (Result<QueryStateMachine.Result, QueryStateMachine.Failure>, BackendMessage.TransactionStatus)? {
        switch action {
        case .none, .row:
            break
        case .notification(let channel, let payload):
            onNotification?(channel, payload)
        case .notice(let fields):
            onNotice?(fields)
        case .parameterChanged(let name, _):
            observed.noteSessionChange("it changed \(name)")
        case .write(let buffer):
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .fail(let error):
            fail(error, context: context)
        case .done(let outcome, let status):
            observed.state.withLock { $0.status = status }
            state = .ready
            return (outcome, status)
        }
        return nil
    }

    /// Parse and Describe answered: the statement is cached and its query bound (or its pipeline
    /// sent on), or it failed.
    private func prepared(
        _ preparing: Preparing, _ outcome: Result<QueryStateMachine.Result, QueryStateMachine.Failure>, context: ChannelHandlerContext
    ) {
        switch outcome {
        case .success(let result):
            let entry = StatementCache.Entry(name: preparing.name, parameterTypes: result.parameterTypes ?? [], columns: result.columns)
            statements.store(preparing.key, entry)
            switch preparing.owner {
            case .single(let request, let retried): bind(request, entry, retried: retried, context: context)
            case .pipeline(let pipeline, _): send(pipeline, context: context)
            }
        case .failure(let failure):
            statements.discard(name: preparing.name)  // its Parse may have gone through
            switch preparing.owner {
            case .single(let request, _): request.promise.fail(failure)
            case .pipeline(let pipeline, let index): pipeline.promise.fail(PipelineStateMachine.Failure(index: index, failure: failure))
            }
            next(context: context)
        }
    }

    /// Bind/Execute answered. A cached plan the server dropped (26000) or can no longer use
    /// (0A000) is forgotten and the statement prepared again, once, outside a failed transaction.
    private func executed(
        _ running: Running, _ outcome: Result<QueryStateMachine.Result, QueryStateMachine.Failure>,
        status: BackendMessage.TransactionStatus,
        context: ChannelHandlerContext
    ) {
        let entry = running.entry
        switch outcome {
        case .success(let result):
            if let why = SessionChange.reason(tag: result.tag) { observed.noteSessionChange(why) }
            if result.tag == "DISCARD ALL" || result.tag == "DEALLOCATE ALL" { statements.forgetAll() }
            running.request.promise.succeed(WireOutcome(columns: entry.columns, parameterTypes: entry.parameterTypes, tag: result.tag))
        case .failure(.server(let fields))
        where !running.retried && ["26000", "0A000"].contains(fields.sqlState) && status != .failedTransaction:
            statements.forget(running.request.key)
            statements.discard(name: entry.name)
            send(running.request, retried: true, context: context)
            return
        case .failure(let failure):
            running.request.promise.fail(failure)
        }
        next(context: context)
    }

    /// Takes a request; runs it now if the connection is ready, else after the ones before it.
    func enqueue(_ pending: Pending) {
        switch state {
        case .closed(let error):
            pending.fail(error)
        case .ready:
            guard let context else {
                pending.fail(WireError("the connection is not set up"))
                return
            }
            start(pending, context: context)
        case .starting, .preparing, .running, .pipelining:
            queue.append(pending)
        }
    }

    private func next(context: ChannelHandlerContext) {
        guard case .ready = state, let pending = queue.popFirst() else { return }
        start(pending, context: context)
    }

    private func start(_ pending: Pending, context: ChannelHandlerContext) {
        switch pending {
        case .single(let request): send(request, retried: false, context: context)
        case .pipeline(let pipeline): send(pipeline, context: context)
        }
    }

    // MARK: Pipelines

    /// Prepares the first statement not cached yet; once all are, sends every Bind/Execute and one
    /// Sync in one write.
    private func send(_ pipeline: Pipeline, context: ChannelHandlerContext) {
        for index in pipeline.statements.indices where statements.lookUp(pipeline.key(index)) == nil {
            let statement = pipeline.statements[index]
            prepare(
                statement.sql, statement.declaredTypes, key: pipeline.key(index), for: .pipeline(pipeline, index: index), context: context)
            return
        }
        let entries = pipeline.statements.indices.compactMap { statements.lookUp(pipeline.key($0)) }
        guard entries.count == pipeline.statements.count else {
            pipeline.promise.fail(WireError("a pipeline of \(pipeline.statements.count) statements does not fit the statement cache"))
            next(context: context)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 * pipeline.statements.count)
        for old in statements.takeClosing() { Frontend.close(statement: old, into: &buffer) }
        for (index, entry) in entries.enumerated() {
            guard let binding = pipeline.statements[index].query.bind(parameterTypes: entry.parameterTypes, columns: entry.columns)
            else {
                pipeline.promise.fail(ParametersDoNotFit(parameterTypes: entry.parameterTypes, index: index))
                next(context: context)
                return
            }
            Frontend.bind(statement: entry.name, parameters: binding.parameters, binaryResults: binding.binaryResults, into: &buffer)
            Frontend.execute(maxRows: 0, into: &buffer)
        }
        Frontend.sync(into: &buffer)
        let machine = PipelineStateMachine(count: entries.count)
        state = .pipelining(RunningPipeline(pipeline: pipeline, entries: entries, machine: machine))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func pipelineDone(
        _ running: RunningPipeline, _ outcome: Result<[String], PipelineStateMachine.Failure>, status: BackendMessage.TransactionStatus,
        context: ChannelHandlerContext
    ) {
        switch outcome {
        case .success(let tags):
            for tag in tags {
                if let why = SessionChange.reason(tag: tag) { observed.noteSessionChange(why) }
                if tag == "DISCARD ALL" || tag == "DEALLOCATE ALL" { statements.forgetAll() }
            }
            let outcomes = zip(running.entries, tags).map { entry, tag in
                WireOutcome(columns: entry.columns, parameterTypes: entry.parameterTypes, tag: tag)
            }
            running.pipeline.promise.succeed(outcomes)
        case .failure(let failure):
            if case .server(let fields) = failure.failure, !running.pipeline.retried, ["26000", "0A000"].contains(fields.sqlState),
                status != .failedTransaction, running.entries.indices.contains(failure.index)
            {
                // The implicit transaction was rolled back: prepare that statement again and send it all once more.
                statements.forget(running.pipeline.key(failure.index))
                statements.discard(name: running.entries[failure.index].name)
                var again = running.pipeline
                again.retried = true
                send(again, context: context)
                return
            }
            running.pipeline.promise.fail(failure)
        }
        next(context: context)
    }

    /// A cached statement is bound at once; another is prepared first: Parse, Describe, Sync.
    private func send(_ request: Request, retried: Bool, context: ChannelHandlerContext) {
        if let entry = statements.lookUp(request.key) {
            bind(request, entry, retried: retried, context: context)
            return
        }
        prepare(request.sql, request.declaredTypes, key: request.key, for: .single(request, retried: retried), context: context)
    }

    /// Parse, Describe and Sync in one write, with evicted statements closed before.
    private func prepare(_ sql: String, _ declaredTypes: [UInt32], key: String, for owner: Preparing.Owner, context: ChannelHandlerContext)
    {
        var buffer = context.channel.allocator.buffer(capacity: 64 + sql.utf8.count)
        for old in statements.takeClosing() { Frontend.close(statement: old, into: &buffer) }
        let name = statements.newName()
        Frontend.parse(statement: name, sql: sql, parameterTypes: declaredTypes, into: &buffer)
        Frontend.describe(statement: name, into: &buffer)
        Frontend.sync(into: &buffer)
        state = .preparing(Preparing(owner: owner, key: key, name: name, machine: QueryStateMachine()))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Bind/Execute/Sync in one write, with evicted statements closed before.
    private func bind(_ request: Request, _ entry: StatementCache.Entry, retried: Bool, context: ChannelHandlerContext) {
        guard let binding = request.query.bind(parameterTypes: entry.parameterTypes, columns: entry.columns) else {
            request.promise.fail(ParametersDoNotFit(parameterTypes: entry.parameterTypes))
            next(context: context)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 + 16 * binding.parameters.count)
        for old in statements.takeClosing() { Frontend.close(statement: old, into: &buffer) }
        Frontend.bind(statement: entry.name, parameters: binding.parameters, binaryResults: binding.binaryResults, into: &buffer)
        Frontend.execute(maxRows: request.rowLimit, into: &buffer)
        Frontend.sync(into: &buffer)
        let machine = QueryStateMachine(rowLimit: request.rowLimit, streamsRows: true)
        state = .running(Running(request: request, machine: machine, retried: retried, entry: entry))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(WireError("the connection to the server closed", kind: .closed), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error, context: context)
    }

    /// The connection is over: whatever waits learns why, and it closes.
    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        let previous = state
        state = .closed(error)
        observed.state.withLock { $0.closed = true }
        switch previous {
        case .starting: ready.fail(error)
        case .preparing(let preparing):
            switch preparing.owner {
            case .single(let request, _): request.promise.fail(error)
            case .pipeline(let pipeline, _): pipeline.promise.fail(error)
            }
        case .running(let running): running.request.promise.fail(error)
        case .pipelining(let running): running.pipeline.promise.fail(error)
        case .ready, .closed: break
        }
        while let pending = queue.popFirst() { pending.fail(error) }
        if case .closed = previous { return }
        context.close(promise: nil)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = .nanoseconds(overflow ? .max : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
