import ControlProtocol
import DaemonRuntime
import Logging
import PoolConfig
import PoolCore
import PoolKit
import Synchronization

/// The daemon's answer to every request: authorizes it (`[access]`), then dispatches it by
/// op. Ops that never wait are answered inline (`handle`); jobs are first admitted to their
/// pool (`admit`), then run (`perform`, see `JobRunner`).
package struct JobRouter: Sendable {
    package let context: DaemonContext

    package init(context: DaemonContext) {
        self.context = context
    }

    var pools: PoolSet { context.pools }
    var jobs: JobRegistry { context.jobs }
    var metrics: DaemonMetrics { context.metrics }
    var lifecycle: Lifecycle { context.lifecycle }
    var logger: Logger { context.logger }
    var config: Config { context.config }

    /// The whole reply line for one request.
    package func handle(_ request: ControlRequest, peer: Peer, owner: ConnectionJobs?) async -> [UInt8] {
        if let denial = deny(request, peer: peer) { return denial }
        return await perform(request, peer: peer, owner: owner, received: .now)
    }

    /// The `unauthorized` reply if the peer's role may not make this request (logged), or nil.
    private func deny(_ request: ControlRequest, peer: Peer) -> [UInt8]? {
        let role = context.authorizer.role(of: peer)
        guard let denial = authorize(request.command, role: role, peer: peer) else { return nil }
        logDenial(request.command.op, role: role, peer: peer)
        return Reply.error(id: request.id, code: .unauthorized, message: denial)
    }

    /// The reply to a line that did not decode. Authorization still comes first: if the line
    /// named an op the peer's role may not use, the answer is `unauthorized`, whatever else is
    /// wrong with it — a peer learns nothing about an op it may not call.
    package func refuse(_ error: RequestError, peer: Peer) -> [UInt8] {
        if let op = error.op {
            let role = context.authorizer.role(of: peer)
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
    package func perform(
        _ request: ControlRequest, peer: Peer, owner: ConnectionJobs?, received: ContinuousClock.Instant, admitted: ManagedPool? = nil
    ) async -> [UInt8] {
        let id = request.id
        switch request.command {
        case .ping:
            return Reply.pong(id: id)
        case .status:
            return Reply.ok(id: id, context.statusFields())
        case .pools:
            return Reply.ok(id: id, [("pools", .array(pools.all.map(context.poolJSON)))])
        case .jobs(let pool):
            if let pool, pools.named(pool) == nil { return noSuchPool(id, pool) }
            return Reply.ok(id: id, [("jobs", .array(jobs.list(pool: pool)))])
        case .stats(let pool):
            if let pool, pools.named(pool) == nil { return noSuchPool(id, pool) }
            return Reply.ok(id: id, [("pools", .object(context.statsJSON(pool: pool)))])
        case .metrics:
            return Reply.ok(id: id, [("text", .string(context.metricsText()))])
        case .runSQL(let pool, let statements, let isBatch, let transaction, let timeoutMs):
            guard let managed = admitted ?? pools.named(pool) else { return noSuchPool(id, pool) }
            if managed.kind == .exec {
                return Reply.error(
                    id: id, code: .badRequest, message: "pool \"\(pool)\" is an exec pool: send \"input\", not \"sql\" or \"batch\"")
            }
            if !managed.jobRules.allowAdhoc {
                return Reply.error(
                    id: id, code: .unauthorized,
                    message: "pool \"\(pool)\" does not allow ad-hoc SQL (allow_adhoc = false); run a named job instead")
            }
            return await runJob(
                id: id, pool: managed, statements: statements, isBatch: isBatch, transaction: transaction, adhoc: true,
                timeout: timeoutMs.map { .milliseconds($0) }, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received)
        case .runNamed(let name, let params, let timeoutMs):
            guard let job = config.job(named: name) else {
                let known = config.jobs.map(\.name)
                return Reply.error(
                    id: id, code: .noSuchJob,
                    message: "no job named \"\(name)\""
                        + (known.isEmpty ? "; the config declares none" : "; jobs: \(known.joined(separator: ", "))"))
            }
            guard let managed = admitted ?? pools.named(job.pool) else { return noSuchPool(id, job.pool) }
            let statements = job.sql.map { SQLStatement(sql: $0, params: params) }
            let limit = timeoutMs.map { Duration.milliseconds($0) } ?? job.timeout
            return await runJob(
                id: id, pool: managed, statements: statements, isBatch: job.sql.count > 1, transaction: job.transaction, adhoc: false,
                timeout: limit, timeoutMs: timeoutMs, peer: peer, owner: owner, received: received)
        case .runExec(let pool, let input, let timeoutMs):
            guard let managed = admitted ?? pools.named(pool) else { return noSuchPool(id, pool) }
            guard managed.kind == .exec else {
                return Reply.error(
                    id: id, code: .badRequest,
                    message: "pool \"\(pool)\" is a \(managed.kind.rawValue) pool: send \"sql\" or \"batch\", not \"input\"")
            }
            return await runJob(
                id: id, pool: managed, timeout: timeoutMs.map { .milliseconds($0) }, timeoutMs: timeoutMs, peer: peer, owner: owner,
                received: received, isBatch: false
            ) { job, signal, leased in
                try await managed.run(input: input, job: job, stop: signal, leased: leased)
            } reply: { output, job, timing in
                Reply.exec(id: id, job: job, output: output, timing: timing)
            }
        case .enqueue(let durable, let isBatch):
            return await enqueue(
                id: id, jobs: durable, isBatch: isBatch, peer: peer, owner: owner, received: received, admitted: admitted)
        case .jobStatus(let job):
            return await jobStatus(id: id, job: job, peer: peer)
        case .jobCancel(let job):
            return await jobCancel(id: id, job: job, peer: peer)
        case .queues:
            return await queuesReply(id: id)
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
            switch await context.reload() {
            case .applied(let changes):
                return Reply.ok(id: id, [("changes", .array(changes.map { .string($0) }))])
            case .invalid(let error):
                return Reply.error(id: id, code: .badConfig, message: error.description)
            case .refused:
                return Reply.error(id: id, code: .shuttingDown, message: "poold is stopping; the config was not reloaded")
            }
        case .drain(let pool, let stop):
            if stop {
                context.requestStop(by: .request)
                try? await lifecycle.waitUntilStopped()
                let counts = context.totals
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
        let (allowed, suppressed) = context.denialLog.withLock { $0.take(at: .now) }
        guard allowed else { return }
        var metadata: Logger.Metadata = [
            "uid": "\(peer.uid)", "pid": "\(peer.pid)", "op": "\(op.rawValue)", "role": "\(role)", "event": "denied",
        ]
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning(
            suppressed > 0 ? "denied (and \(suppressed) denials before it not logged: more than 2/s)" : "denied", metadata: metadata)
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
    package func pool(for command: Command) -> ManagedPool? {
        switch command {
        case .runSQL(let pool, _, _, _, _): pools.named(pool)
        case .runExec(let pool, _, _): pools.named(pool)
        case .runNamed(let job, _, _): config.job(named: job).flatMap { pools.named($0.pool) }
        // An enqueue is a statement on its queue's store: admitted and run like a job there.
        case .enqueue(let jobs, _):
            jobs.first.flatMap { context.queueRunner?.queue(named: $0.queue) }.flatMap { pools.named($0.host.store) }
        default: nil
        }
    }

    /// Authorizes a job request and admits it to its pool (`ManagedPool.admit`): the pool to
    /// `leave` once it is answered (nil if it names none: `perform` answers that), or the
    /// `unauthorized` or `overloaded` reply. An admitted request goes to `perform`.
    package func admit(_ request: ControlRequest, peer: Peer) -> (pool: ManagedPool?, refusal: [UInt8]?) {
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
        return Reply.error(
            id: id, code: .noSuchPool,
            message: "no pool named \"\(pool)\"" + (known.isEmpty ? "" : "; pools: \(known.joined(separator: ", "))"))
    }

}
