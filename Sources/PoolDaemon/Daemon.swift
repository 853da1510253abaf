#if canImport(Glibc)
import Glibc
#endif
import CSpawn
import ControlProtocol
import Logging
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import Synchronization
import SystemdKit

/// The daemon's state and its answer to every request. The services (control server, pool
/// supervisor, signal watcher) call into it; it owns no tasks itself.
public final class Daemon: Sendable {
    struct ReloadRecord: Sendable {
        var at: String
        var ok: Bool
        var error: String?
    }

    struct Totals: Sendable {
        var finished = 0
        var cancelled = 0
    }

    private struct Mutable: Sendable {
        var config: Config
        var authorizer: Authorizer
        var lastReload: ReloadRecord?
        var stopStarted: ContinuousClock.Instant?
        var totals = Totals()
    }

    public static let version = "0.1.0"

    let logger: Logger
    let pools = PoolSet()
    let jobs = JobRegistry()
    /// The event loop of the control server, the job timer and every PostgreSQL connection.
    let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let metrics = DaemonMetrics()
    /// Where config and password files are read: a thread of its own, so that a file system
    /// that is slow or stuck holds up neither the event loop nor the cooperative pool.
    let files = ThreadExecutor()
    let lifecycle = Lifecycle()
    let clock = ContinuousClock()
    let startedAt = ContinuousClock.now
    /// Denials are logged at most 20 at once and 2 a second after that: a client looping on
    /// a forbidden op must not flood the journal.
    private let denialLog = Mutex(LogBudget(burst: 20, perSecond: 2))
    /// Started with the first exec pool (see `WorkerReaper`); nil until then, or if it failed.
    private let reaper = Mutex<(started: Bool, reaper: WorkerReaper?)>((false, nil))
    private let mutable: Mutex<Mutable>

    public init(config: Config, logger: Logger) throws(PoolError) {
        // A worker that exits makes writes to its stdin fail with EPIPE instead of killing poold.
        signal(SIGPIPE, SIG_IGN)
        // Big results and answers (up to 16 MiB) come from their own mappings and go back to
        // the system when freed. glibc's default raises this threshold after each such free,
        // after which they are carved from per-thread arenas (one per SQLite connection) and
        // stay resident there: 40 MB more after a few rounds of 4 MB answers, never returned.
        _ = cspawn_set_mmap_threshold(1 << 20)
        ControlServer.raiseFileLimit(config: config, logger: logger)
        self.logger = logger
        let authorizer = Authorizer(config: config)
        self.mutable = Mutex(Mutable(config: config, authorizer: authorizer))
        if !authorizer.unknown.isEmpty {
            logger.warning("[access] names users or groups this machine does not have; they match nobody", metadata: ["entries": "\(authorizer.unknown.joined(separator: ", "))"])
        }
        for settings in config.pools {
            pools.add(try ManagedPool(settings: settings, loops: loops, metrics: metrics, reaper: workerReaper, orphans: orphans, files: files, logger: logger))
        }
    }

    /// The keeper of exec workers' groups, started on first use. Without it (it could not be
    /// started: logged) workers still die with poold; what they started may not.
    func workerReaper() -> WorkerReaper? {
        let (reaper, failure) = self.reaper.withLock { slot -> (WorkerReaper?, String?) in
            if slot.started { return (slot.reaper, nil) }
            slot.started = true
            switch WorkerReaper.start() {
            case .success(let reaper):
                slot.reaper = reaper
                orphans.spawned(reaper.pid)
                return (reaper, nil)
            case .failure(let error):
                return (nil, error.description)
            }
        }
        if let failure {
            logger.error("processes exec workers start may outlive poold if it is killed", metadata: ["error": "\(failure)"])
        }
        return reaper
    }

    /// Ends the reaper once every pool is closed.
    func stopWorkerReaper() {
        reaper.withLock { $0.reaper }?.stop()
    }

    /// What exec workers let go and poold adopted (see `Orphans`).
    let orphans = Orphans()

    /// Reaps the orphans that ended and has the reaper watch the others' groups.
    func tendOrphans() {
        orphans.tend(reaper: reaper.withLock { $0.reaper })
    }

    var config: Config { mutable.withLock { $0.config } }
    var state: DaemonLifecycle.State { lifecycle.state }

    /// Waits (at most `limit`) until every pool has made its first attempt to open: ready
    /// means usable, but a backend that is down must not hold readiness back — such a pool
    /// is reported degraded instead.
    func waitForFirstAttempts(limit: Duration = .seconds(2)) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let pending = pools.all.contains { pool in
                let s = pool.pool.snapshot
                return s.min > 0 && s.open - s.connecting == 0 && s.lastError == nil
            }
            if !pending { return }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// The control socket is bound and every pool has started: tell systemd (READY=1).
    func markReady() {
        guard lifecycle.handle({ $0.started() }) == .notifyReady else { return }
        Systemd.notify("READY=1", "STATUS=\(statusLine())")
        logger.notice("ready", metadata: ["event": "ready", "pools": "\(pools.all.count)"])
    }

    /// One line for systemd's STATUS=: `ready · 1 pools · 0/4 busy · 0 waiting · 12 ok · 0 failed`,
    /// or what is wrong (`degraded: pool "pg": …`), or what stopping still waits for.
    func statusLine() -> String {
        let state = self.state
        let snapshots = pools.all.map { ($0, $0.pool.snapshot) }
        if state == .stopping || state == .stopped {
            let open = snapshots.reduce(0) { $0 + $1.1.open }
            return "stopping: \(jobs.count) jobs running, \(open) connections open"
        }
        if let degraded = snapshots.first(where: { $0.1.health == .degraded }) {
            return "degraded: pool \"\(degraded.0.name)\" cannot connect: \(degraded.1.lastError ?? "unknown error")"
        }
        var ok: UInt64 = 0
        var failed: UInt64 = 0
        for (pool, _) in snapshots {
            let counts = pool.statistics.snapshot
            ok += counts.count(.succeeded)
            failed += counts.count(.failed) + counts.count(.timedOut) + counts.count(.cancelled) + counts.count(.overloaded)
        }
        let busy = snapshots.reduce(0) { $0 + $1.1.leased }
        let capacity = snapshots.reduce(0) { $0 + $1.1.max }
        let waiting = snapshots.reduce(0) { $0 + $1.1.waiting }
        var line = "\(state.rawValue) · \(snapshots.count) pools · \(busy)/\(capacity) busy · \(waiting) waiting · \(ok) ok · \(failed) failed"
        if let last = mutable.withLock({ $0.lastReload }), !last.ok {
            line += " · last reload failed"
        }
        return line
    }

    // MARK: Requests

    /// The whole reply line for one request.
    func handle(_ request: ControlRequest, peer: Peer, owner: ConnectionJobs?) async -> [UInt8] {
        if let denial = deny(request, peer: peer) { return denial }
        return await perform(request, peer: peer, owner: owner, received: .now)
    }

    /// The `unauthorized` reply if the peer's role may not make this request (logged), or nil.
    private func deny(_ request: ControlRequest, peer: Peer) -> [UInt8]? {
        let role = mutable.withLock { $0.authorizer }.role(of: peer)
        guard let denial = authorize(request.command, role: role, peer: peer) else { return nil }
        logDenial(request.command.op, role: role, peer: peer)
        return Reply.error(id: request.id, code: .unauthorized, message: denial)
    }

    /// The reply to a line that did not decode. Authorization still comes first: if the line
    /// named an op the peer's role may not use, the answer is `unauthorized`, whatever else is
    /// wrong with it — a peer learns nothing about an op it may not call.
    func refuse(_ error: RequestError, peer: Peer) -> [UInt8] {
        if let op = error.op {
            let role = mutable.withLock { $0.authorizer }.role(of: peer)
            if let denial = authorize(op, role: role, peer: peer) {
                logDenial(op, role: role, peer: peer)
                return Reply.error(id: error.id, code: .unauthorized, message: denial)
            }
        }
        return Reply.error(error)
    }

    /// The reply to a request already authorized (`handle`, or `admit` for jobs). `received`:
    /// when the request was read; a job's timing and deadline count from then.
    /// `admitted`: the pool `admit` found for a job, so that it is not looked up again.
    func perform(_ request: ControlRequest, peer: Peer, owner: ConnectionJobs?, received: ContinuousClock.Instant, admitted: ManagedPool? = nil) async -> [UInt8] {
        let id = request.id
        switch request.command {
        case .ping:
            return Reply.pong(id: id)
        case .status:
            return Reply.ok(id: id, statusFields())
        case .pools:
            return Reply.ok(id: id, [("pools", .array(pools.all.map(poolJSON)))])
        case .jobs(let pool):
            if let pool, pools.named(pool) == nil { return noSuchPool(id, pool) }
            return Reply.ok(id: id, [("jobs", .array(jobs.list(pool: pool)))])
        case .stats(let pool):
            if let pool, pools.named(pool) == nil { return noSuchPool(id, pool) }
            return Reply.ok(id: id, [("pools", .object(statsJSON(pool: pool)))])
        case .metrics:
            return Reply.ok(id: id, [("text", .string(metrics.exposition(pools: pools.all)))])
        case .runSQL(let pool, let statements, let isBatch, let transaction, let timeoutMs):
            guard let managed = admitted ?? pools.named(pool) else { return noSuchPool(id, pool) }
            if managed.kind == .exec {
                return Reply.error(id: id, code: .badRequest, message: "pool \"\(pool)\" is an exec pool: send \"input\", not \"sql\" or \"batch\"")
            }
            if !managed.jobRules.allowAdhoc {
                return Reply.error(id: id, code: .unauthorized, message: "pool \"\(pool)\" does not allow ad-hoc SQL (allow_adhoc = false); run a named job instead")
            }
            return await runJob(id: id, pool: managed, statements: statements, isBatch: isBatch, transaction: transaction, adhoc: true, timeout: timeoutMs.map { .milliseconds($0) }, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received)
        case .runNamed(let name, let params, let timeoutMs):
            guard let job = config.job(named: name) else {
                let known = config.jobs.map(\.name)
                return Reply.error(id: id, code: .noSuchJob, message: "no job named \"\(name)\"" + (known.isEmpty ? "; the config declares none" : "; jobs: \(known.joined(separator: ", "))"))
            }
            guard let managed = admitted ?? pools.named(job.pool) else { return noSuchPool(id, job.pool) }
            let statements = job.sql.map { SQLStatement(sql: $0, params: params) }
            let limit = timeoutMs.map { Duration.milliseconds($0) } ?? job.timeout
            return await runJob(id: id, pool: managed, statements: statements, isBatch: job.sql.count > 1, transaction: job.transaction, adhoc: false, timeout: limit, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received)
        case .runExec(let pool, let input, let timeoutMs):
            guard let managed = admitted ?? pools.named(pool) else { return noSuchPool(id, pool) }
            guard managed.kind == .exec else {
                return Reply.error(id: id, code: .badRequest, message: "pool \"\(pool)\" is a \(managed.kind.rawValue) pool: send \"sql\" or \"batch\", not \"input\"")
            }
            return await runJob(id: id, pool: managed, timeout: timeoutMs.map { .milliseconds($0) }, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received, isBatch: false) { job, signal, leased in
                try await managed.run(input: input, job: job, stop: signal, leased: leased)
            } reply: { output, job, timing in
                Reply.exec(id: id, job: job, output: output, timing: timing)
            }
        case .cancel(let job):
            guard jobs.cancel(job, reason: .cancelled(by: "uid \(peer.uid) pid \(peer.pid)")) else {
                return Reply.error(id: id, code: .noSuchJob, message: "no job \(job) is running (it may have finished already)")
            }
            return Reply.ok(id: id, [])
        case .pause(let pool):
            guard let targets = select(pool) else { return noSuchPool(id, pool ?? "") }
            for target in targets { target.pool.pause() }
            return Reply.ok(id: id, [])
        case .resume(let pool):
            guard let targets = select(pool) else { return noSuchPool(id, pool ?? "") }
            for target in targets { target.pool.resume() }
            return Reply.ok(id: id, [])
        case .resize(let pool, let newMin, let newMax):
            guard let managed = pools.named(pool) else { return noSuchPool(id, pool) }
            let limits = managed.pool.limits
            let min = newMin ?? limits.minResources
            let max = newMax ?? limits.maxResources
            do {
                try managed.resize(min: min, max: max)
            } catch {
                return Reply.error(id: id, code: error.code, message: error.message)
            }
            logger.notice("pool resized", metadata: ["pool": "\(pool)", "min": "\(min)", "max": "\(max)"])
            return Reply.ok(id: id, [("min", .int(Int64(min))), ("max", .int(Int64(max)))])
        case .reload:
            switch await reload() {
            case .applied(let changes):
                return Reply.ok(id: id, [("changes", .array(changes.map { .string($0) }))])
            case .invalid(let error):
                return Reply.error(id: id, code: .badConfig, message: error.description)
            case .refused:
                return Reply.error(id: id, code: .shuttingDown, message: "poold is stopping; the config was not reloaded")
            }
        case .drain(let pool, let stop):
            if stop {
                requestStop(by: .request)
                await lifecycle.waitUntilStopped()
                let counts = totals
                return Reply.ok(id: id, [("finished", .int(Int64(counts.finished))), ("cancelled", .int(Int64(counts.cancelled)))])
            }
            guard let targets = select(pool) else { return noSuchPool(id, pool ?? "") }
            // Every named pool refuses new jobs from this moment, not once the one before it
            // is idle; the reply waits for all of them.
            let before = targets.map { $0.statistics.snapshot.counts.values.reduce(0, +) }
            for target in targets { target.pool.beginDrain() }
            var finished: Int64 = 0
            for (target, before) in zip(targets, before) {
                await target.pool.drain()
                finished += Int64(target.statistics.snapshot.counts.values.reduce(0, +) - before)
            }
            return Reply.ok(id: id, [("finished", .int(finished))])
        }
    }

    /// One warning per denial, with the peer's uid and pid, within `denialLog`'s budget; the
    /// next one let through says how many were suppressed.
    private func logDenial(_ op: Op, role: Role, peer: Peer) {
        let (allowed, suppressed) = denialLog.withLock { $0.take(at: .now) }
        guard allowed else { return }
        var metadata: Logger.Metadata = [
            "uid": "\(peer.uid)", "pid": "\(peer.pid)", "op": "\(op.rawValue)", "role": "\(role)", "event": "denied",
        ]
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning(suppressed > 0 ? "denied (and \(suppressed) denials before it not logged: more than 2/s)" : "denied", metadata: metadata)
    }

    /// Why `role` may not run `command`, or nil if it may. Checked before anything else, so
    /// an observer's `cancel` of an unknown job is still `unauthorized`.
    private func authorize(_ command: Command, role: Role, peer: Peer) -> String? {
        if let denial = authorize(command.op, role: role, peer: peer) { return denial }
        if role == .operator { return nil }
        switch command {
        case .cancel(let job):
            if let submitter = jobs.peer(of: job), submitter.uid != peer.uid {
                return "cancelling another user's job needs the operator role; \(Self.who(peer, role))"
            }
        default:
            break
        }
        return nil
    }

    /// Why `role` may not use `op` at all, or nil.
    private func authorize(_ op: Op, role: Role, peer: Peer) -> String? {
        let needed = Authorizer.required(forOp: op)
        guard role < needed else { return nil }
        return "\"\(op.rawValue)\" needs the \(needed) role; \(Self.who(peer, role))"
    }

    private static func who(_ peer: Peer, _ role: Role) -> String {
        "uid \(peer.uid) (pid \(peer.pid)) is \(role == .none ? "not in [access]" : "an \(role)")"
    }

    /// The pool a job request runs on, if it names one that exists.
    func pool(for command: Command) -> ManagedPool? {
        switch command {
        case .runSQL(let pool, _, _, _, _): pools.named(pool)
        case .runExec(let pool, _, _): pools.named(pool)
        case .runNamed(let job, _, _): config.job(named: job).flatMap { pools.named($0.pool) }
        default: nil
        }
    }

    /// Authorizes a job request and admits it to its pool (`ManagedPool.admit`): the pool to
    /// `leave` once it is answered (nil if it names none: `perform` answers that), or the
    /// `unauthorized` or `overloaded` reply. An admitted request goes to `perform`.
    func admit(_ request: ControlRequest, peer: Peer) -> (pool: ManagedPool?, refusal: [UInt8]?) {
        if let denial = deny(request, peer: peer) { return (nil, denial) }
        guard let pool = pool(for: request.command) else { return (nil, nil) }
        guard let refusal = pool.admit() else { return (pool, nil) }
        metrics.record(pool: pool.name, outcome: .overloaded, timing: JobTiming())
        return (nil, Reply.error(id: request.id, code: refusal.code, message: refusal.message))
    }

    private func select(_ pool: String?) -> [ManagedPool]? {
        guard let pool else { return pools.all }
        return pools.named(pool).map { [$0] }
    }

    private func noSuchPool(_ id: RequestID?, _ pool: String) -> [UInt8] {
        let known = pools.all.map(\.name)
        return Reply.error(id: id, code: .noSuchPool, message: "no pool named \"\(pool)\"" + (known.isEmpty ? "" : "; pools: \(known.joined(separator: ", "))"))
    }

    // MARK: Jobs

    private func runJob(
        id: RequestID?, pool: ManagedPool, statements: [SQLStatement], isBatch: Bool, transaction: Bool, adhoc: Bool,
        timeout: Duration? = nil, timeoutMs: Int64?, peer: Peer, owner: ConnectionJobs?, received: ContinuousClock.Instant
    ) async -> [UInt8] {
        await runJob(id: id, pool: pool, timeout: timeout, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received, isBatch: isBatch) { _, signal, leased in
            try await pool.execute(statements, transaction: transaction, adhoc: adhoc, stop: signal, leased: leased)
        } reply: { results, job, timing in
            Reply.sql(id: id, job: job, results: results, isBatch: isBatch, timing: timing)
        }
    }

    /// A job of any kind: checks its timeout, registers it (deadline, cancel, disconnect),
    /// measures it, runs `body` on a resource of `pool`, and answers with `reply` or the error.
    private func runJob<R>(
        id: RequestID?, pool: ManagedPool, timeout: Duration?, timeoutMs: Int64?, peer: Peer, owner: ConnectionJobs?,
        received: ContinuousClock.Instant, isBatch: Bool,
        body: (Int64, CancelSignal, @escaping @Sendable () -> Void) async throws -> R,
        reply: (R, Int64, JobTiming) -> [UInt8]
    ) async -> [UInt8] {
        let settings = pool.jobRules
        if let timeoutMs, Duration.milliseconds(timeoutMs) > settings.maxJobTimeout {
            return Reply.error(id: id, code: .badRequest, message: "\"timeout_ms\" must be at most \(settings.maxJobTimeout.milliseconds) (pool \"\(pool.name)\" max_job_timeout = \(settings.maxJobTimeout.limitDescription)); got \(timeoutMs)")
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
        let stopwatch = JobStopwatch(clock: clock, startedAt: received)
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
        mutable.withLock { state in
            if outcome == .cancelled { state.totals.cancelled += 1 } else { state.totals.finished += 1 }
        }
        logger.info("job finished", metadata: [
            "job.id": "\(job)", "pool": "\(pool.name)", "outcome": "\(outcome.rawValue)",
            "wait_us": "\((timing.queue + timing.acquire).microseconds)", "exec_us": "\(timing.exec.microseconds)",
        ])
        return answer
    }

    private func errorReply(id: RequestID?, job: Int64, error: any Error, limit: Duration, timing: JobTiming, isBatch: Bool) -> [UInt8] {
        switch error {
        case is TimeoutError:
            return Reply.error(id: id, code: .timeout, message: "job \(job) exceeded \(limit.limitDescription) (acquire \(timing.acquire.elapsedDescription), running \(timing.exec.elapsedDescription)); it was stopped and rolled back", job: job)
        case let stopped as JobStopped:
            let why = switch stopped.reason {
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

    // MARK: Observing

    private func statusFields() -> [(String, JSONValue)] {
        let (config, lastReload) = mutable.withLock { ($0.config, $0.lastReload) }
        let state = self.state
        let snapshots = pools.all.map { ($0, $0.pool.snapshot) }
        var succeeded: UInt64 = 0
        var failed: UInt64 = 0
        for (pool, _) in snapshots {
            let counts = pool.statistics.snapshot
            succeeded += counts.count(.succeeded)
            failed += counts.count(.failed) + counts.count(.timedOut) + counts.count(.cancelled) + counts.count(.overloaded)
        }
        let reload: JSONValue = lastReload.map {
            .object(["at": .string($0.at), "ok": .bool($0.ok), "error": $0.error.map { .string($0) } ?? .null])
        } ?? .null
        return [
            ("state", .string(state.rawValue)),
            ("version", .string(Self.version)),
            ("uptime_s", .int(startedAt.duration(to: .now).components.seconds)),
            ("config", .string(config.path)),
            ("pools", .int(Int64(snapshots.count))),
            ("busy", .int(Int64(snapshots.reduce(0) { $0 + $1.1.leased }))),
            ("waiting", .int(Int64(snapshots.reduce(0) { $0 + $1.1.waiting }))),
            ("succeeded", .int(Int64(clamping: succeeded))),
            ("failed", .int(Int64(clamping: failed))),
            ("last_reload", reload),
        ]
    }

    private func poolJSON(_ pool: ManagedPool) -> JSONValue {
        let s = pool.pool.snapshot
        return .object([
            "name": .string(pool.name),
            "kind": .string(pool.kind.rawValue),
            "state": .string(s.state),
            "min": .int(Int64(s.min)),
            "max": .int(Int64(s.max)),
            "open": .int(Int64(s.open)),
            "idle": .int(Int64(s.idle)),
            "leased": .int(Int64(s.leased)),
            "waiting": .int(Int64(s.waiting)),
            "last_error": s.lastError.map { .string($0) } ?? .null,
        ])
    }

    private func statsJSON(pool name: String?) -> JSONObject {
        var out = JSONObject()
        for pool in pools.all where name == nil || pool.name == name {
            let s = pool.statistics.snapshot
            func percentiles(_ p: PoolStatistics.Percentiles) -> JSONValue {
                .object(["p50": .int(Int64(p.p50)), "p90": .int(Int64(p.p90)), "p99": .int(Int64(p.p99)), "max": .int(Int64(p.max))])
            }
            out[pool.name] = .object([
                "succeeded": .int(Int64(s.count(.succeeded))),
                "failed": .int(Int64(s.count(.failed))),
                "timed_out": .int(Int64(s.count(.timedOut))),
                "cancelled": .int(Int64(s.count(.cancelled))),
                "overloaded": .int(Int64(s.count(.overloaded))),
                "queue_us": percentiles(s.queueMicros),
                "acquire_us": percentiles(s.acquireMicros),
                "exec_us": percentiles(s.execMicros),
            ])
        }
        return out
    }

    // MARK: Reload

    enum ReloadOutcome: Sendable {
        case applied([String])
        case invalid(ConfigError)
        /// poold is stopping: a reload could start pools that stopping would never close.
        case refused
    }

    /// Re-reads the config file; applies it if valid, keeps the old one otherwise.
    func reload() async -> ReloadOutcome {
        let path = config.path
        switch lifecycle.handle({ $0.reloadBegan() }) {
        case .refuseReload:
            logger.warning("reload refused: poold is stopping", metadata: ["event": "reload_failed"])
            return .refused
        case .notifyReloading:
            Systemd.reloading()
        default:
            break
        }
        logger.notice("reloading", metadata: ["config": "\(path)", "event": "reloading"])
        let outcome: ReloadOutcome
        do {
            let new = try await withTaskExecutorPreference(files) { () throws(ConfigError) -> Config in try ConfigLoader.load(path: path) }
            outcome = .applied(apply(new))
        } catch {
            outcome = .invalid(error)
        }
        let at = wallClockRFC3339()
        mutable.withLock { state in
            switch outcome {
            case .applied, .refused: state.lastReload = ReloadRecord(at: at, ok: true, error: nil)
            case .invalid(let error): state.lastReload = ReloadRecord(at: at, ok: false, error: error.description)
            }
        }
        if lifecycle.handle({ $0.reloadEnded() }) == .notifyReady {
            Systemd.notify("READY=1", "STATUS=\(statusLine())")
        }
        switch outcome {
        case .applied(let changes):
            logger.notice("reloaded", metadata: ["changes": "\(changes.joined(separator: "; "))", "event": "reloaded"])
        case .invalid(let error):
            logger.error("reload failed; keeping the old config", metadata: ["error": "\(error.description)", "event": "reload_failed"])
        case .refused:
            break
        }
        return outcome
    }

    /// Applies a validated config (`ConfigDiff`): new pools start, removed ones drain and
    /// close, changed limits apply live; in-flight jobs are not disturbed.
    private func apply(_ new: Config) -> [String] {
        var running = config
        running.pools = pools.all.map(\.settings)
        let diff = ConfigDiff(running: running, new: new)
        var changes: [String] = []
        for change in diff.pools {
            switch change {
            case .add(let settings):
                changes.append(start(settings).map { "pool \(settings.name) not added: \($0.message)" } ?? ConfigDiff.describe(change))
            case .update(let settings, _):
                do {
                    try pools.named(settings.name)?.apply(settings)
                    changes.append(ConfigDiff.describe(change))
                } catch {
                    changes.append("pool \(settings.name) not updated: \(error.message)")
                }
            case .replace(let settings):
                pools.retire(settings.name)
                changes.append(start(settings).map { "pool \(settings.name) removed: \($0.message)" } ?? ConfigDiff.describe(change))
            case .remove(let name):
                pools.retire(name)
                changes.append(ConfigDiff.describe(change))
            }
        }
        changes += diff.otherChanges
        let authorizer = Authorizer(config: diff.applied)
        if !authorizer.unknown.isEmpty {
            logger.warning("[access] names users or groups this machine does not have; they match nobody", metadata: ["entries": "\(authorizer.unknown.joined(separator: ", "))"])
        }
        mutable.withLock {
            $0.config = diff.applied
            $0.authorizer = authorizer
        }
        return changes
    }

    /// Starts a pool; nil, or why it could not start.
    private func start(_ settings: PoolSettings) -> PoolError? {
        do {
            pools.add(try ManagedPool(settings: settings, loops: loops, metrics: metrics, reaper: workerReaper, orphans: orphans, files: files, logger: logger))
            return nil
        } catch {
            return error
        }
    }

    // MARK: Stopping

    /// Starts stopping (SIGTERM, SIGINT, `drain --stop`): refuse new jobs, fail those waiting
    /// for a resource with `shutting_down`, close idle resources. Running jobs get the grace;
    /// a second stop signal skips the rest of it.
    func requestStop(by cause: DaemonLifecycle.StopCause) {
        switch lifecycle.handle({ $0.stopRequested(by: cause) }) {
        case .beginStopping:
            mutable.withLock { $0.stopStarted = .now }
            Systemd.notify("STOPPING=1", "STATUS=\(statusLine())")
            logger.notice("stopping", metadata: ["event": "stopping", "jobs": "\(jobs.count)"])
            for pool in (pools.retired + pools.all).reversed() { pool.pool.beginClose() }
        case .skipGrace:
            logger.notice("second stop signal: skipping the rest of shutdown_grace")
        default:
            break
        }
    }

    var totals: Totals { mutable.withLock { $0.totals } }
    var stopStarted: ContinuousClock.Instant? { mutable.withLock { $0.stopStarted } }
}
