import ControlProtocol
import DaemonRuntime
import DurableQueues
import Logging
import PoolConfig
import PoolCore
import PostgresPools
import PostgresWire

/// The durable queues' ops (docs/PROTOCOL.md, "enqueue", "job_status", "job_cancel", "queues").
extension JobRouter {
    private func noQueues(_ id: RequestID?) -> [UInt8] {
        Reply.error(id: id, code: .badRequest, message: "this poold has no durable queues: the config declares no [[queue]]")
    }

    private func unknownQueue(_ id: RequestID?, _ name: String, runner: QueueRunner, at index: Int?) -> [UInt8] {
        let known = runner.queueNames
        let hint = Suggestion.closest(to: name, among: known).map { " (did you mean \"\($0)\"?)" } ?? ""
        let place = index.map { "jobs[\($0)]: " } ?? ""
        return Reply.error(
            id: id, code: .badRequest, message: "\(place)no queue named \"\(name)\"\(hint); queues: \(known.joined(separator: ", "))")
    }

    // MARK: enqueue

    func enqueue(
        id: RequestID?, jobs: [DurableJobRequest], isBatch: Bool, peer: Peer, owner: ConnectionJobs?, received: ContinuousClock.Instant,
        admitted: ManagedPool?
    ) async -> [UInt8] {
        guard let runner = context.queueRunner else { return noQueues(id) }
        var host: QueueHost?
        var rows: [QueueStore.NewJob] = []
        rows.reserveCapacity(jobs.count)
        for (index, job) in jobs.enumerated() {
            let at = isBatch ? index : nil
            guard let (queueHost, settings) = runner.queue(named: job.queue) else {
                return unknownQueue(id, job.queue, runner: runner, at: at)
            }
            if let host, host !== queueHost {
                return Reply.error(
                    id: id, code: .badRequest,
                    message: "jobs[\(index)]: queue \"\(job.queue)\" keeps its jobs in another store than jobs[0]'s; "
                        + "one enqueue is one transaction in one store: send a batch per store")
            }
            host = queueHost
            if let problem = check(job, settings: settings, at: at) { return Reply.error(id: id, code: .badRequest, message: problem) }
            var row = QueueStore.NewJob(
                queue: job.queue, params: job.params.map(JSON.encode), input: job.input.map(JSON.encode), runAt: job.runAt,
                uniqueKey: job.uniqueKey)
            row.priority = job.priority
            row.maxAttempts = job.maxAttempts ?? settings.maxAttempts
            row.submitter = Int(peer.uid)
            rows.append(row)
        }
        guard let host, let managed = admitted ?? pools.named(host.store) else {
            return Reply.error(id: id, code: .backend, message: "the queues' store pool is not running; see poold's log")
        }
        if let problem = host.problem { return Reply.error(id: id, code: .backend, message: problem) }
        guard host.isMigrated else {
            return Reply.error(
                id: id, code: .backend,
                message: "the queue store (pool \"\(host.store)\") has not been reached since poold started, so its schema is not "
                    + "known to be there yet; retry, and see poold's log")
        }
        // Only jobs that may run now wake fetchers; scheduled ones are found by the poll.
        let queues = Set(rows.filter { $0.runAt == nil }.map(\.queue))
        let notify = host.claimNotifications(queues)
        let api = host.api
        return await runJob(
            id: id, pool: managed, timeout: nil, timeoutMs: nil, peer: peer, owner: owner, received: received, isBatch: false
        ) { _, signal, leased in
            let ids = try await managed.withPostgresSession(stop: signal) { session in
                leased()
                do {
                    return try await api.enqueue(rows, notify: notify, on: session.client)
                } catch let failure as PipelineStateMachine.Failure {
                    throw PostgresSession.failure(failure.failure, index: isBatch ? failure.index : nil)
                } catch {
                    throw PostgresSession.failure(error, index: nil)
                }
            }
            host.enqueued(queues)
            return ids
        } reply: { (ids: [Int64], _, _) in
            isBatch
                ? Reply.ok(id: id, [("job_ids", .array(ids.map { JSONValue.int($0) }))])
                : Reply.ok(id: id, [("job_id", .int(ids.first ?? 0))])
        }
    }

    /// What is wrong with `job` for its queue: `params` for a SQL job, as many as its
    /// statements' placeholders; `input` for an exec pool.
    private func check(_ job: DurableJobRequest, settings: QueueSettings, at index: Int?) -> String? {
        let place = index.map { "jobs[\($0)]: " } ?? ""
        switch settings.work {
        case .job(let name):
            if job.input != nil {
                return "\(place)queue \"\(settings.name)\" runs SQL job \"\(name)\": give \"params\", not \"input\""
            }
            guard let sql = config.job(named: name)?.sql else { return nil }
            for statement in sql {
                let wanted = Placeholders.highest(in: statement)
                if wanted != job.paramValues.count {
                    return "\(place)job \"\(name)\" of queue \"\(settings.name)\" takes \(wanted) parameter\(wanted == 1 ? "" : "s") "
                        + "($1…$\(wanted)); got \(job.paramValues.count) in \"params\""
                }
            }
        case .pool(let pool):
            if job.params != nil {
                return "\(place)queue \"\(settings.name)\" sends its jobs to exec pool \"\(pool)\": give \"input\", not \"params\""
            }
        }
        return nil
    }

    // MARK: job_status and job_cancel

    /// Operators see every job; others only the jobs they enqueued.
    private func submitterFilter(_ peer: Peer) -> Int? {
        context.authorizer.role(of: peer) == .operator ? nil : Int(peer.uid)
    }

    private func noSuchDurableJob(_ id: RequestID?, _ job: Int64, peer: Peer) -> [UInt8] {
        let yours = submitterFilter(peer) == nil ? "" : " of yours (only operators see other users' jobs)"
        return Reply.error(
            id: id, code: .noSuchJob, message: "no durable job \(job)\(yours); finished jobs are deleted after their queue's retention")
    }

    private func storeDown(_ id: RequestID?, _ host: QueueHost) -> [UInt8] {
        Reply.error(
            id: id, code: .backend,
            message: host.problem ?? "the queue store (pool \"\(host.store)\") is unreachable right now; retry, and see poold's log")
    }

    func jobStatus(id: RequestID?, job: Int64, peer: Peer) async -> [UInt8] {
        guard let runner = context.queueRunner else { return noQueues(id) }
        for host in runner.hosts {
            guard let client = host.client else { return storeDown(id, host) }
            let row: [String?]?
            do {
                row = try await host.api.status(job: job, submitter: submitterFilter(peer), on: client)
            } catch {
                return storeDown(id, host)
            }
            guard let row, row.count == 12 else { continue }
            var fields: [(String, JSONValue)] = [
                ("job_id", .int(job)), ("queue", .string(row[0] ?? "")), ("state", .string(row[1] ?? "")),
                ("attempt", .int(Int64(row[2] ?? "") ?? 0)), ("max_attempts", .int(Int64(row[3] ?? "") ?? 0)),
                ("run_at", .string(row[4] ?? "")),
                ("errors", (row[5] ?? nil).flatMap { try? JSON.parse($0) } ?? .array([])),
                ("priority", .int(Int64(row[8] ?? "") ?? 0)), ("inserted_at", .string(row[10] ?? "")),
            ]
            if let result = (row[6] ?? nil).flatMap({ try? JSON.parse($0) }) { fields.append(("result", result)) }
            if let key = row[9] ?? nil { fields.append(("unique_key", .string(key))) }
            if let finished = row[11] ?? nil { fields.append(("finished_at", .string(finished))) }
            return Reply.ok(id: id, fields)
        }
        return noSuchDurableJob(id, job, peer: peer)
    }

    func jobCancel(id: RequestID?, job: Int64, peer: Peer) async -> [UInt8] {
        guard let runner = context.queueRunner else { return noQueues(id) }
        for host in runner.hosts {
            guard let client = host.client else { return storeDown(id, host) }
            let found: (state: String, cancelled: Bool)?
            do {
                found = try await host.api.cancel(job: job, submitter: submitterFilter(peer), on: client)
            } catch {
                return storeDown(id, host)
            }
            guard let found else { continue }
            logger.notice(
                found.cancelled ? "durable job cancelled" : "durable job not cancelled: it had finished",
                metadata: ["durable_job_id": "\(job)", "was": "\(found.state)", "uid": "\(peer.uid)", "pid": "\(peer.pid)"])
            return Reply.ok(
                id: id,
                [
                    ("job_id", .int(job)), ("cancelled", .bool(found.cancelled)),
                    ("state", .string(found.cancelled ? "cancelled" : found.state)), ("was", .string(found.state)),
                ])
        }
        return noSuchDurableJob(id, job, peer: peer)
    }

    // MARK: queues

    func queuesReply(id: RequestID?) async -> [UInt8] {
        guard let runner = context.queueRunner else { return Reply.ok(id: id, [("queues", .array([]))]) }
        let window = 10
        var entries: [JSONValue] = []
        for host in runner.hosts {
            let stats = await host.stats(window: window)
            let counters = host.counters
            for queue in host.queues {
                var entry: JSONObject = [
                    "name": .string(queue.name), "store": .string(host.store), "schema": .string(host.schema),
                    "concurrency": .int(Int64(queue.concurrency)), "running_here": .int(Int64(host.runningCount(queue.name))),
                    "store_reachable": .bool(stats != nil && host.isUp),
                ]
                switch queue.work {
                case .job(let job): entry["job"] = .string(job)
                case .pool(let pool): entry["pool"] = .string(pool)
                }
                if let figures = stats?[queue.name] {
                    var counts = JSONObject()
                    for state in DaemonMetrics.QueueCollectors.stateNames { counts[state] = .int(Int64(figures.counts[state] ?? 0)) }
                    entry["counts"] = .object(counts)
                    var finished = JSONObject()
                    for state in ["completed", "discarded", "cancelled"] {
                        finished[state] = .int(Int64(figures.finishedRecently[state] ?? 0))
                    }
                    entry["finished_last_10s"] = .object(finished)
                    entry["oldest_runnable_ms"] = .int(figures.oldestRunnableMs)
                    entry["completed_per_second"] = .double(Double(figures.completedRecently) / Double(window))
                }
                var here = JSONObject()
                for (outcome, count) in (counters[queue.name] ?? [:]).sorted(by: { $0.key < $1.key }) { here[outcome] = .int(Int64(count)) }
                entry["attempts_here"] = .object(here)
                entries.append(.object(entry))
            }
        }
        return Reply.ok(id: id, [("queues", .array(entries))])
    }
}

/// The highest `$n` placeholder of a statement, outside string literals, quoted identifiers,
/// dollar-quoted bodies and comments: how many parameters PostgreSQL will expect.
enum Placeholders {
    static func highest(in sql: String) -> Int {
        let b = Array(sql.utf8)
        var i = 0
        var highest = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        func isIdent(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || isDigit(c) || c >= 128 }
        while i < b.count {
            let c = b[i]
            if c == 39 || c == 34 {  // '…' or "…", doubled quotes inside
                i += 1
                while i < b.count {
                    if b[i] == c {
                        if i + 1 < b.count && b[i + 1] == c {
                            i += 2
                            continue
                        }
                        break
                    }
                    i += 1
                }
                i += 1
            } else if c == 45, i + 1 < b.count, b[i + 1] == 45 {  // -- comment
                while i < b.count && b[i] != 10 { i += 1 }
            } else if c == 47, i + 1 < b.count, b[i + 1] == 42 {  // /* comment */, nested
                var depth = 1
                i += 2
                while i < b.count && depth > 0 {
                    if b[i] == 47, i + 1 < b.count, b[i + 1] == 42 {
                        depth += 1
                        i += 2
                    } else if b[i] == 42, i + 1 < b.count, b[i + 1] == 47 {
                        depth -= 1
                        i += 2
                    } else {
                        i += 1
                    }
                }
            } else if c == 36 {  // $n, or a $tag$ … $tag$ body
                var j = i + 1
                if j < b.count, isDigit(b[j]), i == 0 || !isIdent(b[i - 1]) {
                    var n = 0
                    while j < b.count, isDigit(b[j]) {
                        n = min(n * 10 + Int(b[j] - 48), 100_000)
                        j += 1
                    }
                    highest = max(highest, n)
                    i = j
                    continue
                }
                while j < b.count, isIdent(b[j]), !isDigit(b[j]) || j > i + 1 { j += 1 }
                if j < b.count, b[j] == 36, i == 0 || !isIdent(b[i - 1]) {
                    let tag = Array(b[i...j])
                    var k = j + 1
                    while k + tag.count <= b.count, Array(b[k..<(k + tag.count)]) != tag { k += 1 }
                    i = k + tag.count
                } else {
                    i += 1
                }
            } else {
                i += 1
            }
        }
        return highest
    }
}
