import ControlProtocol
import Testing

@Suite("Line framing")
struct LineFramerTests {

    func line(_ text: String) -> LineFramer.Frame {
        .line(Array(text.utf8))
    }

    /// Every frame `next()` returns now.
    func drain(_ framer: inout LineFramer) -> [LineFramer.Frame] {
        var frames: [LineFramer.Frame] = []
        while let frame = framer.next() { frames.append(frame) }
        return frames
    }

    @Test("a request split across byte-by-byte appends comes out whole, once")
    func byteByByte() {
        var framer = LineFramer()
        let input = Array("{\"id\":1,\"op\":\"ping\"}\n{\"op\":\"status\"}\n".utf8)
        var frames: [LineFramer.Frame] = []
        for byte in input {
            framer.append([byte])
            frames += drain(&framer)
        }
        #expect(frames == [line("{\"id\":1,\"op\":\"ping\"}"), line("{\"op\":\"status\"}")])
        #expect(framer.bufferedBytes == 0)
        #expect(framer.finish() == nil)
    }

    @Test("several lines in one append, then the rest in later ones")
    func severalLines() {
        var framer = LineFramer()
        framer.append(Array("a\nbb\nccc".utf8))
        #expect(drain(&framer) == [line("a"), line("bb")])
        #expect(framer.bufferedBytes == 3)
        framer.append(Array("c\nd".utf8))
        #expect(drain(&framer) == [line("cccc")])
        #expect(framer.finish() == line("d"))
        #expect(framer.finish() == nil)
    }

    @Test("a trailing \\r is stripped; blank and whitespace-only lines are skipped")
    func crlfAndBlank() {
        var framer = LineFramer()
        framer.append(Array("x\r\n\n\r\n   \n\t \r\n \r\r\ny\r\r\n a \n".utf8))
        #expect(drain(&framer) == [line("x"), line("y\r"), line(" a ")])
    }

    @Test("the raw-pointer append behaves like the array one")
    func rawAppend() {
        var framer = LineFramer()
        Array("one\ntwo\n".utf8).withUnsafeBytes { framer.append($0) }
        framer.append(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(drain(&framer) == [line("one"), line("two")])
    }

    @Test("finish returns the unterminated last line, unless it is blank")
    func finish() {
        var framer = LineFramer()
        framer.append(Array("{\"op\":\"ping\"}\r".utf8))
        #expect(framer.next() == nil)
        #expect(framer.finish() == line("{\"op\":\"ping\"}"))
        #expect(framer.finish() == nil)

        var blank = LineFramer()
        blank.append(Array("a\n  \r".utf8))
        #expect(blank.finish() == line("a"))
        #expect(blank.finish() == nil)

        var empty = LineFramer()
        #expect(empty.finish() == nil)
    }

    @Test("a line of exactly the limit is accepted, one byte more is tooLarge, then nil forever")
    func limit() {
        let limit = LineFramer.maxLineBytes
        #expect(limit == 1 << 20)
        var framer = LineFramer()
        let exact = [UInt8](repeating: UInt8(ascii: "x"), count: limit)
        framer.append(exact + [UInt8(ascii: "\n")])
        #expect(framer.next() == .line(exact))

        framer.append(Array("ok\n".utf8) + [UInt8](repeating: UInt8(ascii: "y"), count: limit + 1) + [UInt8(ascii: "\n")])
        #expect(framer.next() == line("ok"))
        #expect(framer.next() == .tooLarge)
        #expect(framer.next() == nil)
        framer.append(Array("{\"op\":\"ping\"}\n".utf8))
        #expect(framer.next() == nil)
        #expect(framer.finish() == nil)
        #expect(framer.bufferedBytes == 0)
    }

    @Test("a small limit applies the same rules")
    func smallLimit() {
        var framer = LineFramer(maxLineBytes: 4)
        framer.append(Array("abcd\n".utf8))
        #expect(framer.next() == line("abcd"))
        framer.append(Array("abc\r\n".utf8))
        #expect(framer.next() == line("abc"))
        framer.append(Array("abcd\r\n".utf8))
        #expect(framer.next() == .tooLarge)

        var unterminated = LineFramer(maxLineBytes: 4)
        unterminated.append(Array("abcd".utf8))
        #expect(unterminated.next() == nil)
        #expect(unterminated.finish() == line("abcd"))

        var over = LineFramer(maxLineBytes: 4)
        over.append(Array("abcde".utf8))
        #expect(over.finish() == .tooLarge)
    }

    @Test("an oversized line is detected without buffering it")
    func boundedMemory() {
        var framer = LineFramer()
        let chunk = [UInt8](repeating: UInt8(ascii: "z"), count: 64 * 1024)
        var frames: [LineFramer.Frame] = []
        var maxBuffered = 0
        for _ in 0..<48 {  // 3 MiB, no newline
            framer.append(chunk)
            maxBuffered = max(maxBuffered, framer.bufferedBytes)
            frames += drain(&framer)
        }
        #expect(frames == [.tooLarge])
        #expect(maxBuffered <= LineFramer.maxLineBytes + chunk.count)
        #expect(framer.bufferedBytes == 0)

        // Even without draining between appends.
        var undrained = LineFramer()
        for _ in 0..<48 { undrained.append(chunk) }
        #expect(undrained.bufferedBytes <= LineFramer.maxLineBytes)
        #expect(undrained.next() == .tooLarge)

        // One 3 MiB append holds at most the limit.
        var single = LineFramer()
        single.append([UInt8](repeating: 0x41, count: 3 << 20))
        #expect(single.bufferedBytes <= LineFramer.maxLineBytes)
        #expect(single.next() == .tooLarge)
    }

    @Test("lines before an oversized one are still returned first")
    func linesBeforeOverflow() {
        var framer = LineFramer(maxLineBytes: 8)
        framer.append(Array("one\ntwo\n0123456789".utf8))
        #expect(framer.next() == line("one"))
        #expect(framer.next() == line("two"))
        #expect(framer.next() == .tooLarge)
        #expect(framer.next() == nil)
    }

    @Test("random chunking never changes the lines")
    func randomChunking() {
        var rng = SystemRandomNumberGenerator()
        let lines = (0..<200).map { i in "{\"id\":\(i),\"op\":\"ping\"}" }
        let stream = Array(lines.map { $0 + (Bool.random(using: &rng) ? "\r\n" : "\n") + (Bool.random(using: &rng) ? " \n" : "") }.joined().utf8)
        var framer = LineFramer()
        var frames: [LineFramer.Frame] = []
        var index = 0
        while index < stream.count {
            let size = Int.random(in: 1...40, using: &rng)
            let end = min(stream.count, index + size)
            framer.append(Array(stream[index..<end]))
            frames += drain(&framer)
            index = end
        }
        #expect(frames == lines.map(line))
    }
}
