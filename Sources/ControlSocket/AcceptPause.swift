import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Out of file descriptors at accept (EMFILE, ENFILE), the listener stops reading for a moment
/// rather than retrying at once: SwiftNIO keeps its accept pending, and the listening socket
/// stays readable, so without a pause the event loop spins on the error (about 8,600 a second)
/// while new clients time out. Clients already connected are served throughout; new ones wait
/// in the backlog. Logged once per burst, with the limit.
package final class AcceptPause: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = any Channel
    package typealias InboundOut = any Channel

    static let pause: TimeAmount = .milliseconds(100)
    private let logger: Logger
    private var paused = false
    /// Pauses since the last line logged; a burst is logged when it starts.
    private var pausesUnlogged = 0
    private var lastLogged: NIODeadline?

    package init(logger: Logger) {
        self.logger = logger
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let io = error as? IOError, io.errnoCode == EMFILE || io.errnoCode == ENFILE else {
            context.fireErrorCaught(error)
            return
        }
        guard !paused else { return }
        paused = true
        pausesUnlogged += 1
        let now = NIODeadline.now()
        if lastLogged.map({ now - $0 > .seconds(60) }) ?? true {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            logger.error(
                "out of file descriptors: not accepting connections for a moment; raise LimitNOFILE= or lower max_connections",
                metadata: [
                    "limit": "\(limit.rlim_cur)", "error": "\(io.errnoCode == EMFILE ? "EMFILE" : "ENFILE")", "pauses": "\(pausesUnlogged)",
                ])
            lastLogged = now
            pausesUnlogged = 0
        }
        let channel = context.channel
        _ = try? channel.syncOptions?.setOption(.autoRead, value: false)
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.pause) {
            self.paused = false
            _ = try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}
