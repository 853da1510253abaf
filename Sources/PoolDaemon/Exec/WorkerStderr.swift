import DequeModule
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What a worker wrote to stderr: logged line by line (with its pid and pool), at most
/// `burst` lines at once and `perSecond` after that, the rest counted and reported as
/// suppressed; the last lines kept for the message of a job the worker died in.
final class WorkerStderr: Sendable {
    static let maxLine = 4096
    static let tailLines = 5
    static let perSecond = 50.0
    static let burst = 200.0

    private struct State {
        var tail = Deque<String>()
        var closed = false
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

    fileprivate func line(_ text: String) {
        let (log, suppressedBefore) = state.withLock { state -> (Bool, Int) in
            state.tail.append(text.count > 200 ? String(text.prefix(200)) + "…" : text)
            if state.tail.count > Self.tailLines { state.tail.removeFirst() }
            return state.budget.take(at: .now)
        }
        if suppressedBefore > 0 {
            logger.warning("worker stderr: \(suppressedBefore) lines suppressed (more than \(Int(Self.perSecond))/s)")
        }
        if log {
            logger.info("worker stderr: \(text)")
        }
    }

    fileprivate func markClosed() {
        let suppressed = state.withLock { state -> Int in
            state.closed = true
            return state.budget.takeSuppressed()
        }
        if suppressed > 0 {
            logger.warning("worker stderr: \(suppressed) lines suppressed (more than \(Int(Self.perSecond))/s)")
        }
    }
}

/// Splits a worker's stderr into lines (cut at `WorkerStderr.maxLine`).
private final class StderrReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let sink: WorkerStderr
    private var partial: [UInt8] = []

    init(sink: WorkerStderr) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            if byte == UInt8(ascii: "\n") {
                emit()
            } else {
                partial.append(byte)
                if partial.count >= WorkerStderr.maxLine { emit() }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !partial.isEmpty { emit() }
        sink.markClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func emit() {
        var text = String(decoding: partial, as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        partial.removeAll(keepingCapacity: true)
        sink.line(text)
    }
}
