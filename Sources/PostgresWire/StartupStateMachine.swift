import NIOCore

/// Startup and authentication as a pure state machine: fed the server's messages from the
/// first one after the startup message, it says what to send and when the connection is ready.
/// trust, cleartext, MD5 and SCRAM-SHA-256; `require_auth` is checked before any password goes
/// out; a SCRAM exchange the server ends without proving it knows the password is refused.
package struct StartupStateMachine: Sendable {
    package enum Action: Sendable {
        case none
        case write(ByteBuffer)
        /// The connection is ready for queries.
        case ready(key: BackendMessage.BackendKey?, parameters: [String: String])
        /// The server refused the connection (its ErrorResponse).
        case refused(BackendMessage.ServerFields)
        case fail(WireError)
    }

    private let configuration: WireConnection.Configuration
    private var scram: SCRAMClient?
    private var asked = false
    private var key: BackendMessage.BackendKey?
    private var parameters: [String: String] = [:]
    package private(set) var isDone = false

    package init(_ configuration: WireConnection.Configuration) {
        self.configuration = configuration
    }

    /// The startup message.
    package var startupMessage: ByteBuffer {
        var buffer = ByteBuffer()
        Frontend.startup(
            [("user", configuration.user), ("database", configuration.database), ("application_name", configuration.applicationName)]
                + configuration.startupParameters,
            into: &buffer)
        return buffer
    }

    package mutating func received(_ message: BackendMessage) -> Action {
        guard !isDone else { return .fail(WireError("\(message) after startup ended")) }
        do throws(WireError) {
            switch message {
            case .authentication(.ok):
                if !asked { try check(.none) }
                if scram != nil {
                    throw WireError("the server ended the SCRAM exchange without proving that it knows the password", kind: .authentication)
                }
                return .none
            case .authentication(let request):
                asked = true
                return try authenticate(request)
            case .backendKeyData(let data):
                key = data
            case .parameterStatus(let name, let value):
                parameters[name] = value
            case .readyForQuery:
                isDone = true
                return .ready(key: key, parameters: parameters)
            case .errorResponse(let fields):
                isDone = true
                return .refused(fields)
            case .noticeResponse, .negotiateProtocolVersion:
                return .none
            default:
                throw WireError("unexpected \(message) during startup")
            }
            return .none
        } catch {
            isDone = true
            return .fail(error)
        }
    }

    private mutating func authenticate(_ request: BackendMessage.Authentication) throws(WireError) -> Action {
        var buffer = ByteBuffer()
        switch request {
        case .ok:
            return .none
        case .cleartextPassword:
            try check(.password)
            Frontend.password(try password(), into: &buffer)
        case .md5Password(let salt):
            try check(.md5)
            Frontend.password(MD5Password.response(user: configuration.user, password: try password(), salt: salt), into: &buffer)
        case .sasl(let mechanisms):
            try check(.scramSHA256)
            guard mechanisms.contains(SCRAMClient.mechanism) else {
                throw WireError("the server offers SASL mechanisms \(mechanisms), none of which poold speaks", kind: .unsupported)
            }
            let client = SCRAMClient(password: try password())
            Frontend.saslInitialResponse(mechanism: SCRAMClient.mechanism, client.clientFirst, into: &buffer)
            scram = client
        case .saslContinue(let data):
            guard var client = scram else { throw WireError("SASLContinue without a SASL exchange") }
            Frontend.saslResponse(try client.clientFinal(serverFirst: data), into: &buffer)
            scram = client
        case .saslFinal(let data):
            guard let client = scram else { throw WireError("SASLFinal without a SASL exchange") }
            try client.verify(serverFinal: data)
            scram = nil  // complete: the server proved it knows the password
            return .none
        case .unsupported(let code):
            try check(code == 9 ? .sspi : .gss)
            throw WireError(
                "the server asks for authentication method \(code) (Kerberos, GSSAPI or SSPI), which poold does not speak",
                kind: .unsupported)
        }
        return .write(buffer)
    }

    private func password() throws(WireError) -> String {
        guard let password = configuration.password else {
            throw WireError("the server asks for a password, and none is configured", kind: .passwordNeeded)
        }
        return password
    }

    /// Refuses a method `require_auth` does not allow, before any password is sent.
    private func check(_ method: WireConnection.AuthMethod) throws(WireError) {
        guard let allowed = configuration.allowedAuth, !allowed.contains(method) else { return }
        let setting = "require_auth = \"\(configuration.requireAuthText)\""
        if method == .none {
            throw WireError(
                "the server let poold in without authentication (trust or peer), which \(setting) does not allow"
                    + " (add none to require_auth, or fix pg_hba.conf)", kind: .authentication)
        }
        let asked =
            switch method {
            case .password: "the password in cleartext"
            case .md5: "an MD5 hash of the password"
            case .scramSHA256: "SCRAM-SHA-256 authentication"
            case .gss: "GSSAPI (Kerberos) authentication"
            case .sspi: "SSPI authentication"
            case .none: "nothing"
            }
        throw WireError(
            "the server asked for \(asked), which \(setting) does not allow;"
                + " poold sent no password (fix the server's pg_hba.conf, or require_auth)", kind: .authentication)
    }
}
