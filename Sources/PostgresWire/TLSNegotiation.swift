import NIOCore
import NIOSSL
import NIOTLS

/// How a connection uses TLS, as libpq's `sslmode` says it.
package enum TLSMode: String, Sendable {
    /// Never.
    case disable
    /// If the server offers it; no certificate check.
    case prefer
    /// Always; no certificate check (like libpq, a check against a root certificate given
    /// anyway makes it `verifyCA`).
    case require
    /// Always, with a certificate signed by the root certificate.
    case verifyCA = "verify-ca"
    /// Always, with a certificate signed by the root certificate, for the host connected to.
    case verifyFull = "verify-full"
}

/// SSLRequest before the startup message: the server answers one byte, `S` (then TLS) or `N`.
/// On `S` a NIOSSL client handler takes its place at the front of the pipeline; on `N` the
/// connection goes on in plain text, unless the mode requires TLS.
///
/// A byte after the `S` that the server sent before the handshake is refused (CVE-2021-23222:
/// it would be read as if it had come encrypted).
final class TLSNegotiation: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let mode: TLSMode
    private let context: NIOSSLContext?
    private let serverName: String?
    /// Between `S` and the end of the TLS handshake.
    private var handshaking = false
    /// Succeeds once the startup message may go out (TLS set up, or plain text allowed).
    let done: EventLoopPromise<Void>

    init(mode: TLSMode, context: NIOSSLContext?, serverName: String?, done: EventLoopPromise<Void>) {
        self.mode = mode
        self.context = context
        self.serverName = serverName
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 8)
        Frontend.sslRequest(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let answer: UInt8 = buffer.readInteger() else { return }
        switch answer {
        case UInt8(ascii: "S"):
            guard buffer.readableBytes == 0 else {
                fail(context, WireError("the server sent data before the TLS handshake; refused (CVE-2021-23222)", kind: .tls))
                return
            }
            guard let sslContext = self.context else {
                fail(context, WireError("no TLS context"))
                return
            }
            do {
                let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                try context.pipeline.syncOperations.addHandler(handler, position: .before(self))
                handshaking = true
            } catch {
                fail(context, WireError("cannot start TLS: \(error)", kind: .tls))
                return
            }
        // The startup message waits for the handshake: a certificate refused is then the
        // error, not a write on a channel the refusal closed.
        case UInt8(ascii: "N"):
            guard mode == .prefer else {
                fail(context, WireError("the server does not offer TLS, and sslmode = \(mode.rawValue) requires it", kind: .tls))
                return
            }
            done.succeed(())
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        default:
            fail(context, WireError("the server answered the SSL request with byte \(answer)"))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if handshaking, case .handshakeCompleted? = event as? TLSUserEvent {
            handshaking = false
            done.succeed(())
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Never settled (the connection failed first): whoever waits learns it.
        done.fail(WireError("the connection closed before TLS was settled", kind: .closed))
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(WireError("the server closed the connection before TLS was settled", kind: .closed))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(handshaking ? WireError("the TLS handshake with the server failed: \(error)", kind: .tls) : error)
        context.fireErrorCaught(error)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: WireError) {
        done.fail(error)
        context.close(promise: nil)
    }

    /// The NIOSSL context for `mode`; nil for `disable`.
    static func sslContext(mode: TLSMode, rootCertificate: String?) throws -> NIOSSLContext? {
        guard mode != .disable else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        let verify: TLSMode = mode == .require && rootCertificate != nil ? .verifyCA : mode
        switch verify {
        case .prefer, .require, .disable:
            configuration.certificateVerification = .none
        case .verifyCA, .verifyFull:
            guard let rootCertificate else {
                throw WireError(
                    "sslmode = \(mode.rawValue) needs a root certificate (sslrootcert) to check the server's against", kind: .tls)
            }
            configuration.trustRoots = .file(rootCertificate)
            configuration.certificateVerification = verify == .verifyFull ? .fullVerification : .noHostnameVerification
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

/// What a connection needs to set up TLS, worked out once from its configuration.
struct TLSSetup: Sendable {
    let mode: TLSMode
    let context: NIOSSLContext?
    let serverName: String?

    init(_ configuration: WireConnection.Configuration) throws {
        mode = configuration.tls
        context = try TLSNegotiation.sslContext(mode: mode, rootCertificate: configuration.rootCertificate)
        var host: String?
        if case .tcp(let name, _) = configuration.address { host = name }
        // An address is not a name to ask for: with none, the certificate is checked against
        // the address connected to (its IP subjectAltName).
        let isAddress = host.map { name in name.contains(":") || name.allSatisfy { $0.isNumber || $0 == "." } } ?? true
        serverName = configuration.serverName ?? (isAddress ? nil : host)
    }

    /// Puts the SSLRequest negotiation first in `channel`'s pipeline; without TLS, nothing.
    func install(on channel: any Channel, done: EventLoopPromise<Void>) throws {
        guard mode != .disable else { return }
        try channel.pipeline.syncOperations.addHandler(TLSNegotiation(mode: mode, context: context, serverName: serverName, done: done))
    }
}
