import DaemonRuntime
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import PostgresWire
import Synchronization

/// PostgreSQL connections (`WireClient`, poold's own protocol code) for one pool.
package struct PostgresBackend: PoolBackend {
    package typealias Resource = PostgresSession

    let settings: PostgresSettings
    let target: PostgresTarget
    let group: any EventLoopGroup
    /// Where the server's notices go (rate-limited), with the pool's name.
    let logger: Logger
    private let notices: NoticeLog
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
        self.notices = NoticeLog(logger: logger)
        self.credentialsDirectory = credentialsDirectory
    }

    package func open() async throws -> PostgresSession {
        try await open(onNotification: nil)
    }

    /// A connection outside the pool (a durable queue host's own), whose NotificationResponses
    /// go to `onNotification` (channel, payload).
    package func open(onNotification: (@Sendable (String, String) -> Void)?) async throws -> PostgresSession {
        let password = try await withTaskExecutorPreference(files) { try readPassword() }
        guard !clientCheckRefused.isSet else {
            return try await open(password: password, checkingClient: false, onNotification: onNotification)
        }
        do {
            return try await open(password: password, checkingClient: true, onNotification: onNotification)
        } catch let refused as ClientCheckRefused {
            if clientCheckRefused.set() {
                logger.notice(
                    "server refused client_connection_check_interval; connecting without it",
                    metadata: [
                        "error": "\(refused.message)", "consequence": "a statement running when poold dies keeps its locks until it ends",
                    ])
            }
            return try await open(password: password, checkingClient: false, onNotification: onNotification)
        }
    }

    /// One connection, with `clientCheck` among its startup parameters if `checkingClient`;
    /// throws `ClientCheckRefused` if the server refused exactly that parameter.
    private func open(
        password: String?, checkingClient: Bool, onNotification: (@Sendable (String, String) -> Void)?
    ) async throws -> PostgresSession {
        var configuration = WireConnection.Configuration(
            address: target.address, user: target.user, database: target.database ?? target.user, password: password)
        configuration.applicationName = settings.applicationName
        configuration.tls = target.tlsMode
        configuration.rootCertificate = target.sslRootCert
        configuration.connectTimeout = settings.connectTimeout
        if let requireAuth = settings.requireAuth {
            configuration.allowedAuth = Set(requireAuth.allowed.compactMap { WireConnection.AuthMethod(rawValue: $0.rawValue) })
            configuration.requireAuthText = requireAuth.text
        }
        if checkingClient {
            configuration.startupParameters = [Self.clientCheck]
        }
        configuration.onNotice = { [notices] fields in notices.log(fields) }
        configuration.onNotification = onNotification
        let client: WireClient
        do {
            client = try await WireClient.connect(configuration, on: group.next())
        } catch {
            if checkingClient, let server = ServerError(error), server.message.contains(Self.clientCheck.name) {
                throw ClientCheckRefused(message: server.text)
            }
            throw failure(from: error)
        }
        guard let key = client.key else {
            await client.close()
            throw BackendFailure(.misconfigured, "\(target.description) sent no cancel key: is it PostgreSQL?")
        }
        return PostgresSession(client: client, key: key, target: target)
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
        error is ResourceBroken || session.isClosed || session.sessionChanged != nil
    }

    /// A job that changed the session (a `SET`, a `PREPARE`, a temporary table, …; see
    /// `WireClient.sessionChanged`) leaves a connection no other client's job may get: it is closed and
    /// replaced, as PgBouncer's server_reset_query would reset it. Plain SELECT, INSERT, UPDATE
    /// and DELETE cost nothing.
    package func shouldRetire(_ session: PostgresSession) -> Bool {
        session.sessionChanged != nil
    }

    /// What kind of failure an open was: a wrong password degrades the pool at once.
    func failure(from error: any Error) -> BackendFailure {
        if let failure = error as? BackendFailure { return failure }
        let user = target.user
        if let server = ServerError(error) {
            let message = server.text
            switch server.sqlState {
            case "28P01", "28000":
                return BackendFailure(
                    .authentication,
                    "authentication failed for user \"\(user)\" at \(target.description): \(message) (check password_file or credential)")
            case "3D000", "42501", "3F000":
                return BackendFailure(.misconfigured, "\(target.description): \(message)")
            default:
                return BackendFailure(.transient, "\(target.description): \(message)")
            }
        }
        guard let wire = error as? WireError else {
            return BackendFailure(.transient, "cannot connect to \(target.description): \(Self.describe(error))")
        }
        switch wire.kind {
        case .passwordNeeded:
            return BackendFailure(
                .authentication, "\(target.description) asks for a password for user \"\(user)\": set password_file or credential")
        case .authentication:
            return BackendFailure(.authentication, "authentication failed for user \"\(user)\" at \(target.description): \(wire.message)")
        case .unsupported:
            return BackendFailure(
                .misconfigured, "\(target.description): \(wire.message) (use scram-sha-256, md5, password or trust)")
        case .tls:
            return BackendFailure(.misconfigured, "\(target.description): \(wire.message)")
        case .closed, .protocolViolation:
            return BackendFailure(.transient, "cannot connect to \(target.description): \(wire.description)")
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

    /// An error in words: the server's message for a server error, the underlying cause for a
    /// connection error.
    package static func describe(_ error: any Error) -> String {
        if let server = ServerError(error) { return server.text }
        if let wire = error as? WireError { return wire.description }
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

    /// Where to connect, for `WireClient`.
    var address: WireConnection.Configuration.Address {
        isUnixSocket ? .unixSocket(path: socketPath) : .tcp(host: host, port: port)
    }

    /// libpq's `sslmode`. `allow` (plain text first, TLS if the server insists) is taken as
    /// `prefer`: TLS when the server offers it.
    var tlsMode: TLSMode {
        sslMode == "allow" ? .prefer : TLSMode(rawValue: sslMode) ?? .prefer
    }
}

/// An error the server sent: a query's, or the one that refused the connection.
package struct ServerError {
    var sqlState: String
    var message: String
    var detail: String?
    var hint: String?

    init?(_ error: any Error) {
        let fields: BackendMessage.ServerFields
        if case .server(let sent) = error as? QueryStateMachine.Failure {
            fields = sent
        } else if let refusal = error as? WireConnection.ServerError {
            fields = refusal.fields
        } else {
            return nil
        }
        sqlState = fields.sqlState
        // Cut as notices are: a statement may raise an error of megabytes, which would reach the
        // client's reply and the log whole.
        message = fields.message.isEmpty ? "unknown server error" : NoticeLog.cut(fields.message)
        detail = fields.detail.map(NoticeLog.cut)
        hint = fields.hint.map(NoticeLog.cut)
    }

    /// The message, with the detail and hint when the server gave them.
    var text: String {
        var text = message
        if let detail { text += " (\(detail))" }
        if let hint { text += "; hint: \(hint)" }
        return text
    }
}

/// The server's notices (a `RAISE NOTICE`, a warning), logged with the pool's name: at most a
/// burst of 20 and then 2 a second, as a job can cause them at will, and each text cut at
/// `maxText` characters (a notice may carry megabytes).
final class NoticeLog: Sendable {
    static let maxText = 2000
    private let logger: Logger
    private let budget = Mutex(LogBudget(burst: 20, perSecond: 2))

    init(logger: Logger) {
        self.logger = logger
    }

    func log(_ fields: BackendMessage.ServerFields) {
        let (allowed, suppressed) = budget.withLock { $0.take(at: .now) }
        guard allowed else { return }
        var metadata: Logger.Metadata = ["severity": "\(fields.severity)", "sqlstate": "\(fields.sqlState)"]
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        if let detail = fields.detail { metadata["detail"] = "\(Self.cut(detail))" }
        logger.notice("server notice: \(Self.cut(fields.message))", metadata: metadata)
    }

    /// `text` up to `maxText` characters, with how much was left out.
    static func cut(_ text: String) -> String {
        guard text.utf8.count > maxText else { return text }
        return String(text.prefix(maxText)) + "… (\(text.utf8.count) bytes in all)"
    }
}
