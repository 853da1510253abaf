import ControlProtocol
import DaemonRuntime
import ExecPools
import Logging
import PoolCore
import PoolKit
import SQLitePools

/// Running a job: its timeout checked, registered (deadline, `cancel`, disconnect), measured,
/// run on a resource of its pool, and answered with its result or what went wrong.
extension JobRouter {
    func runJob(
        id: RequestID?, pool: ManagedPool, statements: [SQLStatement], isBatch: Bool, transaction: Bool, adhoc: Bool,
        timeout: Duration? = nil, timeoutMs: Int64?, peer: Peer, owner: ConnectionJobs?, received: ContinuousClock.Instant
    ) async -> [UInt8] {
        await runJob(
            id: id, pool: pool, timeout: timeout, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received, isBatch: isBatch
        ) { _, signal, leased in
            try await pool.execute(statements, transaction: transaction, adhoc: adhoc, stop: signal, leased: leased)
        } reply: { results, job, timing in
            Reply.sql(id: id, job: job, results: results, isBatch: isBatch, timing: timing)
        }
    }

    /// A job of any kind: checks its timeout, registers it (deadline, cancel, disconnect),
    /// measures it, runs `body` on a resource of `pool`, and answers with `reply` or the error.
    func runJob<R>(
        id: RequestID?, pool: ManagedPool, timeout: Duration?, timeoutMs: Int64?, peer: Peer, owner: ConnectionJobs?,
        received: ContinuousClock.Instant, isBatch: Bool,
        body: (Int64, StopSignal, @escaping @Sendable () -> Void) async throws -> R,
        reply: (R, Int64, JobTiming) -> [UInt8]
    ) async -> [UInt8] {
        let settings = pool.jobRules
        if let timeoutMs, Duration.milliseconds(timeoutMs) > settings.maxJobTimeout {
            return Reply.error(
                id: id, code: .badRequest,
                message:
                    "\"timeout_ms\" must be at most \(settings.maxJobTimeout.milliseconds) (pool \"\(pool.name)\" max_job_timeout = "
                    + "\(settings.maxJobTimeout.limitDescription)); got \(timeoutMs)"
            )
        }
        if !lifecycle.acceptsJobs {
            return Reply.error(id: id, code: .shuttingDown, message: "poold is shutting down; the job never started")
        }
        let limit = min(timeout ?? settings.jobTimeout, settings.maxJobTimeout)
        let (job, signal) = jobs.register(pool: pool.name, peer: peer, limit: limit, received: received)
        owner?.add(job, signal)
        defer {
            owner?.remove(job)
            jobs.remove(job)
        }
        let stopwatch = JobStopwatch(clock: context.clock, startedAt: received)
        let registry = jobs
        let answer: [UInt8]
        var outcome = JobOutcome.succeeded
        do {
            let result = try await withMeasurement(stopwatch, into: pool.statistics) {
                try await withJobScope(limit: limit, signal: signal) {
                    stopwatch.acquiring()
                    registry.set(job, .acquiring)
                    return try await body(job, signal) {
                        stopwatch.running()
                        registry.set(job, .running)
                    }
                }
            }
            answer = reply(result, job, stopwatch.timing)
        } catch {
            outcome = JobOutcome(error)
            answer = errorReply(id: id, job: job, error: error, limit: limit, timing: stopwatch.timing, isBatch: isBatch)
        }
        let timing = stopwatch.timing
        pool.collectors.record(outcome, timing)
        context.count(outcome)
        logger.info(
            "job finished",
            metadata: [
                "job.id": "\(job)", "pool": "\(pool.name)", "outcome": "\(outcome.rawValue)",
                "wait_us": "\((timing.queue + timing.acquire).microseconds)", "exec_us": "\(timing.exec.microseconds)",
            ])
        return answer
    }

    private func errorReply(id: RequestID?, job: Int64, error: any Error, limit: Duration, timing: JobTiming, isBatch: Bool) -> [UInt8] {
        switch error {
        case is TimeoutError:
            return Reply.error(
                id: id, code: .timeout,
                message:
                    "job \(job) exceeded \(limit.limitDescription) (acquire \(timing.acquire.elapsedDescription), running "
                    + "\(timing.exec.elapsedDescription)); it was stopped and rolled back",
                job: job)
        case let stopped as JobStopped:
            let why =
                switch stopped.reason {
                case .cancelled(let by): "cancelled by \(by)"
                case .disconnected: "cancelled because its client disconnected"
                case .shutdown: "cancelled because poold is stopping and the job outlived shutdown_grace"
                case .timeout: "stopped"
                }
            return Reply.error(id: id, code: .cancelled, message: "job \(job) was \(why); what it did was rolled back", job: job)
        case is CancellationError:
            return Reply.error(id: id, code: .cancelled, message: "job \(job) was cancelled; what it did was rolled back", job: job)
        case let error as PoolError:
            return Reply.error(id: id, code: error.code, message: error.message, job: job)
        case let batch as BatchFailure:
            var (code, message, detail) = (batch.code, batch.message, batch.detail)
            if isBatch, let index = batch.index {
                var withIndex = detail ?? JSONObject()
                withIndex["index"] = .int(Int64(index))
                detail = withIndex
                message = "statement \(index): \(message)"
            }
            return Reply.error(id: id, code: code, message: message, job: job, detail: detail)
        case let worker as WorkerAnswerError:
            return Reply.error(id: id, code: .backend, message: "the worker answered an error: \(worker.message)", job: job)
        case let worker as WorkerFailed:
            return Reply.error(id: id, code: .backend, message: worker.message, job: job)
        case let broken as ResourceBroken:
            return Reply.error(id: id, code: .backend, message: "the connection failed: \(broken.reason); it was replaced", job: job)
        default:
            return Reply.error(id: id, code: .backend, message: "\(error)", job: job)
        }
    }

}
