import DequeModule
import NIOCore
import NIOPosix

/// A PostgreSQL connection driven from its event loop: the hot path Benchmarks/WireSpike
/// measured. A query is Bind/Execute/Sync in one write (Parse and Describe first, once per
/// statement), the answer is read by `QueryStateMachine` as it arrives, and a job that runs on
/// the connection's event loop (poold's PostgreSQL jobs do) sends and is answered with no
/// thread handoff.
package final class WireClient: Sendable {
    package let channel: any Channel
    let handler: WireClientHandler
    package let key: BackendMessage.BackendKey?
    package let parameters: [String: String]

    private init(channel: any Channel, handler: WireClientHandler, key: BackendMessage.BackendKey?, parameters: [String: String]) {
        self.channel = channel
        self.handler = handler
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

    /// Connects, negotiates TLS as `configuration.tls` says, and authenticates. The caller
    /// closes it (`close`): a pool's backend does, or `withClient` does.
    package static func connect(_ configuration: WireConnection.Configuration, on loop: any EventLoop) async throws -> WireClient {
        let tls = try TLSSetup(configuration)
        let tlsSettled = loop.makePromise(of: Void.self)
        let ready = loop.makePromise(of: (BackendMessage.BackendKey?, [String: String]).self)
        let handler = WireClientHandler(configuration: configuration, tlsSettled: tlsSettled.futureResult, ready: ready)
        let bootstrap = ClientBootstrap(group: loop).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try tls.install(on: channel, done: tlsSettled)
                try channel.pipeline.syncOperations.addHandler(handler)
            }
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
        do {
            let (key, parameters) = try await ready.futureResult.get()
            return WireClient(channel: channel, handler: handler, key: key, parameters: parameters)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Runs `sql` (extended protocol, results in text); throws `QueryStateMachine.Failure` for
    /// what the server refused, `WireError` if the connection broke.
    package func execute(_ sql: String, _ parameters: [Frontend.Parameter] = [], rowLimit: Int32 = 0) async throws
        -> QueryStateMachine.Result
    {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: QueryStateMachine.Result.self)
        let request = WireClientHandler.Request(sql: sql, parameters: parameters, rowLimit: rowLimit, promise: promise)
        if loop.inEventLoop {
            handler.enqueue(request)
        } else {
            loop.execute { [handler] in handler.enqueue(request) }
        }
        return try await promise.futureResult.get()
    }

    /// The transaction status of the last ReadyForQuery.
    package var transactionStatus: BackendMessage.TransactionStatus {
        get async throws { try await channel.eventLoop.submit { [handler] in handler.transactionStatus }.get() }
    }

    /// Sends Terminate and closes the connection; what is queued fails.
    package func close() async {
        var buffer = ByteBuffer()
        Frontend.terminate(into: &buffer)
        try? await channel.writeAndFlush(buffer)
        try? await channel.close()
    }
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
        var parameters: [Frontend.Parameter]
        var rowLimit: Int32
        var promise: EventLoopPromise<QueryStateMachine.Result>
    }

    private struct Running {
        var request: Request
        var machine: QueryStateMachine
        var run: PreparedRun
    }

    private enum State {
        case starting(StartupStateMachine)
        case ready
        case running(Running)
        case closed(any Error)
    }

    private var state: State
    private var queue = Deque<Request>()
    private var decoder = BackendMessageDecoder()
    /// Bytes of a message not whole yet.
    private var partial: ByteBuffer?
    private var statements = StatementCache()
    private(set) var transactionStatus = BackendMessage.TransactionStatus.idle
    private var context: ChannelHandlerContext?
    private let tlsSettled: EventLoopFuture<Void>
    private let ready: EventLoopPromise<(BackendMessage.BackendKey?, [String: String])>

    init(
        configuration: WireConnection.Configuration, tlsSettled: EventLoopFuture<Void>,
        ready: EventLoopPromise<(BackendMessage.BackendKey?, [String: String])>
    ) {
        self.state = .starting(StartupStateMachine(configuration))
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
        case .running(var running):
            let action = running.machine.received(message)
            state = .running(running)
            handle(action, running, context: context)
        case .ready:
            switch message {
            case .noticeResponse, .notificationResponse, .parameterStatus: break  // between queries: nothing waits on them
            default: fail(WireError("\(message) with no query running"), context: context)
            }
        case .closed:
            break
        }
    }

    private func handle(_ action: QueryStateMachine.Action, _ running: Running, context: ChannelHandlerContext) {
        switch action {
        case .none, .notice, .notification, .parameterChanged:
            break
        case .write(let buffer):
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .fail(let error):
            fail(error, context: context)
        case .done(let outcome, let status):
            transactionStatus = status
            state = .ready
            switch running.run.settle(outcome, status: status, cache: &statements) {
            case .answer(.success(let result)):
                running.request.promise.succeed(result)
            case .answer(.failure(let failure)):
                running.request.promise.fail(failure)
            case .prepareAgain:
                send(running.request, retried: true, context: context)
                return
            }
            next(context: context)
        }
    }

    /// Takes a request; runs it now if the connection is ready, else after the ones before it.
    func enqueue(_ request: Request) {
        switch state {
        case .closed(let error):
            request.promise.fail(error)
        case .ready:
            guard let context else {
                request.promise.fail(WireError("the connection is not set up"))
                return
            }
            send(request, retried: false, context: context)
        case .starting, .running:
            queue.append(request)
        }
    }

    private func next(context: ChannelHandlerContext) {
        guard case .ready = state, let request = queue.popFirst() else { return }
        send(request, retried: false, context: context)
    }

    private func send(_ request: Request, retried: Bool, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64 + request.sql.utf8.count)
        let run = PreparedRun.start(
            request.sql, request.parameters, rowLimit: request.rowLimit, retried: retried, cache: &statements, into: &buffer)
        state = .running(Running(request: request, machine: QueryStateMachine(rowLimit: request.rowLimit), run: run))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(WireError("the server closed the connection"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error, context: context)
    }

    /// The connection is over: whatever waits learns why, and it closes.
    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        let previous = state
        state = .closed(error)
        switch previous {
        case .starting: ready.fail(error)
        case .running(let running): running.request.promise.fail(error)
        case .ready, .closed: break
        }
        while let request = queue.popFirst() { request.promise.fail(error) }
        if case .closed = previous { return }
        context.close(promise: nil)
    }
}
