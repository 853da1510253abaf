import ControlProtocol
import NIOCore

/// A request line, or the news that a line was too long.
package enum Frame: Sendable {
    case line(ByteBuffer)
    case tooLarge
}

/// Splits the byte stream into request lines by the rules of `Framing`: a trailing "\r" is
/// stripped, blank lines are skipped, a last line without "\n" is still a line, and a line
/// over the limit is reported once, after which the connection is only drained.
package struct LineDecoder: ByteToMessageDecoder {
    package typealias InboundOut = Frame

    let maxLength: Int
    private var overflowed = false
    /// Bytes already searched for "\n", so a long partial line is not rescanned per read.
    private var scanned = 0

    init(maxLength: Int) {
        self.maxLength = maxLength
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if overflowed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        let searchFrom = view.index(view.startIndex, offsetBy: scanned)
        guard let newline = view[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if view.count > maxLength { overflow(context: context, buffer: &buffer) }
            return .needMoreData
        }
        scanned = 0
        let length = newline - view.startIndex
        if length > maxLength {
            overflow(context: context, buffer: &buffer)
            return .needMoreData
        }
        if let line = buffer.readSlice(length: length) {
            buffer.moveReaderIndex(forwardBy: 1)
            emit(line, context: context)
        }
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if !overflowed, buffer.readableBytes > 0, let line = buffer.readSlice(length: buffer.readableBytes) {
            emit(line, context: context)
        }
        scanned = 0
        return .needMoreData
    }

    private mutating func overflow(context: ChannelHandlerContext, buffer: inout ByteBuffer) {
        overflowed = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(wrapInboundOut(.tooLarge))
    }

    private func emit(_ line: ByteBuffer, context: ChannelHandlerContext) {
        var line = line
        if line.readableBytesView.last == UInt8(ascii: "\r") {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        if line.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
        context.fireChannelRead(wrapInboundOut(.line(line)))
    }
}

/// Holds what arrives on an accepted connection until `ControlServer.serve` has wrapped it
/// in an `NIOAsyncChannel`, then passes everything on. The wrapper cannot be made in the
/// child initializer (a listener closing between accept and hand-over crashes poold there,
/// apple/swift-nio#2813), and a connection is not quiet until then: at a half-close NIO reads
/// all input at once whether reads are wanted or not, so lines and the end of input must be
/// kept, not dropped at the pipeline's tail.
package final class EarlyInbound: ChannelInboundHandler {
    package typealias InboundIn = Frame
    package typealias InboundOut = Frame

    private var context: ChannelHandlerContext?
    private var held: [Frame] = []
    private var events: [Any] = []
    private var passing = false

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if passing { context.fireChannelRead(data) } else { held.append(unwrapInboundIn(data)) }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if passing { context.fireChannelReadComplete() }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if passing { context.fireUserInboundEventTriggered(event) } else { events.append(event) }
    }

    /// From now on everything passes; what was held goes first, in order. On the event loop.
    func release() {
        passing = true
        guard let context else { return }
        let frames = held
        let events = events
        held = []
        self.events = []
        for frame in frames { context.fireChannelRead(wrapInboundOut(frame)) }
        if !frames.isEmpty { context.fireChannelReadComplete() }
        for event in events { context.fireUserInboundEventTriggered(event) }
    }
}
