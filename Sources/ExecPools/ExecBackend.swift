import ControlProtocol
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import Synchronization

#if canImport(Glibc)
    import DaemonRuntime
    import Glibc
#endif

/// Worker processes for one exec pool.
///
/// A worker's stdin and stdout are one non-blocking pipe channel on the event loop, and its
/// stderr another: a job writes its request and waits for the answer line without holding a
/// thread, so a busy worker keeps no other job from anything but the pool's queue. Only
/// spawning needs a thread of its own (`spawner`): the parent-death signal that ties workers
/// to poold's life is tied to the thread that spawned them, so that thread lives until the
/// last worker has been reaped.
package struct ExecBackend: PoolBackend {
    package typealias Resource = ExecWorker

    let settings: ExecSettings
    let pool: String
    let logger: Logger
    /// Where workers' pipes are read and written, and their jobs wait.
    let loop: any EventLoop
    let spawner: ThreadExecutor
    /// Kills a worker's group if poold dies before it could (nil: it could not be started).
    let reaper: WorkerReaper?
    /// What poold spawned, so that what workers let go (and poold adopts) can be told apart.
    let orphans: Orphans?
    /// Announces each worker's exit.
    let watcher: ExitWatcher

    package init(
        settings: ExecSettings, pool: String, logger: Logger, loop: any EventLoop, spawner: ThreadExecutor, reaper: WorkerReaper?,
        orphans: Orphans?, watcher: ExitWatcher
    ) {
        self.watcher = watcher
        self.settings = settings
        self.pool = pool
        self.logger = logger
        self.loop = loop
        self.spawner = spawner
        self.reaper = reaper
        self.orphans = orphans
    }

    /// How long a new worker must stay alive to count as started.
    static let startCheck: Duration = .milliseconds(150)

    package func open() async throws -> ExecWorker {
        let process: WorkerProcess
        do {
            process = try await withTaskExecutorPreference(spawner) {
                try WorkerProcess.spawn(command: settings.command, directory: settings.workingDirectory, environment: settings.environment)
            }
        } catch {
            throw BackendFailure(.misconfigured, "\(error)")
        }
        process.watchExit(with: watcher, on: loop)
        reaper?.watch(process.pid)
        orphans?.spawned(process.pid)
        let stderr = WorkerStderr(pid: process.pid, pool: pool, logger: logger)
        stderr.start(fd: process.stderr, on: loop)
        let worker: ExecWorker
        do {
            worker = try await ExecWorker.attach(process, stderr: stderr, settings: settings, loop: loop)
        } catch {
            Glibc.close(process.stdin)
            Glibc.close(process.stdout)
            process.signalGroup(SIGKILL)
            if await process.waitForExit(limit: .seconds(10), on: loop) != nil {
                reaper?.forget(process.pid)
                orphans?.reaped(process.pid)
            }
            throw BackendFailure("cannot read and write the pipes of worker \(process.pid): \(error)")
        }
        // A worker that dies at once (a wrong path, a missing module) fails the open, so the
        // pool backs off and reports itself degraded instead of respawning in a loop.
        if let status = await process.waitForExit(limit: Self.startCheck, on: loop) {
            await stderr.waitUntilClosed(limit: .milliseconds(200), on: loop)
            if await worker.stop(grace: .zero, on: loop) {
                reaper?.forget(process.pid)
                orphans?.reaped(process.pid)
            }
            throw BackendFailure("worker \(settings.command.joined(separator: " ")) \(status) at start\(Self.tailText(stderr.tail))")
        }
        logger.info("worker started", metadata: ["pool": "\(pool)", "worker_pid": "\(process.pid)"])
        return worker
    }

    package func healthCheck(_ worker: ExecWorker) async throws {
        if let status = worker.process.exitStatus() {
            throw BackendFailure("worker \(worker.process.pid) \(status) while idle")
        }
    }

    package func close(_ worker: ExecWorker) async {
        if await worker.stop(grace: settings.killGrace, on: loop) {
            reaper?.forget(worker.process.pid)
            orphans?.reaped(worker.process.pid)
            logger.info("worker stopped", metadata: ["pool": "\(pool)", "worker_pid": "\(worker.process.pid)"])
        } else {
            logger.error(
                "worker did not exit even after SIGKILL (stuck in the kernel?); poold no longer waits for it",
                metadata: [
                    "pool": "\(pool)", "worker_pid": "\(worker.process.pid)",
                ])
        }
    }

    package func isBroken(_ worker: ExecWorker, after error: any Error) -> Bool {
        error is WorkerFailed || error is ResourceBroken || worker.mustBeReplaced
    }

    package func shouldRetire(_ worker: ExecWorker) -> Bool {
        worker.mustBeReplaced
    }

    /// `; its last stderr lines: a | b`, or nothing.
    static func tailText(_ lines: [String]) -> String {
        lines.isEmpty ? "" : "; its last stderr lines: " + lines.joined(separator: " | ")
    }
}

/// The worker answered `{"id", "error": "…"}`: the job failed, the worker is fine.
package struct WorkerAnswerError: Error, Sendable {
    package var message: String
}

/// The worker failed (died, or broke the protocol): the job fails with `backend` and this
/// message, and the worker is replaced.
package struct WorkerFailed: Error, Sendable, CustomStringConvertible {
    package var message: String
    init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// One worker in a pool: its process and the channel of its stdin and stdout. One job at a
/// time uses it (the lease), so `jobs` needs no lock; `stopped` is set from a stop signal
/// while a job waits on the worker.
package final class ExecWorker: @unchecked Sendable {
    package let process: WorkerProcess
    let stderr: WorkerStderr
    let settings: ExecSettings
    private let channel: any Channel
    private let output: WorkerOutput
    private(set) var jobs = 0
    private let stopped = Atomic<Bool>(false)

    private init(process: WorkerProcess, stderr: WorkerStderr, settings: ExecSettings, channel: any Channel, output: WorkerOutput) {
        self.process = process
        self.stderr = stderr
        self.settings = settings
        self.channel = channel
        self.output = output
    }

    /// Puts the worker's stdin and stdout on `loop` as one pipe channel, which owns them from
    /// then on.
    static func attach(_ process: WorkerProcess, stderr: WorkerStderr, settings: ExecSettings, loop: any EventLoop) async throws
        -> ExecWorker
    {
        let output = WorkerOutput(maxLine: settings.maxOutput)
        let channel = try await NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(output)
                }
            }
            .takingOwnershipOfDescriptors(input: process.stdout, output: process.stdin)
            .get()
        // A worker that dies while something it started still holds its stdout open gives no
        // end of file: its exit fails the job waiting on it (an answer already read counts).
        process.exited?.whenSuccess { output.workerExited() }
        return ExecWorker(process: process, stderr: stderr, settings: settings, channel: channel, output: output)
    }

    /// After a stop, a failure, or `max_jobs_per_worker` jobs, the worker is replaced.
    var mustBeReplaced: Bool {
        stopped.load(ordering: .relaxed) || jobs >= settings.maxJobsPerWorker || process.hasExited
    }

    /// Hands `input` to the worker and returns its output. Waits on the event loop, holding
    /// no thread. A stop sends the worker's group SIGTERM at once and ends the wait (the pool
    /// then finishes it: SIGKILL after kill_grace, reap).
    /// `durable`: a durable queue's job (docs/QUEUES.md): its `job_id` and `attempt` go in the
    /// request beside `id`, so that the worker can make its effects idempotent.
    package func run(input: JSONValue, id: Int64, durable: (job: Int64, attempt: Int)? = nil, stop: (any StopSource)?) async throws
        -> JSONValue
    {
        jobs += 1
        var request = JSONWriter(capacity: 64)
        request.writeRaw("{\"id\":")
        request.writeInt(id)
        if let durable {
            request.writeRaw(",\"job_id\":")
            request.writeInt(durable.job)
            request.writeRaw(",\"attempt\":")
            request.writeInt(Int64(durable.attempt))
        }
        request.writeRaw(",\"input\":")
        request.write(input)
        request.writeRaw("}\n")
        let answer = channel.eventLoop.makePromise(of: [UInt8].self)
        let (channel, output) = (self.channel, self.output)
        stop?.onStop { [self] in
            stopped.store(true, ordering: .relaxed)
            process.signalGroup(SIGTERM)
            channel.eventLoop.execute { output.stop() }
        }
        defer { stop?.onStop(nil) }
        let bytes = request.bytes
        channel.eventLoop.execute {
            output.expect(answer)
            channel.writeAndFlush(ByteBuffer(bytes: bytes)).whenFailure { _ in output.writeFailed() }
        }
        let line: [UInt8]
        do {
            line = try await answer.futureResult.get()
        } catch let failure as WorkerOutput.Failure {
            switch failure {
            case .stopped: throw CancellationError()
            case .tooLong:
                throw WorkerFailed(
                    "the worker (pid \(process.pid)) wrote an answer longer than max_output (\(settings.maxOutput) bytes); it was replaced")
            case .writeFailed: throw await died(during: "reading its input")
            case .closed: throw await died(during: "the job")
            }
        }
        let answerValue: JSONValue
        do {
            answerValue = try line.withUnsafeBytes { try JSON.parse($0) }
        } catch {
            let shown = String(decoding: line.prefix(120), as: UTF8.self)
            throw WorkerFailed(
                "the worker (pid \(process.pid)) wrote a line that is not valid JSON (\(error)): \(shown)\(line.count > 120 ? "…" : ""); "
                    + "it was replaced"
            )
        }
        guard case .object(let fields) = answerValue, let answered = fields["id"] else {
            throw WorkerFailed(
                "the worker (pid \(process.pid)) answered without an \"id\" (expected {\"id\": \(id), \"output\": …}); it was replaced")
        }
        guard answered == .int(id) else {
            throw WorkerFailed("the worker (pid \(process.pid)) answered id \(JSON.encode(answered)), expected \(id); it was replaced")
        }
        if let output = fields["output"] { return output }
        if case .string(let message)? = fields["error"] { throw WorkerAnswerError(message: message) }
        throw WorkerFailed("the worker (pid \(process.pid)) answered neither \"output\" nor an \"error\" string; it was replaced")
    }

    /// The worker went away: how (exit status or signal), with its last stderr lines.
    private func died(during what: String) async -> WorkerFailed {
        let status = await process.waitForExit(limit: .seconds(1), on: channel.eventLoop)
        await stderr.waitUntilClosed(limit: .milliseconds(200), on: channel.eventLoop)
        let how = status.map { "\($0)" } ?? "closed its stdout"
        return WorkerFailed("the worker (pid \(process.pid)) \(how) during \(what)\(ExecBackend.tailText(stderr.tail))")
    }

    /// End of input first (a worker that reads to EOF finishes on its own terms), then the
    /// signals of `WorkerProcess.stop`; the pipes are closed once it is reaped. False if it
    /// could not be reaped.
    @discardableResult
    func stop(grace: Duration, on loop: any EventLoop) async -> Bool {
        try? await channel.close(mode: .output).get()  // fails only if already closed
        let reaped = await process.stop(grace: grace, on: loop)
        try? await channel.close().get()  // fails only if already closed
        return reaped
    }
}

/// Splits a worker's stdout into lines, on the event loop, and hands each to the job waiting
/// for it. A line longer than `maxLine` fails the job (and the worker is replaced). Lines that
/// arrive with no job waiting are kept for the next one, which then sees the wrong id; what a
/// worker writes unasked is bounded by `maxLine` too.
package final class WorkerOutput: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = ByteBuffer

    enum Failure: Error {
        /// The job was stopped (timeout, cancel, disconnect, shutdown).
        case stopped
        /// The worker closed its stdout (it exited, most likely).
        case closed
        /// Writing the request failed: the worker closed its stdin.
        case writeFailed
        /// An answer line longer than `max_output`.
        case tooLong
    }

    private let maxLine: Int
    // Touched on the channel's event loop only.
    private var partial: [UInt8] = []
    private var lines: [[UInt8]] = []
    private var unclaimed = 0
    private var waiter: EventLoopPromise<[UInt8]>?
    private var failure: Failure?

    init(maxLine: Int) {
        self.maxLine = maxLine
    }

    /// The next line goes to `promise` (at once if one is waiting).
    func expect(_ promise: EventLoopPromise<[UInt8]>) {
        if !lines.isEmpty {
            let line = lines.removeFirst()
            unclaimed -= line.count
            promise.succeed(line)
        } else if let failure {
            promise.fail(failure)
        } else {
            waiter = promise
        }
    }

    func stop() { fail(.stopped) }
    func writeFailed() { fail(.writeFailed) }
    /// The worker process has exited; an answer already read still counts.
    func workerExited() { fail(.closed) }

    private func fail(_ reason: Failure) {
        if failure == nil { failure = reason }
        waiter?.fail(reason)
        waiter = nil
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }  // a worker being replaced: discard
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                partial.append(contentsOf: bytes[start..<newline])
                start = newline + 1
                guard partial.count <= maxLine else { break }
                deliver(partial)
                partial.removeAll(keepingCapacity: partial.capacity <= 64 * 1024)
            }
            if start < bytes.count { partial.append(contentsOf: bytes[start...]) }
        }
        if partial.count > maxLine || unclaimed > maxLine {
            partial = []
            fail(.tooLong)
        }
    }

    private func deliver(_ line: [UInt8]) {
        if let waiter {
            self.waiter = nil
            waiter.succeed(line)
        } else {
            lines.append(line)
            unclaimed += line.count + 1
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        fail(.closed)
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            fail(.closed)
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(.closed)
        context.close(promise: nil)
    }
}
