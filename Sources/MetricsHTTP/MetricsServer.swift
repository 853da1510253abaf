import ControlSocket
import Jobs
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The Prometheus scrape endpoint (`[metrics] listen`): `GET /metrics` serves the same text as
/// the `metrics` op, `GET /healthz` says whether poold serves. One request per connection, each
/// bounded (`HTTPLimits`): a few connections, a small request, a deadline for it to arrive and
/// one for the answer to be taken.
///
/// The listener is bound before the services start (`start`), so that an address poold cannot
/// listen on stops it with the error at the `listen` line, and moved by a reload (`move`). Each
/// listener is served by a child task that holds its connections; a moved listener's
/// connections finish on their own. On graceful shutdown — which comes after the control
/// server's, so `/healthz` answers 503 while jobs finish — the listener closes, connections
/// still waiting for their request are closed, and answers being written are let go out.
package final class MetricsServer<C: Clock>: Service, MetricsEndpoint where C.Duration == Duration {
    typealias Listener = NIOAsyncChannel<any Channel, Never>

    private struct State: Sendable {
        var current: (address: ListenAddress, listener: Listener)?
        var stopped = false
        /// Connections whose request has not arrived yet: stopping closes them.
        var reading: [ObjectIdentifier: any Channel] = [:]
    }

    let context: DaemonContext
    let loops: any EventLoopGroup
    let clock: C
    private let state = Mutex(State())
    /// One move at a time: two reloads must not bind the same new address against each other.
    private let moves = AsyncCounter(limit: 1)
    /// Each listener bound, for `run` to serve.
    private let bound: AsyncStream<Listener>
    private let serveNext: AsyncStream<Listener>.Continuation
    /// Connections open on every listener, counting those being refused.
    private let connections = Atomic<Int>(0)

    package init(context: DaemonContext, loops: any EventLoopGroup, clock: C) {
        self.context = context
        self.loops = loops
        self.clock = clock
        (bound, serveNext) = AsyncStream.makeStream(of: Listener.self)
    }

    var logger: Logger { context.logger }

    /// The address listened on, if any.
    package var address: ListenAddress? { state.withLock { $0.current?.address } }

    // MARK: Listening

    /// Binds `[metrics] listen`, if set, before the services run. Throws the error at its line.
    package func start(_ settings: MetricsSettings, file: String) async throws(ConfigError) {
        try await move(to: settings, file: file)
    }

    package func move(to settings: MetricsSettings, file: String) async throws(ConfigError) {
        await moves.enter()
        defer { moves.leave() }
        let running = address
        guard settings.listen != running else { return }
        guard let address = settings.listen else {
            await replace(with: nil)
            logger.notice("metrics endpoint stopped", metadata: ["listen": "\(running.map(String.init(describing:)) ?? "")"])
            return
        }
        func failure(_ error: any Error) -> ConfigError {
            ConfigError(file: file, line: settings.listenLine, message: "[metrics]: cannot listen on \(address) (\(Self.reason(error)))")
        }
        let listener: Listener
        do {
            listener = try await bind(address)
        } catch {
            // poold's own listener may hold the port: a move to another address on it
            // (127.0.0.1 to 0.0.0.0) lets it go first, and takes it back if the new one fails.
            guard let running, running.port == address.port, (error as? IOError)?.errnoCode == EADDRINUSE else {
                throw failure(error)
            }
            await replace(with: nil)
            do {
                listener = try await bind(address)
            } catch {
                if let back = try? await bind(running) {
                    await replace(with: (running, back))
                } else {
                    logger.error("metrics endpoint stopped: its old address could not be bound again", metadata: ["listen": "\(running)"])
                }
                throw failure(error)
            }
        }
        await replace(with: (address, listener))
        logger.notice("metrics endpoint listening", metadata: ["listen": "\(address)"])
    }

    /// Puts `next` in place of the current listener, and returns once that one is closed (its
    /// port free again; its connections finish on their own). Once stopped, closes `next` instead.
    private func replace(with next: (address: ListenAddress, listener: Listener)?) async {
        let closing: Listener? = state.withLock { state in
            if state.stopped { return next?.listener }
            let old = state.current?.listener
            state.current = next
            if let next { serveNext.yield(next.listener) }
            return old
        }
        try? await closing?.channel.close()
    }

    private func bind(_ address: ListenAddress) async throws -> Listener {
        let logger = logger
        let socketAddress = try SocketAddress(ipAddress: address.host, port: address.port)
        return try await ServerBootstrap(group: loops)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPause(logger: logger))
                }
            }
            // Read nothing until the connection's task has taken it (see `serve`).
            .childChannelOption(.autoRead, value: false)
            .bind(to: socketAddress) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(RequestSizeLimit(limit: HTTPLimits.maxRequestBytes))
                    try pipeline.addHandler(HTTPResponseEncoder())
                    try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                    return channel
                }
            }
    }

    private static func reason(_ error: any Error) -> String {
        guard let io = error as? IOError else { return "\(error)" }
        switch io.errnoCode {
        case EADDRINUSE: return "address already in use; choose another port or stop what listens there"
        case EADDRNOTAVAIL: return "no such address on this machine"
        case EACCES: return "permission denied: a port below 1024 needs CAP_NET_BIND_SERVICE, which the shipped unit does not grant"
        default: return String(cString: strerror(io.errnoCode))
        }
    }

    // MARK: Serving

    package func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for await listener in bound {
                    group.addTask { try await self.accept(on: listener) }
                }
            }
        } onGracefulShutdown: {
            self.stop()
        }
        stop()
    }

    /// Closes the listener and every connection still waiting for its request; a listener
    /// bound afterwards is closed at once. For graceful shutdown, and for the daemon's unwinding
    /// should the services never run.
    package func stop() {
        let (listener, reading) = state.withLock { state in
            state.stopped = true
            defer {
                state.current = nil
                state.reading = [:]
            }
            return (state.current?.listener, Array(state.reading.values))
        }
        serveNext.finish()
        listener?.channel.close(promise: nil)
        for channel in reading { channel.close(promise: nil) }
    }

    /// Serves one listener's connections until it closes, then waits for them.
    private func accept(on listener: Listener) async throws {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await channel in inbound {
                        let open = connections.wrappingAdd(1, ordering: .relaxed).newValue
                        group.addTask {
                            defer { self.connections.wrappingSubtract(1, ordering: .relaxed) }
                            await self.serve(channel, busy: open > HTTPLimits.maxConnections)
                        }
                    }
                }
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The listener failed: poold goes on without it (its connections have finished).
            logger.error("metrics endpoint stopped accepting", metadata: ["error": "\(error)"])
        }
    }

    /// One connection: reads its request's head within `requestTimeout`, answers it within
    /// `writeTimeout`, closes it. `busy`: past `maxConnections`, answered 503 unread.
    private func serve(_ channel: any Channel, busy: Bool) async {
        guard track(channel) else {
            channel.close(promise: nil)
            return
        }
        defer { untrack(channel) }
        let http: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
        do {
            http = try await channel.eventLoop.submit {
                let wrapped = try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                if !busy { try channel.syncOptions?.setOption(.autoRead, value: true) }
                return wrapped
            }.get()
        } catch {
            channel.close(promise: nil)
            return
        }
        let context = context
        // Whatever ends it (the client gone, an answer not taken in time, cancellation), the
        // connection is closed and there is nobody left to tell.
        try? await http.executeThenClose { inbound, _ in
            let answer: HTTPAnswer
            let received: Received = busy ? .refused(.busy) : try await read(inbound)
            switch received {
            case .closed:
                return
            case .refused(let refusal):
                answer = .refusing(refusal)
            case .request(let head):
                answer = .route(method: head.method, uri: head.uri, state: context.state, metrics: context.metricsText)
            }
            // The request is in: stopping lets its answer go out.
            untrack(channel)
            try await send(answer, on: channel)
        }
    }

    /// Writes the answer and returns once the socket has taken all of it (closing the channel
    /// before would drop what it has not), or closes the channel if that takes longer than
    /// `writeTimeout`: a client that does not read is cut off.
    private func send(_ answer: HTTPAnswer, on channel: any Channel) async throws {
        channel.write(HTTPServerResponsePart.head(answer.head), promise: nil)
        if !answer.omitsBody {
            channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: answer.body))), promise: nil)
        }
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: written)
        try await withTimeout(HTTPLimits.writeTimeout, clock: clock) {
            try await withTaskCancellationHandler {
                try await written.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        }
    }

    private enum Received: Sendable {
        case request(HTTPRequestHead)
        case refused(HTTPAnswer.Refusal)
        /// The client went away: nobody to answer.
        case closed
    }

    /// The request, once its head has arrived, or what was wrong with it.
    private func read(_ inbound: NIOAsyncChannelInboundStream<HTTPServerRequestPart>) async throws -> Received {
        do {
            return try await withTimeout(HTTPLimits.requestTimeout, clock: clock) {
                // The head is all it takes: no answer depends on a body.
                do {
                    for try await part in inbound {
                        if case .head(let head) = part { return .request(head) }
                    }
                } catch is RequestTooLarge {
                    return .refused(.headTooLarge)
                }
                // The stream also ends when the timeout cancels the read.
                try Task.checkCancellation()
                return .closed
            }
        } catch is TimeoutError {
            return .refused(.tooSlow)
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as HTTPParserError {
            return .refused(error == .headerOverflow ? .headTooLarge : .malformed)
        } catch is IOError, is ChannelError {
            return .closed
        } catch {
            return .refused(.malformed)
        }
    }

    /// Registers a connection waiting for its request; false once stopped.
    private func track(_ channel: any Channel) -> Bool {
        state.withLock { state in
            guard !state.stopped else { return false }
            state.reading[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    private func untrack(_ channel: any Channel) {
        _ = state.withLock { $0.reading.removeValue(forKey: ObjectIdentifier(channel)) }
    }
}
