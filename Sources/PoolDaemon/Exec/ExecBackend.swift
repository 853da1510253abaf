#if canImport(Glibc)
import Glibc
#endif
import ControlProtocol
import Logging
import NIOCore
import PoolConfig
import PoolCore
import PoolKit
import Synchronization

/// Worker processes for one exec pool. Spawning, stopping and every blocking read and write
/// happen on the pool's own threads (`executor`), which live until the last worker is reaped:
/// the parent-death signal is tied to the spawning thread.
struct ExecBackend: PoolBackend {
    typealias Resource = ExecWorker

    let settings: ExecSettings
    let pool: String
    let logger: Logger
    /// Where workers' stderr is read.
    let loop: any EventLoop
    let executor: DedicatedExecutor

    /// How long a new worker must stay alive to count as started.
    static let startCheck: Duration = .milliseconds(150)

    func open() async throws -> ExecWorker {
        try await withTaskExecutorPreference(executor) {
            let process: WorkerProcess
            do {
                process = try WorkerProcess.spawn(command: settings.command, directory: settings.workingDirectory, environment: settings.environment)
            } catch {
                throw BackendFailure(.misconfigured, "\(error)")
            }
            let stderr = WorkerStderr(pid: process.pid, pool: pool, logger: logger)
            stderr.start(fd: process.stderr, on: loop)
            // A worker that dies at once (a wrong path, a missing module) fails the open, so
            // the pool backs off and reports itself degraded instead of respawning in a loop.
            let deadline = ContinuousClock.now + Self.startCheck
            while !process.hasExited, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
            if let status = process.exitStatus() {
                await stderr.waitUntilClosed(limit: .milliseconds(200))
                await process.stop(grace: .zero)
                throw BackendFailure("worker \(settings.command.joined(separator: " ")) \(status) at start\(Self.tailText(stderr.tail))")
            }
            logger.info("worker started", metadata: ["pool": "\(pool)", "worker_pid": "\(process.pid)"])
            return ExecWorker(process: process, stderr: stderr, settings: settings)
        }
    }

    func healthCheck(_ worker: ExecWorker) async throws {
        if let status = worker.process.exitStatus() {
            throw BackendFailure("worker \(worker.process.pid) \(status) while idle")
        }
    }

    func close(_ worker: ExecWorker) async {
        await withTaskExecutorPreference(executor) {
            await worker.process.stop(grace: settings.killGrace)
        }
        logger.info("worker stopped", metadata: ["pool": "\(pool)", "worker_pid": "\(worker.process.pid)"])
    }

    func isBroken(_ worker: ExecWorker, after error: any Error) -> Bool {
        error is WorkerFailed || error is ResourceBroken || worker.mustBeReplaced
    }

    func shouldRetire(_ worker: ExecWorker) -> Bool {
        worker.mustBeReplaced
    }

    /// `; its last stderr lines: a | b`, or nothing.
    static func tailText(_ lines: [String]) -> String {
        lines.isEmpty ? "" : "; its last stderr lines: " + lines.joined(separator: " | ")
    }
}

/// The worker answered `{"id", "error": "…"}`: the job failed, the worker is fine.
struct WorkerAnswerError: Error, Sendable {
    var message: String
}

/// The worker failed (died, or broke the protocol): the job fails with `backend` and this
/// message, and the worker is replaced.
struct WorkerFailed: Error, Sendable, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// One worker in a pool. One job at a time uses it (the lease), so its buffers need no lock;
/// `stopped` is the exception, set from a stop signal while a job waits on the worker.
final class ExecWorker: @unchecked Sendable {
    let process: WorkerProcess
    let stderr: WorkerStderr
    let settings: ExecSettings
    private(set) var jobs = 0
    private var pending: [UInt8] = []
    /// Reused for every read: allocating and zeroing 64 KiB per read showed in profiles.
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    private let stopped = Atomic<Bool>(false)

    init(process: WorkerProcess, stderr: WorkerStderr, settings: ExecSettings) {
        self.process = process
        self.stderr = stderr
        self.settings = settings
    }

    /// After a stop, a failure, or `max_jobs_per_worker` jobs, the worker is replaced.
    var mustBeReplaced: Bool {
        stopped.load(ordering: .relaxed) || jobs >= settings.maxJobsPerWorker || process.hasExited
    }

    /// Hands `input` to the worker and returns its output. Blocks the calling thread (one of
    /// the pool's own) until the answer, a failure or a stop; a stop sends the worker's group
    /// SIGTERM at once (the pool then finishes it: SIGKILL after kill_grace, reap).
    func run(input: JSONValue, id: Int64, stop: (any StopSource)?) throws -> JSONValue {
        stop?.onStop { [self] in
            stopped.store(true, ordering: .relaxed)
            process.signalGroup(SIGTERM)
        }
        defer { stop?.onStop(nil) }
        jobs += 1
        var request = JSONWriter(capacity: 64)
        request.writeRaw("{\"id\":")
        request.writeInt(id)
        request.writeRaw(",\"input\":")
        request.write(input)
        request.writeRaw("}\n")
        try write(request.bytes)
        let line = try readLine()
        let answer: JSONValue
        do {
            answer = try line.withUnsafeBytes { try JSON.parse($0) }
        } catch {
            let shown = String(decoding: line.prefix(120), as: UTF8.self)
            throw WorkerFailed("the worker (pid \(process.pid)) wrote a line that is not valid JSON (\(error)): \(shown)\(line.count > 120 ? "…" : ""); it was replaced")
        }
        guard case .object(let fields) = answer, let answered = fields["id"] else {
            throw WorkerFailed("the worker (pid \(process.pid)) answered without an \"id\" (expected {\"id\": \(id), \"output\": …}); it was replaced")
        }
        guard answered == .int(id) else {
            throw WorkerFailed("the worker (pid \(process.pid)) answered id \(JSON.encode(answered)), expected \(id); it was replaced")
        }
        if let output = fields["output"] { return output }
        if case .string(let message)? = fields["error"] { throw WorkerAnswerError(message: message) }
        throw WorkerFailed("the worker (pid \(process.pid)) answered neither \"output\" nor an \"error\" string; it was replaced")
    }

    private var isStopped: Bool { stopped.load(ordering: .relaxed) }

    private func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            if isStopped { throw CancellationError() }
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(process.stdin, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                var fd = pollfd(fd: process.stdin, events: Int16(POLLOUT), revents: 0)
                _ = poll(&fd, 1, 20)
                continue
            }
            throw died(during: "reading its input")
        }
    }

    /// One line from the worker's stdout, at most `max_output` bytes.
    private func readLine() throws -> [UInt8] {
        var scanned = 0
        while true {
            if let newline = pending[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                return line
            }
            scanned = pending.count
            if pending.count > settings.maxOutput {
                throw WorkerFailed("the worker (pid \(process.pid)) wrote an answer longer than max_output (\(settings.maxOutput) bytes); it was replaced")
            }
            if isStopped { throw CancellationError() }
            var fd = pollfd(fd: process.stdout, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, 20)
            if ready <= 0 { continue }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(process.stdout, $0.baseAddress, $0.count) }
            if n > 0 {
                pending.append(contentsOf: chunk[..<n])
            } else if n == 0 {
                if isStopped { throw CancellationError() }
                throw died(during: "the job")
            } else if errno != EAGAIN && errno != EINTR {
                throw died(during: "the job")
            }
        }
    }

    /// The worker went away: how (exit status or signal), with its last stderr lines.
    private func died(during what: String) -> WorkerFailed {
        let deadline = ContinuousClock.now + .seconds(1)
        var status = process.exitStatus()
        while status == nil, ContinuousClock.now < deadline {
            usleep(5000)
            status = process.exitStatus()
        }
        let stderrDeadline = ContinuousClock.now + .milliseconds(200)
        while !stderr.isClosed, ContinuousClock.now < stderrDeadline { usleep(5000) }
        let how = status.map { "\($0)" } ?? "closed its stdout"
        return WorkerFailed("the worker (pid \(process.pid)) \(how) during \(what)\(ExecBackend.tailText(stderr.tail))")
    }
}

extension WorkerStderr {
    func waitUntilClosed(limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while !isClosed, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}
