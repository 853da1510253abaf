import ControlProtocol
import DaemonRuntime
import DurableQueues
import ExecPools
import Logging
import PoolConfig
import PoolCore
import PoolKit
import PostgresWire

#if canImport(Glibc)
    import Glibc
#endif

/// Running one durable job that this host took: registered like any job (`jobs`, its timeout,
/// shutdown), measured into its pool's statistics, and its outcome recorded in the store.
extension QueueHost {
    /// How a durable job's attempt ended, for the store, the log and the counters.
    enum Ending {
        /// Committed (a SQL job, with its completion), or to complete (an exec job's result).
        case completed(result: String?)
        /// Failed: retryable after the backoff, or discarded after its last attempt.
        case failed(String)
        /// Its fence refused the completion: it was rescued, cancelled or handed back meanwhile,
        /// and its effects rolled back. Nothing to record.
        case superseded
        /// Stopped because poold is stopping: `leave` hands it back, its attempt not counted.
        case handedBack
        /// Stopped by `job_cancel`, or by its lease expiring: the store already says so.
        case stopped(String)
    }

    /// The uid and pid `jobs` shows for durable jobs: poold's own.
    static let selfPeer = Peer(uid: getuid(), gid: getgid(), pid: getpid())

    func execute(_ job: QueueStore.Taken, queue: QueueSettings, epoch: Int64, signal: StopSignal) async {
        let (poolName, ending, timing) = await attempt(job, queue: queue, epoch: epoch, signal: signal)
        // Built only when the line is logged: completions at info are most of them, and the
        // journal usually takes notice and above.
        func metadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
            [
                "queue": "\(queue.name)", "durable_job_id": "\(job.id)", "attempt": "\(job.attempt)", "pool": "\(poolName)",
                "wait_us": "\((timing.queue + timing.acquire).microseconds)", "exec_us": "\(timing.exec.microseconds)",
            ].merging(extra) { $1 }
        }
        switch ending {
        case .completed(let result):
            if case .pool = queue.work {
                completed(QueueStore.Completion(id: job.id, attempt: job.attempt, epoch: epoch, result: result))
            }
            count(queue.name, "completed")
            logger.info("durable job completed", metadata: metadata())
        case .failed(let error):
            failed(PendingFailure(id: job.id, attempt: job.attempt, epoch: epoch, error: error))
            let last = job.attempt >= job.maxAttempts
            count(queue.name, last ? "discarded" : "failed")
            logger.warning(
                last ? "durable job failed its last attempt; discarded" : "durable job failed; it will be retried",
                metadata: metadata(["error": "\(error)", "event": "\(last ? "durable_job_discarded" : "durable_job_failed")"]))
        case .superseded:
            count(queue.name, "superseded")
            logger.notice("durable job was rescued or cancelled while it ran; its effects were rolled back", metadata: metadata())
        case .handedBack:
            count(queue.name, "handed_back")
            logger.info("durable job stopped by shutdown; handed back", metadata: metadata())
        case .stopped(let why):
            count(queue.name, "stopped")
            logger.notice("durable job stopped", metadata: metadata(["reason": "\(why)"]))
        }
    }

    /// One attempt, registered and measured like any job.
    private func attempt(
        _ job: QueueStore.Taken, queue: QueueSettings, epoch: Int64, signal: StopSignal
    ) async -> (pool: String, ending: Ending, timing: JobTiming) {
        let poolName: String
        let sql: [String]
        switch queue.work {
        case .job(let name):
            guard let settings = context.config.job(named: name) else {
                return (store, .failed("job \"\(name)\" is no longer in the config"), JobTiming())
            }
            (poolName, sql) = (settings.pool, settings.sql)
        case .pool(let name):
            (poolName, sql) = (name, [])
        }
        guard let managed = context.pools.named(poolName) else {
            return (poolName, .failed("pool \"\(poolName)\" is no longer in the config"), JobTiming())
        }
        let received = ContinuousClock.now
        let registry = context.jobs
        let (local, _) = registry.register(pool: poolName, peer: Self.selfPeer, limit: queue.timeout, received: received, signal: signal)
        defer { registry.remove(local) }
        let stopwatch = JobStopwatch(clock: context.clock, startedAt: received)
        let leased: @Sendable () -> Void = {
            stopwatch.running()
            registry.set(local, .running)
        }
        var outcome = JobOutcome.succeeded
        let ending: Ending
        do {
            let result = try await withMeasurement(stopwatch, into: managed.statistics) {
                try await withJobScope(limit: queue.timeout, signal: signal) { () async throws -> String? in
                    stopwatch.acquiring()
                    registry.set(local, .acquiring)
                    switch queue.work {
                    case .job:
                        let params = try Self.params(job.params)
                        let statements = sql.map { SQLStatement(sql: $0, params: params) }
                        let completion = api.completion(job: job.id, attempt: job.attempt, epoch: epoch)
                        _ = try await managed.executeCompleting(statements, completion: completion, stop: signal, leased: leased)
                        return nil
                    case .pool:
                        let input = try Self.input(job.input)
                        let output = try await managed.run(
                            input: input, job: local, durable: (job.id, job.attempt), stop: signal, leased: leased)
                        return JSON.encode(output)
                    }
                }
            }
            ending = .completed(result: result)
        } catch {
            outcome = JobOutcome(error)
            ending = classify(error, statements: sql.count, queue: queue)
        }
        let timing = stopwatch.timing
        managed.collectors.record(outcome, timing)
        context.count(outcome)
        return (poolName, ending, timing)
    }

    private func classify(_ error: any Error, statements: Int, queue: QueueSettings) -> Ending {
        switch error {
        case let batch as BatchFailure where batch.index == statements && batch.detail?["sqlstate"] == .string("P0001"):
            return .superseded
        case let stopped as JobStopped:
            switch stopped.reason {
            case .shutdown: return .handedBack
            case .cancelled(let by): return .stopped(by)
            case .disconnected: return .handedBack
            case .timeout: return .failed("exceeded the queue's timeout (\(queue.timeout.limitDescription))")
            }
        case is TimeoutError:
            return .failed("exceeded the queue's timeout (\(queue.timeout.limitDescription)); it was stopped and rolled back")
        case let pool as PoolError where pool.code == .shuttingDown:
            return .handedBack
        case is CancellationError:
            return .handedBack
        case let batch as BatchFailure:
            let index = statements > 1 ? batch.index.map { "statement \($0): " } ?? "" : ""
            return .failed(index + batch.message)
        case let pool as PoolError:
            return .failed(pool.message)
        case let broken as ResourceBroken:
            return .failed("the connection failed: \(broken.reason)")
        case let worker as WorkerAnswerError:
            return .failed("the worker answered an error: \(worker.message)")
        case let worker as WorkerFailed:
            return .failed(worker.message)
        case let bad as BadDurableJob:
            return .failed(bad.message)
        default:
            return .failed("\(error)")
        }
    }

    struct BadDurableJob: Error {
        var message: String
    }

    /// A SQL job's params, as stored at enqueue.
    static func params(_ text: String?) throws -> [SQLValue] {
        guard let text else { return [] }
        let value: JSONValue
        do {
            value = try JSON.parse(Array(text.utf8))
        } catch {
            throw BadDurableJob(message: "its params are not JSON: \(error)")
        }
        switch RequestDecoder.params(value) {
        case .success(let values): return values
        case .failure(let error): throw BadDurableJob(message: error.message)
        }
    }

    /// An exec job's input, as stored at enqueue (null when it had none).
    static func input(_ text: String?) throws -> JSONValue {
        guard let text else { return .null }
        do {
            return try JSON.parse(Array(text.utf8))
        } catch {
            throw BadDurableJob(message: "its input is not JSON: \(error)")
        }
    }
}
