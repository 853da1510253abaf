import DaemonRuntime
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PoolConfig
import PoolCore
import PoolKit
import PostgresNIO
import Synchronization

/// PostgreSQL connections (PostgresNIO's `PostgresConnection`) for one pool.
///
/// poold opens the socket itself and hands it to PostgresNIO as an established channel, so
/// that a `PostgresWireSniffer` can sit in front of PostgresNIO and learn what its API does
/// not say: the cancel key, the transaction status, the result's columns.
package struct PostgresBackend: PoolBackend {
    package typealias Resource = PostgresSession

    let settings: PostgresSettings
    let target: PostgresTarget
    let group: any EventLoopGroup
    /// PostgresNIO's own log lines (it logs at debug and trace).
    let logger: Logger
    /// Where `credential` names are looked up ($CREDENTIALS_DIRECTORY).
    let credentialsDirectory: String?

    private static let connectionIDs = Atomic<Int>(0)

    /// Asked of every connection: while a statement runs, the server checks poold's socket
    /// once a second and, when poold is gone (SIGKILL, OOM kill, crash), aborts the statement
    /// and rolls its transaction back. Without it a server notices a dead client only at its
    /// next read or write on the socket, so a long statement (a `pg_sleep`, a lock wait, a
    /// slow scan) would keep its transaction's locks until it ended by itself.
    ///
    /// PostgreSQL 14 added the setting. An older server refuses it at startup (FATAL
    /// "unrecognized configuration parameter"), as does one on a platform without POLLRDHUP
    /// (it must be 0 there) and PgBouncer (unsupported startup parameter): each such error
    /// names the parameter, and the pool then connects without it from then on, rather than
    /// requiring PostgreSQL 14.
    static let clientCheck = (name: "client_connection_check_interval", value: "1s")
    /// Whether this pool's server refused `clientCheck`, remembered for the pool's life.
    private let clientCheckRefused = ClientCheckRefusal()

    /// Where the password file is read: a thread of its own, so that a slow or stuck file system
    /// holds up neither the event loop nor the cooperative pool.
    let files: (any TaskExecutor)?

    package init(
        settings: PostgresSettings, group: any EventLoopGroup, logger: Logger, credentialsDirectory: String?,
        files: (any TaskExecutor)? = nil
    ) throws(PoolError) {
        self.files = files
        guard let url = settings.components else {
            throw PoolError(.badConfig, "url \(settings.redactedURL) is not a valid postgres url")
        }
        self.settings = settings
        self.target = PostgresTarget(url: url)
        self.group = group
        self.logger = logger
        self.credentialsDirectory = credentialsDirectory
    }

    package func open() async throws -> PostgresSession {
        let password = try await withTaskExecutorPreference(files) { try readPassword() }
        guard !clientCheckRefused.isSet else { return try await open(password: password, checkingClient: false) }
        do {
            return try await open(password: password, checkingClient: true)
        } catch let refused as ClientCheckRefused {
            if clientCheckRefused.set() {
                logger.notice(
                    "server refused client_connection_check_interval; connecting without it",
                    metadata: [
                        "error": "\(refused.message)", "consequence": "a statement running when poold dies keeps its locks until it ends",
                    ])
            }
            return try await open(password: password, checkingClient: false)
        }
    }

    /// One connection, with `clientCheck` among its startup parameters if `checkingClient`;
    /// throws `ClientCheckRefused` if the server refused exactly that parameter.
    private func open(password: String?, checkingClient: Bool) async throws -> PostgresSession {
        let wire = PostgresWireState()
        let eventLoop = group.next()
        let channel: any Channel
        do {
            channel = try await target.connect(on: eventLoop, timeout: settings.connectTimeout) { channel in
                try channel.pipeline.syncOperations.addHandler(PostgresWireSniffer(wire: wire, requireAuth: settings.requireAuth))
            }
        } catch {
            throw BackendFailure(.transient, "cannot connect to \(target.description): \(Self.describe(error))")
        }
        do {
            try await negotiateTLS(on: channel)
            var configuration = PostgresConnection.Configuration(
                establishedChannel: channel, tls: .disable,
                username: target.user, password: password, database: target.database)
            configuration.options.connectTimeout = .nanoseconds(Int64(settings.connectTimeout.nanoseconds))
            configuration.options.additionalStartupParameters = [("application_name", settings.applicationName)]
            if checkingClient {
                configuration.options.additionalStartupParameters.append(Self.clientCheck)
            }
            let id = Self.connectionIDs.wrappingAdd(1, ordering: .relaxed).newValue
            let connection = try await PostgresConnection.connect(on: eventLoop, configuration: configuration, id: id, logger: logger)
            guard let key = wire.backendKey else {
                try? await connection.close()
                throw BackendFailure(.misconfigured, "\(target.description) sent no cancel key: is it PostgreSQL?")
            }
            return PostgresSession(connection: connection, wire: wire, key: key, target: target)
        } catch {
            try? await channel.close()
            if let refusal = wire.authRefusal {
                throw BackendFailure(.authentication, refusal)
            }
            if checkingClient, let server = ServerError(error), server.message.contains(Self.clientCheck.name) {
                throw ClientCheckRefused(message: server.text)
            }
            throw failure(from: error)
        }
    }

    package func healthCheck(_ session: PostgresSession) async throws {
        guard !session.isClosed else { throw BackendFailure("the server closed the connection") }
        do {
            try await session.ping(limit: min(settings.connectTimeout, .seconds(5)))
        } catch {
            throw BackendFailure("SELECT 1 failed: \(Self.describe(error))")
        }
    }

    package func close(_ session: PostgresSession) async {
        await session.close()
    }

    package func isBroken(_ session: PostgresSession, after error: any Error) -> Bool {
        error is ResourceBroken || session.isClosed || session.wire.sessionChanged != nil
    }

    /// A job that changed the session (a `SET`, a `PREPARE`, a temporary table, …; see
    /// `PostgresWireState`) leaves a connection no other client's job may get: it is closed and
    /// replaced, as PgBouncer's server_reset_query would reset it. Plain SELECT, INSERT, UPDATE
    /// and DELETE cost nothing.
    package func shouldRetire(_ session: PostgresSession) -> Bool {
        session.wire.sessionChanged != nil
    }

    /// What kind of failure an open was: a wrong password degrades the pool at once.
    func failure(from error: any Error) -> BackendFailure {
        if let failure = error as? BackendFailure { return failure }
        guard let psql = error as? PSQLError else {
            return BackendFailure(.transient, "cannot connect to \(target.description): \(Self.describe(error))")
        }
        let user = target.user
        switch psql.code {
        case .server:
            let state = psql.serverInfo?[.sqlState] ?? ""
            let message = Self.describe(psql)
            switch state {
            case "28P01", "28000":
                return BackendFailure(
                    .authentication,
                    "authentication failed for user \"\(user)\" at \(target.description): \(message) (check password_file or credential)")
            case "3D000", "42501", "3F000":
                return BackendFailure(.misconfigured, "\(target.description): \(message)")
            default:
                return BackendFailure(.transient, "\(target.description): \(message)")
            }
        case .authMechanismRequiresPassword:
            return BackendFailure(
                .authentication, "\(target.description) asks for a password for user \"\(user)\": set password_file or credential")
        case .unsupportedAuthMechanism:
            return BackendFailure(
                .misconfigured,
                "\(target.description) asks for an authentication method poold does not support (use scram-sha-256, md5, password or trust)"
            )
        case .saslError:
            return BackendFailure(
                .authentication, "authentication failed for user \"\(user)\" at \(target.description): \(Self.describe(psql))")
        default:
            return BackendFailure(.transient, "cannot connect to \(target.description): \(Self.describe(psql))")
        }
    }

    /// The password from `password_file` or `credential` (its first line), read at each open
    /// so that a rotated password is picked up; nil when the config names neither.
    private func readPassword() throws(BackendFailure) -> String? {
        let path: String
        if let file = settings.passwordFile {
            path = file
        } else if let name = settings.credential {
            guard let directory = credentialsDirectory, !directory.isEmpty else {
                throw BackendFailure(
                    .misconfigured, "credential \"\(name)\" needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=); it is not set")
            }
            path = directory + "/" + name
        } else {
            return target.urlPassword
        }
        let text: String
        do {
            text = try FileBytes.readText(path: path, limit: 64 * 1024)
        } catch {
            throw BackendFailure(.misconfigured, "cannot read the password from \(path): \(error.reason)")
        }
        let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return String(line.hasSuffix("\r") ? line.dropLast() : line)
    }

    /// sslmode: disable (the default over a Unix socket), prefer (the default over TCP) or
    /// allow, which fall back to plain text when the server has no TLS, and require,
    /// verify-ca, verify-full, which insist on it.
    private func negotiateTLS(on channel: any Channel) async throws {
        let mode = target.sslMode
        guard mode != "disable" else { return }
        let promise = channel.eventLoop.makePromise(of: UInt8.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: PostgresWireSniffer.self).expectSSLAnswer(promise)
        }.get()
        var request = channel.allocator.buffer(capacity: 8)
        request.writeMultipleIntegers(Int32(8), Int32(80_877_103))
        try await channel.writeAndFlush(request)
        let answer = try await promise.futureResult.get()
        guard answer == UInt8(ascii: "S") else {
            if ["require", "verify-ca", "verify-full"].contains(mode) {
                throw BackendFailure(.misconfigured, "\(target.description) does not offer TLS, and sslmode=\(mode) requires it")
            }
            return
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        switch mode {
        case "verify-full": tls.certificateVerification = .fullVerification
        case "verify-ca": tls.certificateVerification = .noHostnameVerification
        default: tls.certificateVerification = .none
        }
        if let root = target.sslRootCert {
            tls.trustRoots = .file(root)
        }
        let context = try NIOSSLContext(configuration: tls)
        let hostname = target.tlsServerName
        try await channel.eventLoop.submit {
            let handler = try NIOSSLClientHandler(context: context, serverHostname: hostname)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        }.get()
    }

    /// An error in words: the server's message for a server error (PostgresNIO's own
    /// description hides it), the underlying cause for a connection error.
    static func describe(_ error: any Error) -> String {
        if let server = ServerError(error) { return server.text }
        if let legacy = error as? PostgresError {
            switch legacy {
            case .connectionClosed: return "the connection was closed"
            case .protocol(let message): return message
            case .server(let message): return message.description
            }
        }
        if let psql = error as? PSQLError {
            switch psql.code {
            case .serverClosedConnection: return "the server closed the connection" + (psql.underlying.map { " (\($0))" } ?? "")
            case .clientClosedConnection: return "the connection was closed"
            case .connectionError: return psql.underlying.map { describe($0) } ?? "connection error"
            case .uncleanShutdown: return "the connection ended without a clean shutdown"
            case .queryCancelled: return "the query was cancelled"
            case .tooManyParameters: return "too many parameters (at most 65535)"
            default: return psql.code.description
            }
        }
        if let channel = error as? ChannelError, case .connectTimeout(let amount) = channel {
            return "timed out after \(Duration.nanoseconds(amount.nanoseconds).limitDescription)"
        }
        if let io = error as? IOError {
            return io.description
        }
        if let connect = error as? NIOConnectionError {
            return connect.connectionErrors.last.map { describe($0.error) } ?? "cannot connect"
        }
        return String(describing: error)
    }
}

/// The server refused `client_connection_check_interval` at startup (the connection is gone).
package struct ClientCheckRefused: Error {
    var message: String
}

/// Set once a pool's server has refused `client_connection_check_interval`.
package final class ClientCheckRefusal: Sendable {
    private let refused = Atomic<Bool>(false)

    var isSet: Bool { refused.load(ordering: .relaxed) }

    /// Records the refusal; true the first time, so that it is logged once.
    func set() -> Bool { !refused.exchange(true, ordering: .relaxed) }
}

/// Where a pool's server is, and how to reach it, from its url.
package struct PostgresTarget: Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var user: String
    var database: String?
    var urlPassword: String?
    var sslMode: String
    var sslRootCert: String?

    init(url: PostgresURL) {
        host = url.host
        port = url.port
        user = url.user
        database = url.database
        urlPassword = url.password
        sslMode = url.sslMode ?? (url.host.hasPrefix("/") ? "disable" : "prefer")
        sslRootCert = url.parameters["sslrootcert"]
    }

    /// A host that is a path is the directory of the server's Unix socket.
    var isUnixSocket: Bool { host.hasPrefix("/") }
    var socketPath: String { host + "/.s.PGSQL.\(port)" }

    package var description: String { isUnixSocket ? socketPath : host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// SNI only for names, not for address literals.
    var tlsServerName: String? {
        host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
    }

    /// A connected channel, with `initialize` run on its pipeline before the first byte.
    func connect(on eventLoop: any EventLoop, timeout: Duration, initialize: @escaping @Sendable (any Channel) throws -> Void) async throws
        -> any Channel
    {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(Int64(timeout.nanoseconds)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel) }
            }
        if isUnixSocket {
            return try await bootstrap.connect(unixDomainSocketPath: socketPath).get()
        }
        return try await bootstrap.connect(host: host, port: port).get()
    }
}

/// An error the server sent, whichever of PostgresNIO's error types carries it (its older
/// API, used for prepared statements, converts PSQLError into PostgresError).
package struct ServerError {
    var sqlState: String
    var message: String
    var detail: String?
    var hint: String?

    init?(_ error: any Error) {
        if let psql = error as? PSQLError, psql.code == .server, let info = psql.serverInfo {
            sqlState = info[.sqlState] ?? ""
            message = info[.message] ?? "unknown server error"
            detail = info[.detail]
            hint = info[.hint]
        } else if let legacy = error as? PostgresError, case .server(let info) = legacy {
            sqlState = info.fields[.sqlState] ?? ""
            message = info.fields[.message] ?? "unknown server error"
            detail = info.fields[.detail]
            hint = info.fields[.hint]
        } else {
            return nil
        }
    }

    /// The message, with the detail and hint when the server gave them.
    var text: String {
        var text = message
        if let detail { text += " (\(detail))" }
        if let hint { text += "; hint: \(hint)" }
        return text
    }
}
