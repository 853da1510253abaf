import NIOCore
import NIOPosix

/// A PostgreSQL connection on our own protocol code, read as an async sequence of messages:
/// TLS as libpq's `sslmode` says, startup (`StartupStateMachine`), then the simple and the
/// extended query protocols (`QueryStateMachine`). For tests and tools, where each step is
/// easy to follow; the hot path is `WireClient`, the same machines driven from the event loop.
/// Its `Configuration` and `AuthMethod` serve both. The pools do not use either yet (issue 16).
package final class WireConnection: Sendable {
    package struct Configuration: Sendable {
        package enum Address: Sendable {
            case tcp(host: String, port: Int)
            case unixSocket(path: String)
        }

        package var address: Address
        package var user: String
        package var database: String
        package var password: String?
        package var applicationName = "poold"
        /// libpq's `sslmode`, `sslrootcert`; the name the server's certificate must carry for
        /// `verifyFull` (by default the host connected to).
        /// The ways the server may authenticate poold (libpq's `require_auth`); nil: any.
        /// `requireAuthText` is how the config wrote it, for the refusal's message.
        package var allowedAuth: Set<AuthMethod>?
        package var requireAuthText = ""
        package var tls = TLSMode.disable
        package var rootCertificate: String?
        package var serverName: String?
        /// More startup parameters (settings for the session), after user, database and
        /// application_name.
        package var startupParameters: [(String, String)] = []
        /// How long connecting, TLS and authentication may take together (nil: no limit).
        package var connectTimeout: Duration?
        /// Called on the event loop with each NoticeResponse (`WireClient` only).
        package var onNotice: (@Sendable (BackendMessage.ServerFields) -> Void)?
        /// Called on the event loop with each NotificationResponse (channel, payload) of a
        /// `LISTEN` on this connection, whenever it arrives (`WireClient` only).
        package var onNotification: (@Sendable (String, String) -> Void)?

        package init(address: Address, user: String, database: String, password: String?) {
            self.address = address
            self.user = user
            self.database = database
            self.password = password
        }
    }

    /// A way a server authenticates a client, by libpq's `require_auth` names.
    package enum AuthMethod: String, Sendable, CaseIterable {
        case password, md5
        case scramSHA256 = "scram-sha-256"
        case gss, sspi
        /// The server let the client in without asking anything (trust, peer).
        case none
    }

    /// The server refused or failed a request: its fields (SQLSTATE, message, …).
    package struct ServerError: Error, Sendable, CustomStringConvertible {
        package var fields: BackendMessage.ServerFields
        package var description: String { "\(fields.severity) \(fields.sqlState): \(fields.message)" }
    }

    package let channel: NIOAsyncChannel<BackendMessage, ByteBuffer>
    package let key: BackendMessage.BackendKey?
    package let parameters: [String: String]

    private init(channel: NIOAsyncChannel<BackendMessage, ByteBuffer>, key: BackendMessage.BackendKey?, parameters: [String: String]) {
        self.channel = channel
        self.key = key
        self.parameters = parameters
    }

    /// Connects, authenticates, and runs `body` with the ready connection; closes it after
    /// (sending Terminate), whatever `body` did.
    package static func withConnection<R: Sendable>(
        _ configuration: Configuration, on loop: any EventLoop, _ body: (WireConnection, inout Session) async throws -> R
    ) async throws -> R {
        let bootstrap = ClientBootstrap(group: loop)
        let tls = try TLSSetup(configuration)
        let tlsSettled = loop.makePromise(of: Void.self)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<BackendMessage, ByteBuffer>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try tls.install(on: channel, done: tlsSettled)
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(BackendMessageDecoder()))
                return try NIOAsyncChannel<BackendMessage, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        let channel: NIOAsyncChannel<BackendMessage, ByteBuffer>
        do {
            channel =
                switch configuration.address {
                case .tcp(let host, let port): try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
                case .unixSocket(let path): try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
                }
        } catch {
            tlsSettled.fail(error)
            throw error
        }
        if tls.mode == .disable { tlsSettled.succeed(()) }
        return try await channel.executeThenClose { inbound, outbound in
            try await tlsSettled.futureResult.get()
            var session = Session(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            let (key, parameters) = try await session.start(configuration)
            let connection = WireConnection(channel: channel, key: key, parameters: parameters)
            do {
                let result = try await body(connection, &session)
                try? await session.terminate()
                return result
            } catch {
                try? await session.terminate()
                throw error
            }
        }
    }

    /// The conversation on one connection: what was read and what to write next.
    package struct Session {
        var inbound: NIOAsyncChannelInboundStream<BackendMessage>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
        package var statements = StatementCache()
        /// From the last ReadyForQuery.
        package private(set) var transactionStatus = BackendMessage.TransactionStatus.idle
        /// Notices, parameter changes and notifications seen during queries, oldest first (the
        /// last `eventsKept`).
        package private(set) var events: [QueryStateMachine.Action] = []
        static let eventsKept = 100

        private mutating func next() async throws -> BackendMessage {
            guard let message = try await inbound.next() else { throw WireError("the server closed the connection") }
            return message
        }

        private func send(_ write: (inout ByteBuffer) -> Void) async throws {
            var buffer = ByteBuffer()
            write(&buffer)
            try await outbound.write(buffer)
        }

        /// Startup and authentication, up to the first ReadyForQuery (`StartupStateMachine`).
        mutating func start(_ configuration: Configuration) async throws -> (BackendMessage.BackendKey?, [String: String]) {
            var machine = StartupStateMachine(configuration)
            try await outbound.write(machine.startupMessage)
            while true {
                switch machine.received(try await next()) {
                case .none:
                    continue
                case .write(let buffer):
                    try await outbound.write(buffer)
                case .ready(let key, let parameters):
                    return (key, parameters)
                case .refused(let fields):
                    throw ServerError(fields: fields)
                case .fail(let error):
                    throw error
                }
            }
        }

        /// Runs `sql` with the simple query protocol; each row's columns as text (nil: NULL).
        package mutating func simpleQuery(_ sql: String) async throws -> [[String?]] {
            try await send { Frontend.query(sql, into: &$0) }
            var rows: [[String?]] = []
            var failure: ServerError?
            while true {
                switch try await next() {
                case .dataRow(let row):
                    rows.append(row.columns.map { $0.map { String(buffer: $0) } })
                case .errorResponse(let fields):
                    failure = ServerError(fields: fields)
                case .readyForQuery:
                    if let failure { throw failure }
                    return rows
                default:
                    continue
                }
            }
        }

        /// Runs `sql` with the extended protocol: Parse and Describe once per connection (the
        /// statement is then cached), Bind/Execute/Sync every time, in one write. Results come
        /// back in text. A cached plan the server no longer has or can no longer use (26000,
        /// 0A000) is dropped and the statement prepared again, once, outside a failed
        /// transaction. `rowLimit`: at most that many rows, stopped on the server (0: none).
        package mutating func execute(
            _ sql: String, _ parameters: [Frontend.Parameter] = [], rowLimit: Int32 = 0
        ) async throws -> QueryStateMachine.Result {
            var retried = false
            while true {
                var buffer = ByteBuffer()
                let run = PreparedRun.start(sql, parameters, rowLimit: rowLimit, retried: retried, cache: &statements, into: &buffer)
                try await outbound.write(buffer)
                let (outcome, status) = try await answer(rowLimit: rowLimit)
                transactionStatus = status
                switch run.settle(outcome, status: status, cache: &statements) {
                case .answer(let result): return try result.get()
                case .prepareAgain: retried = true
                }
            }
        }

        /// Reads the query's answer, up to its ReadyForQuery.
        private mutating func answer(
            rowLimit: Int32
        ) async throws -> (Result<QueryStateMachine.Result, QueryStateMachine.Failure>, BackendMessage.TransactionStatus) {
            var machine = QueryStateMachine(rowLimit: rowLimit)
            while true {
                switch machine.received(try await next()) {
                case .none:
                    continue
                case .write(let buffer):
                    try await outbound.write(buffer)
                case .fail(let error):
                    throw error
                case .done(let outcome, let status):
                    return (outcome, status)
                case let event:
                    if events.count == Self.eventsKept { events.removeFirst() }
                    events.append(event)
                }
            }
        }

        mutating func terminate() async throws {
            try await send { Frontend.terminate(into: &$0) }
        }
    }
}
