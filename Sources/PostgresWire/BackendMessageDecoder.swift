import NIOCore

/// Cuts the server's byte stream into messages. Every message's length is bounded: a length
/// under 4 or over `maxMessageLength` is a protocol error, not a buffer to grow.
package struct BackendMessageDecoder: NIOSingleStepByteToMessageDecoder {
    package typealias InboundOut = BackendMessage

    /// The longest message body accepted. A DataRow holds one row: poold's results are bounded
    /// well below this (16 MiB in all), so a row is never this long.
    package static let defaultMaxMessageLength = 64 << 20

    package let maxMessageLength: Int

    package init(maxMessageLength: Int = BackendMessageDecoder.defaultMaxMessageLength) {
        self.maxMessageLength = maxMessageLength
    }

    package mutating func decode(buffer: inout ByteBuffer) throws -> BackendMessage? {
        guard let type: UInt8 = buffer.getInteger(at: buffer.readerIndex),
            let length: Int32 = buffer.getInteger(at: buffer.readerIndex + 1)
        else { return nil }
        guard length >= 4, Int(length) - 4 <= maxMessageLength else {
            throw WireError("message type \(type) claims \(length) bytes (at most \(maxMessageLength + 4))")
        }
        guard buffer.readableBytes >= Int(length) + 1 else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        guard var body = buffer.readSlice(length: Int(length) - 4) else { return nil }
        return try BackendMessage.decode(type: type, body: &body)
    }

    package mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> BackendMessage? {
        try decode(buffer: &buffer)
    }
}
