import ControlProtocol
import NIOCore
import NIOEmbedded
import Testing

@testable import ControlSocket

/// The framing rules of protocol v1 (`Framing`), as the daemon's one framer applies them.
@Suite("Line framing")
struct LineDecoderTests {
    /// What the decoder passes on, with lines as text.
    enum Out: Equatable {
        case line(String)
        case tooLarge
    }

    /// A channel that frames what is written into it.
    final class Framer {
        let channel: EmbeddedChannel

        init(maxLength: Int = Framing.maxLineBytes) throws {
            channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLength: maxLength)))
        }

        /// Writes `bytes`, returns every frame they complete.
        func feed(_ bytes: [UInt8]) throws -> [Out] {
            try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
            return try drain()
        }

        func feed(_ text: String) throws -> [Out] { try feed(Array(text.utf8)) }

        /// The end of input: whatever is left.
        func finish() throws -> [Out] {
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            return try drain()
        }

        func drain() throws -> [Out] {
            var out: [Out] = []
            while let frame = try channel.readInbound(as: Frame.self) {
                switch frame {
                case .line(let buffer): out.append(.line(String(decoding: buffer.readableBytesView, as: UTF8.self)))
                case .tooLarge: out.append(.tooLarge)
                }
            }
            return out
        }
    }

    @Test("a request split byte by byte comes out whole, once")
    func byteByByte() throws {
        let framer = try Framer()
        var frames: [Out] = []
        for byte in Array("{\"id\":1,\"op\":\"ping\"}\n{\"op\":\"status\"}\n".utf8) {
            frames += try framer.feed([byte])
        }
        #expect(frames == [.line("{\"id\":1,\"op\":\"ping\"}"), .line("{\"op\":\"status\"}")])
        #expect(try framer.finish() == [])
    }

    @Test("several lines in one read, then the rest in later ones")
    func severalLines() throws {
        let framer = try Framer()
        #expect(try framer.feed("a\nbb\nccc") == [.line("a"), .line("bb")])
        #expect(try framer.feed("c\nd") == [.line("cccc")])
        #expect(try framer.finish() == [.line("d")])
    }

    @Test("a trailing \\r is stripped; blank and whitespace-only lines are skipped")
    func crlfAndBlank() throws {
        let framer = try Framer()
        #expect(try framer.feed("x\r\n\n\r\n   \n\t \r\n \r\r\ny\r\r\n a \n") == [.line("x"), .line("y\r"), .line(" a ")])
    }

    @Test("the end of input yields the unterminated last line, unless it is blank")
    func finish() throws {
        let framer = try Framer()
        #expect(try framer.feed("{\"op\":\"ping\"}\r") == [])
        #expect(try framer.finish() == [.line("{\"op\":\"ping\"}")])

        let blank = try Framer()
        #expect(try blank.feed("a\n  \r") == [.line("a")])
        #expect(try blank.finish() == [])

        #expect(try Framer().finish() == [])
    }

    @Test("a line of exactly the limit is accepted, one byte more is tooLarge, then nothing")
    func limit() throws {
        let limit = Framing.maxLineBytes
        #expect(limit == 1 << 20)
        let framer = try Framer()
        let exact = String(repeating: "x", count: limit)
        #expect(try framer.feed(exact + "\n") == [.line(exact)])
        #expect(try framer.feed("ok\n" + String(repeating: "y", count: limit + 1) + "\n") == [.line("ok"), .tooLarge])
        #expect(try framer.feed("{\"op\":\"ping\"}\n") == [], "after too_large the connection is only drained")
        #expect(try framer.finish() == [])
    }

    @Test("a small limit applies the same rules")
    func smallLimit() throws {
        let framer = try Framer(maxLength: 4)
        #expect(try framer.feed("abcd\n") == [.line("abcd")])
        #expect(try framer.feed("abc\r\n") == [.line("abc")])
        #expect(try framer.feed("abcd\r\n") == [.tooLarge])

        let unterminated = try Framer(maxLength: 4)
        #expect(try unterminated.feed("abcd") == [])
        #expect(try unterminated.finish() == [.line("abcd")])

        let over = try Framer(maxLength: 4)
        #expect(try over.feed("abcde") == [.tooLarge], "known too long before its newline")
        #expect(try over.finish() == [])
    }

    @Test("an oversized line is refused without buffering it")
    func boundedMemory() throws {
        let framer = try Framer()
        let chunk = [UInt8](repeating: UInt8(ascii: "z"), count: 64 * 1024)
        var frames: [Out] = []
        for _ in 0..<48 {  // 3 MiB, no newline
            frames += try framer.feed(chunk)
        }
        #expect(frames == [.tooLarge])
        #expect(try framer.feed("\n{\"op\":\"ping\"}\n") == [])

        let single = try Framer()
        #expect(try single.feed([UInt8](repeating: 0x41, count: 3 << 20)) == [.tooLarge])
    }

    @Test("lines before an oversized one are still passed on first")
    func linesBeforeOverflow() throws {
        let framer = try Framer(maxLength: 8)
        #expect(try framer.feed("one\ntwo\n0123456789") == [.line("one"), .line("two"), .tooLarge])
    }

    @Test("random chunking never changes the lines")
    func randomChunking() throws {
        var rng = SystemRandomNumberGenerator()
        let lines = (0..<200).map { i in "{\"id\":\(i),\"op\":\"ping\"}" }
        let stream = Array(
            lines.map { $0 + (Bool.random(using: &rng) ? "\r\n" : "\n") + (Bool.random(using: &rng) ? " \n" : "") }.joined().utf8)
        let framer = try Framer()
        var frames: [Out] = []
        var index = 0
        while index < stream.count {
            let end = min(stream.count, index + Int.random(in: 1...40, using: &rng))
            frames += try framer.feed(Array(stream[index..<end]))
            index = end
        }
        #expect(frames == lines.map(Out.line))
    }
}
