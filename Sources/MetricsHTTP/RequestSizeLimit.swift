import NIOCore

/// Caps the bytes one connection may send, before the HTTP decoder sees them: NIO's decoder
/// refuses headers only past 80 KiB, and the endpoint takes one small request per connection.
/// Past the cap, nothing more is passed on and `RequestTooLarge` is raised down the pipeline
/// (once), which ends the connection's inbound stream.
final class RequestSizeLimit: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: Int
    private var received = 0

    init(limit: Int) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard received <= limit else { return }
        received += unwrapInboundIn(data).readableBytes
        if received > limit {
            context.fireErrorCaught(RequestTooLarge())
        } else {
            context.fireChannelRead(data)
        }
    }
}

/// A connection sent more than `HTTPLimits.maxRequestBytes`.
struct RequestTooLarge: Error {}
