/// How protocol v1 frames requests (docs/PROTOCOL.md, "Framing"): one JSON object per line.
///
/// - A line is the bytes before a `\n`; one trailing `\r` is stripped. Empty and
///   whitespace-only lines (spaces, tabs, `\r`) are skipped.
/// - At the end of input, a last line without `\n` is still a line.
/// - A line longer than `maxLineBytes` (counting the bytes before the `\n`, a `\r` included) is
///   answered once with `too_large`, and the connection is closed.
///
/// The daemon frames with `LineDecoder`, a SwiftNIO decoder that applies these rules to the
/// socket's buffers without copying them.
public enum Framing {
    /// 1 MiB, excluding the "\n".
    public static let maxLineBytes = 1 << 20
}
