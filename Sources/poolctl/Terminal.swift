import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// The terminal `poolctl top` draws on: raw input, the alternate screen, the window size, and
/// signals turned into bytes that one `poll` waits for beside the keys. No curses: termios and
/// a few ANSI escapes are all a redraw in place needs, and the package adds no dependency.
enum Terminal {
    static let enterScreen = "\u{1B}[?1049h\u{1B}[?25l\u{1B}[?7l"
    /// Autowrap back on, the cursor shown, the alternate screen left: the last bytes poolctl writes.
    static let leaveScreen = "\u{1B}[?7h\u{1B}[?25h\u{1B}[?1049l"
    static let home = "\u{1B}[H"
    static let clearToEndOfLine = "\u{1B}[K"
    static let clearToEndOfScreen = "\u{1B}[J"

    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// `fd`'s window in columns and rows, read anew on each frame so that a resize takes
    /// effect at the next one; nil when `fd` is no terminal or reports 0.
    static func size(of fd: Int32) -> (columns: Int, rows: Int)? {
        var window = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &window) == 0, window.ws_col > 0, window.ws_row > 0 else { return nil }
        return (Int(window.ws_col), Int(window.ws_row))
    }

    /// Runs `body` on the alternate screen (autowrap off, so no line ever wraps; the cursor
    /// hidden) with `input`'s terminal, if given, in raw mode: no echo, keys one at a time,
    /// Ctrl-C and Ctrl-Z read as bytes rather than sent as signals. Every path out of here (a
    /// return, a throw) restores the terminal mode poolctl found and leaves the screen.
    static func withScreen<R>(output: Int32, input: Int32?, _ body: () throws -> R) throws -> R {
        var saved: termios?
        if let input {
            var mode = termios()
            if tcgetattr(input, &mode) == 0 {
                saved = mode
                mode.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN)
                mode.c_iflag &= ~tcflag_t(IXON | ICRNL)
                withUnsafeMutableBytes(of: &mode.c_cc) { cc in
                    cc[Int(VMIN)] = 1
                    cc[Int(VTIME)] = 0
                }
                _ = tcsetattr(input, TCSANOW, &mode)
            }
        }
        defer {
            if let input, var mode = saved { _ = tcsetattr(input, TCSANOW, &mode) }
            write(output, leaveScreen)
        }
        write(output, enterScreen)
        return try body()
    }

    /// Writes all of `text` to `fd` (a short write or EINTR is not the end of it; an error is:
    /// a terminal that went away will not show the rest either).
    static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            bytes = bytes.dropFirst(n)
        }
    }
}

/// Signals as bytes on a pipe, for as long as `with`'s body runs: the signals are ignored by
/// the process and caught by DispatchSources (as swift-service-lifecycle's UnixSignals does
/// for poold), whose handlers write the signal's number to the pipe. The body polls the
/// pipe's read end beside its other descriptors, so a signal wakes the one loop that owns the
/// terminal and is handled there, never inside a signal handler.
enum SignalPipe {
    static func with<R>(_ signals: [Int32], _ body: (Int32) throws -> R) throws -> R {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw TopFailure(code: 1, message: "poolctl: cannot make a pipe: \(String(cString: strerror(errno)))")
        }
        let (readEnd, writeEnd) = (ends[0], ends[1])
        let queue = DispatchQueue(label: "poolctl.top.signals")
        let cancelled = DispatchGroup()
        var sources: [any DispatchSourceSignal] = []
        var previous: [(Int32, __sighandler_t?)] = []
        for signal in signals {
            previous.append((signal, Glibc.signal(signal, SIG_IGN)))
            let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
            source.setEventHandler {
                var byte = UInt8(truncatingIfNeeded: signal)
                _ = Glibc.write(writeEnd, &byte, 1)
            }
            cancelled.enter()
            source.setCancelHandler { cancelled.leave() }
            source.resume()
            sources.append(source)
        }
        defer {
            for source in sources { source.cancel() }
            // No handler may write to the pipe once it is closed (its number could be reused).
            cancelled.wait()
            for (signal, handler) in previous { _ = Glibc.signal(signal, handler) }
            close(readEnd)
            close(writeEnd)
        }
        return try body(readEnd)
    }
}
