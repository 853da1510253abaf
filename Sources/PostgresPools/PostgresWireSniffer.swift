import NIOCore
import NIOSSL
import PoolConfig
import Synchronization

/// What PostgresNIO's public API does not tell about a connection, read off the wire.
///
/// The handler sits first in the pipeline (after TLS, when there is TLS), passes every byte
/// on untouched, and follows the message framing of the backend's stream to note:
/// - BackendKeyData: the process id and secret key, so a running query can be cancelled on
///   the server with a CancelRequest;
/// - ReadyForQuery's transaction status, so a connection is returned to the pool only
///   outside a transaction;
/// - RowDescription / NoData: the result's column names, even when it has no rows;
/// - ParameterDescription: the types the server inferred for a prepared statement's params;
/// - CommandComplete: the tag, for the rows a prepared statement changed;
/// - Authentication requests: under `require_auth`, one for a method it does not allow is
///   refused here — not passed on, so PostgresNIO never answers it with the password;
/// - what changes the session for whatever job comes next: a command whose tag says so (`SET`,
///   `PREPARE`, `LISTEN`, `DECLARE CURSOR`, `CREATE …` which may be temporary, …), or a
///   ParameterStatus after startup (a reported setting changed, by `set_config` too). The pool
///   then replaces the connection rather than hand it to another job.
package final class PostgresWireState: Sendable {
    struct BackendKey: Sendable, Equatable {
        var processID: Int32
        var secretKey: Int32
    }

    enum TransactionStatus: UInt8, Sendable {
        case idle = 73  // 'I'
        case inTransaction = 84  // 'T'
        case failedTransaction = 69  // 'E'
    }

    private struct State {
        var key: BackendKey?
        var status: TransactionStatus = .idle
        var columns: [String] = []
        var parameterTypes: [UInt32] = []
        var commandTag = ""
        var authRefusal: String?
        var startupDone = false
        /// Why the session no longer is the one a fresh connection would be, if it is not.
        var sessionChanged: String?
    }

    private let state = Mutex(State())

    var backendKey: BackendKey? { state.withLock { $0.key } }
    var transactionStatus: TransactionStatus { state.withLock { $0.status } }
    /// The columns of the last statement that described its result.
    var columns: [String] { state.withLock { $0.columns } }
    /// The parameter types of the last statement described (ParameterDescription).
    var parameterTypes: [UInt32] { state.withLock { $0.parameterTypes } }
    /// The tag of the last CommandComplete (`INSERT 0 3`, `SELECT 1`).
    var commandTag: String { state.withLock { $0.commandTag } }
    /// Why the connection was refused under `require_auth`, if it was.
    var authRefusal: String? { state.withLock { $0.authRefusal } }
    /// What a job did that outlives it on this connection (see above), if anything.
    var sessionChanged: String? { state.withLock { $0.sessionChanged } }

    /// Commands whose tag says they change the session for later jobs (or may: a `CREATE`
    /// tag does not tell a temporary table from another, nor `SELECT INTO` one).
    static let sessionTags = [
        "SET", "RESET", "PREPARE", "DEALLOCATE", "LISTEN", "UNLISTEN", "DECLARE CURSOR", "DISCARD", "LOAD",
        "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE", "CREATE FUNCTION", "CREATE INDEX", "SELECT INTO", "CREATE TABLE AS",
    ]

    fileprivate func noteTag(_ tag: String) {
        guard Self.sessionTags.contains(where: { tag == $0 || tag.hasPrefix($0 + " ") }) else { return }
        state.withLock { if $0.sessionChanged == nil { $0.sessionChanged = "it ran \(tag)" } }
    }

    fileprivate func noteParameterStatus(_ name: String) {
        state.withLock { state in
            if state.startupDone, state.sessionChanged == nil { state.sessionChanged = "it changed \(name)" }
        }
    }

    fileprivate func noteReady() { state.withLock { $0.startupDone = true } }

    fileprivate func set(key: BackendKey) { state.withLock { $0.key = key } }
    fileprivate func set(status: TransactionStatus) { state.withLock { $0.status = status } }
    fileprivate func set(columns: [String]) { state.withLock { $0.columns = columns } }
    fileprivate func set(parameterTypes: [UInt32]) { state.withLock { $0.parameterTypes = parameterTypes } }
    fileprivate func set(commandTag: String) { state.withLock { $0.commandTag = commandTag } }
    fileprivate func set(authRefusal: String) { state.withLock { $0.authRefusal = authRefusal } }
}

package final class PostgresWireSniffer: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    private let wire: PostgresWireState
    private let requireAuth: RequireAuth?
    /// The authentication method the server asked for so far (nil: none yet).
    private var authMethod: RequireAuth.Method?
    /// Set when an authentication request is refused: nothing more is passed on.
    private var refused = false
    /// The bytes of a message not yet complete (only its header and the kinds we read).
    private var pending = ByteBuffer()
    /// Bytes of the current message still to skip (a message we pass without reading).
    private var skipping = 0
    /// Waiting for the one-byte answer to our SSLRequest.
    private var sslAnswer: EventLoopPromise<UInt8>?

    init(wire: PostgresWireState, requireAuth: RequireAuth? = nil) {
        self.wire = wire
        self.requireAuth = requireAuth
    }

    /// After an SSLRequest: the next byte is the server's answer ('S' or 'N'), not a message.
    func expectSSLAnswer(_ promise: EventLoopPromise<UInt8>) {
        sslAnswer = promise
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let promise = sslAnswer, let answer = buffer.readInteger(as: UInt8.self) {
            sslAnswer = nil
            promise.succeed(answer)
            // Nothing else may follow the answer before the TLS handshake (CVE-2021-23222).
            if buffer.readableBytes > 0 {
                context.fireErrorCaught(PostgresWireError("the server sent data after its SSL answer"))
            }
            return
        }
        guard !refused else { return }
        observe(buffer)
        if refused, let refusal = wire.authRefusal {
            // Not passed on: PostgresNIO must never see the request, or it would answer it.
            context.fireErrorCaught(PostgresWireError(refusal))
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    package func channelInactive(context: ChannelHandlerContext) {
        sslAnswer?.fail(PostgresWireError("the server closed the connection during the SSL request"))
        sslAnswer = nil
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        sslAnswer?.fail(error)
        sslAnswer = nil
        context.fireErrorCaught(error)
    }

    /// Follows the framing (a type byte, then an Int32 length that counts itself) through
    /// `bytes`, reading the few message kinds we care about and skipping the rest (DataRows,
    /// mostly) without copying them.
    private func observe(_ bytes: ByteBuffer) {
        var input = bytes
        while input.readableBytes > 0 {
            if skipping > 0 {
                let n = min(skipping, input.readableBytes)
                input.moveReaderIndex(forwardBy: n)
                skipping -= n
                continue
            }
            // Collect the 5-byte header.
            if pending.readableBytes < 5 {
                let n = min(5 - pending.readableBytes, input.readableBytes)
                var header = input.readSlice(length: n) ?? ByteBuffer()
                pending.writeBuffer(&header)
                if pending.readableBytes < 5 { return }
            }
            guard let type = pending.getInteger(at: pending.readerIndex, as: UInt8.self),
                let length = pending.getInteger(at: pending.readerIndex + 1, as: Int32.self), length >= 4
            else {
                pending.clear()
                return
            }
            let body = Int(length) - 4
            switch type {
            case UInt8(ascii: "K"), UInt8(ascii: "Z"), UInt8(ascii: "T"), UInt8(ascii: "n"), UInt8(ascii: "t"), UInt8(ascii: "C"),
                UInt8(ascii: "R"), UInt8(ascii: "S"):
                let have = pending.readableBytes - 5
                let n = min(body - have, input.readableBytes)
                var part = input.readSlice(length: n) ?? ByteBuffer()
                pending.writeBuffer(&part)
                guard pending.readableBytes - 5 == body else { return }
                pending.moveReaderIndex(forwardBy: 5)
                read(type, &pending)
                pending.clear()
                if refused { return }
            default:
                pending.clear()
                skipping = body
            }
        }
    }

    private func read(_ type: UInt8, _ body: inout ByteBuffer) {
        switch type {
        case UInt8(ascii: "K"):
            if let (pid, key) = body.readMultipleIntegers(as: (Int32, Int32).self) {
                wire.set(key: .init(processID: pid, secretKey: key))
            }
        case UInt8(ascii: "Z"):
            if let byte = body.readInteger(as: UInt8.self), let status = PostgresWireState.TransactionStatus(rawValue: byte) {
                wire.set(status: status)
            }
            wire.noteReady()
        case UInt8(ascii: "S"):
            if let end = body.readableBytesView.firstIndex(of: 0), let name = body.readString(length: end - body.readerIndex) {
                wire.noteParameterStatus(name)
            }
        case UInt8(ascii: "T"):
            guard let count = body.readInteger(as: Int16.self) else { return }
            var names: [String] = []
            names.reserveCapacity(Int(max(count, 0)))
            for _ in 0..<max(count, 0) {
                guard let end = body.readableBytesView.firstIndex(of: 0),
                    let name = body.readString(length: end - body.readerIndex)
                else { return }
                body.moveReaderIndex(forwardBy: 1 + 18)  // NUL, then table oid, attnum, type oid, size, typmod, format
                names.append(name)
            }
            wire.set(columns: names)
        case UInt8(ascii: "n"):
            wire.set(columns: [])
        case UInt8(ascii: "t"):
            guard let count = body.readInteger(as: Int16.self), count >= 0 else { return }
            var types: [UInt32] = []
            types.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let oid = body.readInteger(as: UInt32.self) else { return }
                types.append(oid)
            }
            wire.set(parameterTypes: types)
        case UInt8(ascii: "C"):
            if let end = body.readableBytesView.firstIndex(of: 0), let tag = body.readString(length: end - body.readerIndex) {
                wire.set(commandTag: tag)
                wire.noteTag(tag)
            }
        case UInt8(ascii: "R"):
            guard let requireAuth, let code = body.readInteger(as: Int32.self) else { return }
            let method: RequireAuth.Method?
            switch code {
            case 0: method = authMethod == nil ? RequireAuth.Method.none : nil  // AuthenticationOk
            case 3: method = .password
            case 5: method = .md5
            case 7, 8: method = .gss
            case 9: method = .sspi
            case 10: method = .scramSHA256  // SASL; SCRAM-SHA-256 is the mechanism poold uses
            default: method = nil  // SASL continue / final, and older methods
            }
            guard let method else { return }
            authMethod = method
            if !requireAuth.allowed.contains(method) {
                refused = true
                let asked =
                    switch method {
                    case .password: "the password in cleartext"
                    case .md5: "an MD5 hash of the password"
                    case .scramSHA256: "SCRAM-SHA-256 authentication"
                    case .gss: "GSSAPI (Kerberos) authentication"
                    case .sspi: "SSPI authentication"
                    case .none: "nothing (it let poold in unauthenticated)"
                    }
                wire.set(
                    authRefusal:
                        "the server asked for \(asked), which require_auth = \"\(requireAuth.text)\" does not allow; poold sent no "
                        + "password (fix the server's pg_hba.conf, or require_auth)"
                )
            }
        default:
            break
        }
    }
}

package struct PostgresWireError: Error, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}
