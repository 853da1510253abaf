/// Splits a connection's byte stream into request lines (DESIGN §4, Framing).
///
/// - A line is the bytes before a `\n`; one trailing `\r` is stripped. Empty and
///   whitespace-only lines (spaces, tabs, `\r`) are skipped, never returned.
/// - The limit counts the bytes before the `\n` (a `\r` included): a line of exactly
///   `maxLineBytes` is returned, one byte more is `.tooLarge`. After `.tooLarge` the
///   framer returns nil forever and ignores further input: the caller replies once and
///   closes the connection.
/// - Memory is bounded: as soon as the unterminated line passes the limit its bytes are
///   dropped, so `bufferedBytes` never exceeds `maxLineBytes` plus one append's worth,
///   provided the caller drains `next()` after each `append` (as a read loop does).
public struct LineFramer: Sendable {
    /// 1 MiB, excluding the "\n".
    public static let maxLineBytes = 1 << 20

    public enum Frame: Sendable, Hashable {
        case line([UInt8])
        case tooLarge
    }

    private let maxLineBytes: Int
    private var buffer: [UInt8] = []
    /// The first byte not yet returned.
    private var head = 0
    /// The first byte after the last `\n` in `buffer`: where the unterminated line starts.
    /// Every byte in `head..<tailStart` belongs to a complete line.
    private var tailStart = 0
    /// The unterminated line passed the limit and was dropped; `.tooLarge` is due once
    /// the complete lines before it have been returned.
    private var overflowed = false
    /// `.tooLarge` was returned.
    private var failed = false

    public init(maxLineBytes: Int = LineFramer.maxLineBytes) {
        self.maxLineBytes = Swift.max(0, maxLineBytes)
    }

    /// Bytes held (received and not yet returned).
    public var bufferedBytes: Int { buffer.count - head }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        bytes.withMemoryRebound(to: UInt8.self) { append(typed: $0) }
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append(typed: $0) }
    }

    private mutating func append(typed chunk: UnsafeBufferPointer<UInt8>) {
        guard !failed, !overflowed, !chunk.isEmpty else { return }
        var lastNewline = chunk.count - 1
        while lastNewline >= 0 && chunk[lastNewline] != UInt8(ascii: "\n") {
            lastNewline -= 1
        }
        if lastNewline >= 0 {
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[0...lastNewline]))
            tailStart = buffer.count
        }
        let rest = UnsafeBufferPointer(rebasing: chunk[(lastNewline + 1)...])
        if buffer.count - tailStart + rest.count > maxLineBytes {
            buffer.removeSubrange(tailStart...)
            overflowed = true
        } else {
            buffer.append(contentsOf: rest)
        }
    }

    /// The next complete line, `.tooLarge` once a line exceeds the limit, or nil when no
    /// complete line is buffered.
    public mutating func next() -> Frame? {
        guard !failed else { return nil }
        while head < tailStart {
            let lineStart = head
            var newline = head
            while newline < tailStart && buffer[newline] != UInt8(ascii: "\n") {
                newline += 1
            }
            head = newline + 1
            if newline - lineStart > maxLineBytes {
                return fail()
            }
            if let line = line(lineStart..<newline) {
                return .line(line)
            }
        }
        if overflowed {
            return fail()
        }
        compact()
        return nil
    }

    /// At EOF: the remaining frames, including the last line if it has no `\n` (same
    /// rules as `next()`); call until it returns nil.
    public mutating func finish() -> Frame? {
        if let frame = next() { return frame }
        guard !failed, head < buffer.count else { return nil }
        let range = head..<buffer.count
        head = buffer.count
        tailStart = buffer.count
        if range.count > maxLineBytes {
            return fail()
        }
        let frame = line(range).map(Frame.line)
        compact()
        return frame
    }

    /// The line's bytes without its trailing `\r`, or nil when it is blank.
    private func line(_ range: Range<Int>) -> [UInt8]? {
        var end = range.upperBound
        if end > range.lowerBound && buffer[end - 1] == UInt8(ascii: "\r") {
            end -= 1
        }
        var blank = true
        for i in range.lowerBound..<end {
            let byte = buffer[i]
            if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") && byte != UInt8(ascii: "\r") {
                blank = false
                break
            }
        }
        return blank ? nil : Array(buffer[range.lowerBound..<end])
    }

    private mutating func fail() -> Frame {
        failed = true
        overflowed = false
        buffer = []
        head = 0
        tailStart = 0
        return .tooLarge
    }

    /// Drops returned bytes. Only the unterminated line remains, and it is at most
    /// `maxLineBytes`, so the copy is bounded. A large buffer is released rather than
    /// kept, so an idle connection does not pin a megabyte.
    private mutating func compact() {
        guard head > 0 else { return }
        if head == buffer.count {
            if buffer.capacity > 64 * 1024 {
                buffer = []
            } else {
                buffer.removeAll(keepingCapacity: true)
            }
        } else {
            buffer.removeSubrange(0..<head)
        }
        tailStart -= head
        head = 0
    }
}
