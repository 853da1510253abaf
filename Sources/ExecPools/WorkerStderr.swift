import DaemonRuntime
import DequeModule
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What a worker wrote to stderr: logged line by line (with its pid and pool), at most
/// `burst` lines at once and `perSecond` after that, the rest counted and reported as
/// suppressed; the last lines kept for the message of a job the worker died in.
package final class WorkerStderr: Sendable {
    static let maxLine = 4096
    static let tailLines = 5
    static let perSecond = 50.0
    static let burst = 200.0

    private struct State {
        var tail = Deque<String>()
        var closed = false
        /// Succeeds when stderr reaches its end; made when reading starts.
        var end: EventLoopPromise<Void>?
        var budget = LogBudget(burst: WorkerStderr.burst, perSecond: WorkerStderr.perSecond)
    }

    private let state = Mutex(State())
    private let logger: Logger

    init(pid: pid_t, pool: String, logger: Logger) {
        var logger = logger
        logger[metadataKey: "pool"] = "\(pool)"
        logger[metadataKey: "worker_pid"] = "\(pid)"
        self.logger = logger
    }

    /// Reads `fd` on `loop` until the worker closes it (it exits).
    func start(fd: Int32, on loop: any EventLoop) {
        state.withLock { $0.end = loop.makePromise(of: Void.self) }
        NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StderrReader(sink: self))
                }
            }
            .takingOwnershipOfDescriptor(input: fd)
            .whenFailure { [self] _ in markClosed() }
    }

    /// The last lines, oldest first.
    var tail: [String] { state.withLock { Array($0.tail) } }
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Waits up to `limit` for the worker's stderr to reach its end (its last lines read).
    func waitUntilClosed(limit: Duration, on loop: any EventLoop) async {
        guard let end = state.withLock({ $0.closed ? nil : $0.end }) else { return }
        await end.futureResult.wait(atMost: limit, on: loop)
    }

    /// Lines read together (`ranges` of `bytes`): the last few kept as the tail, as many as
    /// the budget allows logged. Only those become strings, so a worker writing stderr flat
    /// out costs a scan of its bytes and little more.
    fileprivate func lines(_ bytes: [UInt8], _ ranges: [Range<Int>]) {
        func text(_ range: Range<Int>) -> String {
            var text = String(decoding: bytes[range], as: UTF8.self)
            if text.hasSuffix("\r") { text.removeLast() }
            return text
        }
        let last = ranges.suffix(Self.tailLines).map { range -> String in
            let line = text(range)
            return line.count > 200 ? String(line.prefix(200)) + "…" : line
        }
        let (allowed, suppressedBefore) = state.withLock { state -> (Int, Int) in
            state.tail.append(contentsOf: last)
            while state.tail.count > Self.tailLines { state.tail.removeFirst() }
            return state.budget.take(ranges.count, at: .now)
        }
        if suppressedBefore > 0 {
            logger.warning("worker stderr: \(suppressedBefore) lines suppressed (more than \(Int(Self.perSecond))/s)")
        }
        for range in ranges.prefix(allowed) {
            logger.info("worker stderr: \(text(range))")
        }
    }

    fileprivate func markClosed() {
        let (suppressed, end) = state.withLock { state -> (Int, EventLoopPromise<Void>?) in
            state.closed = true
            defer { state.end = nil }
            return (state.budget.takeSuppressed(), state.end)
        }
        end?.succeed(())
        if suppressed > 0 {
            logger.warning("worker stderr: \(suppressed) lines suppressed (more than \(Int(Self.perSecond))/s)")
        }
    }
}

/// Splits a worker's stderr into lines (cut at `WorkerStderr.maxLine`), a whole read at a time.
private final class StderrReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let sink: WorkerStderr
    /// The line being read, across reads.
    private var partial: [UInt8] = []
    /// The lines one read completed, and where each lies in `completed`.
    private var completed: [UInt8] = []
    private var ranges: [Range<Int>] = []

    init(sink: WorkerStderr) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + WorkerStderr.maxLine - partial.count)
                if let newline = bytes[start..<end].firstIndex(of: UInt8(ascii: "\n")) {
                    partial.append(contentsOf: bytes[start..<newline])
                    finishLine()
                    start = newline + 1
                } else {
                    partial.append(contentsOf: bytes[start..<end])
                    start = end
                    if partial.count >= WorkerStderr.maxLine { finishLine() }
                }
            }
        }
        flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !partial.isEmpty { finishLine() }
        flush()
        sink.markClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func finishLine() {
        let start = completed.count
        completed.append(contentsOf: partial)
        ranges.append(start..<completed.count)
        partial.removeAll(keepingCapacity: true)
    }

    private func flush() {
        guard !ranges.isEmpty else { return }
        sink.lines(completed, ranges)
        completed.removeAll(keepingCapacity: completed.capacity <= 256 * 1024)
        ranges.removeAll(keepingCapacity: true)
    }
}
