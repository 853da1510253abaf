import ControlProtocol
import DaemonRuntime
import DurableQueues
import Logging
import PoolConfig
import PoolCore
import PoolKit
import PostgresPools
import PostgresWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// This poold as one host of the durable queues kept in one store (a postgres pool's database
/// and a schema; docs/QUEUES.md).
///
/// The host holds a connection of its own, outside the pool, for everything that must not
/// wait behind jobs: its lease (renewed every second), LISTEN, fetching, rescuing other hosts'
/// jobs, exec jobs' completions and failures, and housekeeping. Jobs run on the pools' own
/// resources: a SQL job on a connection of the store's pool, in one transaction with its fenced
/// completion; an exec job on a worker.
package final class QueueHost: Sendable {
    /// The lease's length: another host rescues this one's jobs once it has not renewed for this long.
    static let leaseSeconds = 5
    static let renewEvery: Duration = .seconds(1)
    static let tick: Duration = .milliseconds(50)
    /// An enqueue wakes other hosts at most this often per queue (the rest of the window's
    /// enqueues are announced once at its end).
    static let notifyWindow: Duration = .milliseconds(50)
    static let retentionBatch = 1000

    let store: String
    let schema: String
    let queues: [QueueSettings]
    let api: QueueStore
    let context: DaemonContext
    let backend: PostgresBackend
    let bells: [String: Doorbell]
    let logger: Logger
    private let state = Mutex(HostState())
    /// Durable jobs running on this host.
    let running = AsyncCounter()
    /// Opened when this host has begun to stop.
    private let stopping = Latch()
    /// The maintenance loop waits on this for its tick, and for the end.
    private let maintenance = Doorbell()

    /// A job taken under `epoch`, and how to stop it (`job_cancel`, a lost lease, shutdown).
    struct Running: Sendable {
        var epoch: Int64
        var signal: StopSignal
    }

    struct PendingFailure: Sendable {
        var id: Int64
        var attempt: Int
        var epoch: Int64
        var error: String
    }

    struct HostState: Sendable {
        var client: WireClient?
        var epoch: Int64?
        /// Why the store cannot be used (its schema is newer than this poold), for replies.
        var problem: String?
        var running: [Int64: Running] = [:]
        var runningByQueue: [String: Int] = [:]
        var completions: [QueueStore.Completion] = []
        var failures: [PendingFailure] = []
        /// Queues whose fetchers have something to look at (a NOTIFY, a poll, a local enqueue).
        var woken: Set<String> = []
        var lastNotify: [String: ContinuousClock.Instant] = [:]
        var pendingNotify: Set<String> = []
        var finished = false
        /// The schema has been found current (or made so) since start.
        var migrated = false
        var leader = false
        var counters: [String: [String: Int]] = [:]
        /// Fetched jobs not started yet, by queue (see `prefetch`).
        var ready: [String: [Ready]] = [:]
        /// How long a job of each queue has lately taken here, a moving average.
        var averageSeconds: [String: Double] = [:]
    }

    init(store: String, schema: String, queues: [QueueSettings], backend: PostgresBackend, context: DaemonContext) {
        self.store = store
        self.schema = schema
        self.queues = queues
        self.api = QueueStore(schema: schema)
        self.context = context
        self.backend = backend
        self.bells = Dictionary(uniqueKeysWithValues: queues.map { ($0.name, Doorbell()) })
        var logger = context.logger
        logger[metadataKey: "store"] = "\(store)"
        self.logger = logger
    }

    var client: WireClient? { state.withLock { $0.client } }
    var problem: String? { state.withLock { $0.problem } }
    var isUp: Bool { state.withLock { $0.client != nil && $0.epoch != nil } }
    var isMigrated: Bool { state.withLock { $0.migrated } }

    /// Jobs of `queue` running here.
    func runningCount(_ queue: String) -> Int { state.withLock { $0.runningByQueue[queue] ?? 0 } }

    /// Counts of outcomes since start, by queue.
    var counters: [String: [String: Int]] { state.withLock { $0.counters } }

    // MARK: Running

    /// Runs until poold stops: then stops fetching, gives running jobs the shutdown grace,
    /// stops the rest, hands every unfinished job back and deletes its lease.
    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.maintain() }
            // Apart from the host's connection: the store's pool may be busy (all its connections
            // held by long jobs), and the lease must not wait for it.
            group.addTask {
                while !self.stopping.isOpen {
                    await self.refreshGauges()
                    // Five seconds, or until stopping: the host must not outlive its stop by a sleep.
                    let stopping = self.stopping
                    try? await withTimeout(.seconds(5), clock: ContinuousClock()) { try await stopping.wait() }
                }
            }
            group.addTask {
                await withDiscardingTaskGroup { work in
                    for queue in self.queues { work.addTask { await self.fetchLoop(queue) } }
                    work.addTask { await self.stopWhenAsked() }
                }
                await self.leave()
                self.state.withLock { $0.finished = true }
                self.maintenance.ring()
            }
        }
    }

    private func stopWhenAsked() async {
        try? await context.lifecycle.waitForStopRequest()
        stopping.open()
        for bell in bells.values { bell.ring() }
        let (running, lifecycle) = (running, context.lifecycle)
        try? await withTimeout(context.config.daemon.shutdownGrace, clock: ContinuousClock()) {
            try await firstOf({ try await running.waitForZero() }, { try await lifecycle.waitForGraceSkipped() })
        }
        let left = state.withLock { $0.running.values.map(\.signal) }
        if !left.isEmpty {
            logger.notice("stopping durable jobs that outlived the grace; they are handed back", metadata: ["jobs": "\(left.count)"])
        }
        for signal in left { signal.fire(.shutdown) }
    }

    /// Writes what is pending, hands back this host's unfinished jobs (attempt not counted, at
    /// once available to other hosts) and deletes its lease. When the store cannot be reached,
    /// the jobs are rescued by other hosts once the lease expires.
    private func leave() async {
        // Never registered (the store was never reached): nothing to hand back.
        guard state.withLock({ $0.epoch }) != nil else { return }
        for attempt in 0..<30 {
            if let client, let epoch = state.withLock({ $0.epoch }) {
                do {
                    try await flush(on: client)
                    let handed = try await api.handBack(epoch: epoch, queues: queues.map(\.name), on: client)
                    state.withLock { $0.epoch = nil }
                    logger.notice(
                        "durable queues left", metadata: ["handed_back": "\(handed)", "epoch": "\(epoch)", "event": "queue_host_left"])
                    return
                } catch {
                    logger.warning("could not hand jobs back yet", metadata: ["error": "\(describe(error))", "attempt": "\(attempt + 1)"])
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        logger.warning(
            "could not hand jobs back: the store is unreachable; other hosts rescue them when this host's lease expires",
            metadata: ["lease_seconds": "\(Self.leaseSeconds)"])
    }

    // MARK: The host's connection

    /// Connects (again after any failure), keeps the lease, rescues, flushes completions and
    /// failures, announces enqueues, deletes finished jobs past retention; until `leave` is done.
    private func maintain() async {
        var delay: Duration = .milliseconds(200)
        var reported = false
        while !state.withLock({ $0.finished }) {
            let client: WireClient
            do {
                client = try await connect()
                delay = .milliseconds(200)
                if reported { logger.notice("queue store reachable again", metadata: ["event": "queue_store_recovered"]) }
                reported = false
            } catch {
                if !reported {
                    logger.warning(
                        "cannot reach the queue store; retrying", metadata: ["error": "\(describe(error))", "event": "queue_store_down"])
                    reported = true
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
                continue
            }
            await tend(client)
            state.withLock { if $0.client === client { $0.client = nil } }
            await client.close()
        }
    }

    private func connect() async throws -> WireClient {
        let session = try await backend.open { [weak self] channel, payload in self?.notified(channel: channel, payload: payload) }
        let client = session.client
        do {
            if state.withLock({ $0.epoch == nil }) {
                let outcome = try await QueueSchema.migrate(client, schema: schema)
                switch outcome {
                case .created(let version):
                    logger.notice("created the durable queues' schema", metadata: ["schema": "\(schema)", "version": "\(version)"])
                case .migrated(let from, let to):
                    logger.notice(
                        "migrated the durable queues' schema", metadata: ["schema": "\(schema)", "from": "\(from)", "to": "\(to)"])
                case .current:
                    break
                }
                state.withLock { $0.migrated = true }
            }
            _ = try await client.execute("LISTEN " + QueueSchema.quoted(api.wakeChannel))
            _ = try await client.execute("LISTEN " + QueueSchema.quoted(api.cancelChannel))
            let previous = state.withLock { $0.epoch }
            var epoch = previous
            if let old = previous {
                if try await api.renew(epoch: old, seconds: Self.leaseSeconds, on: client) {
                    let mine = state.withLock { Array($0.running.keys) }
                    let strays = try await api.releaseStrays(epoch: old, running: mine, queues: queues.map(\.name), on: client)
                    if strays > 0 {
                        logger.notice("handed back jobs whose fetch answer the lost connection took", metadata: ["jobs": "\(strays)"])
                    }
                } else {
                    epoch = nil
                    leaseLost(old)
                }
            }
            if epoch == nil {
                epoch = try await api.register(host: Self.hostName, pid: Int(getpid()), seconds: Self.leaseSeconds, on: client)
                logger.info("queue host registered", metadata: ["epoch": "\(epoch ?? 0)", "schema": "\(schema)"])
            }
            let leader = try await api.tryLead(on: client)
            state.withLock {
                $0.client = client
                $0.epoch = epoch
                $0.problem = nil
                $0.leader = leader
                $0.woken.formUnion(queues.map(\.name))
            }
            for bell in bells.values { bell.ring() }
            return client
        } catch let refused as QueueSchema.Refused {
            state.withLock { $0.problem = refused.description }
            logger.error("the durable queues' schema cannot be used", metadata: ["error": "\(refused.description)"])
            await client.close()
            throw refused
        } catch {
            await client.close()
            throw error
        }
    }

    /// The lease expired and was rescued by another host: every job running under it is being
    /// retried elsewhere, so it is stopped here (its completion would be refused anyway).
    private func leaseLost(_ epoch: Int64) {
        let signals = state.withLock { state in
            state.epoch = nil
            return state.running.values.filter { $0.epoch == epoch }.map(\.signal)
        }
        logger.warning(
            "this host's lease expired and its jobs were rescued; stopping them here",
            metadata: ["epoch": "\(epoch)", "jobs": "\(signals.count)", "event": "queue_lease_lost"])
        for signal in signals { signal.fire(.cancelled(by: "the lease expiring")) }
    }

    /// The connection's life: every tick, what is pending; every second, the lease, rescues,
    /// housekeeping and a poll of every queue.
    private func tend(_ client: WireClient) async {
        var lastRenewal = ContinuousClock.now
        while !client.isClosed {
            if state.withLock({ $0.finished }) { return }
            do {
                try await flush(on: client)
                let now = ContinuousClock.now
                if now - lastRenewal >= Self.renewEvery {
                    lastRenewal = now
                    try await everySecond(client)
                }
            } catch {
                logger.warning("the queue store's connection failed", metadata: ["error": "\(describe(error))"])
                client.abort()
                return
            }
            try? await Task.sleep(for: Self.tick)
        }
    }

    private func everySecond(_ client: WireClient) async throws {
        if let epoch = state.withLock({ $0.epoch }), try await !api.renew(epoch: epoch, seconds: Self.leaseSeconds, on: client) {
            leaseLost(epoch)
            let new = try await api.register(host: Self.hostName, pid: Int(getpid()), seconds: Self.leaseSeconds, on: client)
            state.withLock { $0.epoch = new }
        }
        let rescued = try await api.rescue(on: client)
        if rescued > 0 {
            logger.notice("rescued jobs of hosts whose lease expired", metadata: ["jobs": "\(rescued)", "event": "queue_rescued"])
        }
        if !state.withLock({ $0.leader }) {
            let leader = try await api.tryLead(on: client)
            state.withLock { $0.leader = leader }
        }
        if state.withLock({ $0.leader }) {
            for queue in queues {
                let seconds = Int(queue.retention.components.seconds)
                // A few batches a second at most: housekeeping must not crowd out the lease.
                for _ in 0..<5 {
                    let deleted = try await api.deleteFinished(
                        olderThan: seconds, batch: Self.retentionBatch, queue: queue.name, on: client)
                    if deleted < Self.retentionBatch { break }
                }
            }
        }
        state.withLock { $0.woken.formUnion(queues.map(\.name)) }
        for bell in bells.values { bell.ring() }
    }

    /// Completions of exec jobs, failures, and wake-ups that were held back.
    private func flush(on client: WireClient) async throws {
        let (completions, failures, notify) = state.withLock { state in
            let taken = (state.completions, state.failures, state.pendingNotify)
            state.completions = []
            state.failures = []
            state.pendingNotify = []
            return taken
        }
        do {
            if !completions.isEmpty { _ = try await api.completeAll(completions, on: client) }
        } catch {
            state.withLock { $0.completions.append(contentsOf: completions) }
            state.withLock { $0.failures.append(contentsOf: failures) }
            throw error
        }
        for (index, failure) in failures.enumerated() {
            do {
                _ = try await api.fail(job: failure.id, attempt: failure.attempt, epoch: failure.epoch, error: failure.error, on: client)
            } catch {
                state.withLock { $0.failures.append(contentsOf: failures[index...]) }
                throw error
            }
        }
        if !notify.isEmpty {
            try await api.notify(queues: Array(notify), on: client)
            let now = ContinuousClock.now
            state.withLock { state in for queue in notify { state.lastNotify[queue] = now } }
        }
    }

    private func notified(channel: String, payload: String) {
        if channel == api.wakeChannel {
            guard let bell = bells[payload] else { return }
            state.withLock { _ = $0.woken.insert(payload) }
            bell.ring()
        } else if channel == api.cancelChannel, let id = Int64(payload) {
            let signal = state.withLock { $0.running[id]?.signal }
            signal?.fire(.cancelled(by: "job_cancel"))
        }
    }

    // MARK: Fetching

    /// A job taken from the store and not started yet: `prefetch` keeps a few per queue, so that
    /// a finished job's slot goes to the next one at once instead of waiting for a fetch.
    struct Ready: Sendable {
        var job: QueueStore.Taken
        var epoch: Int64
        var signal: StopSignal
    }

    /// Jobs fetched ahead of free slots, for a queue whose jobs are short (they then wait at most
    /// about one job's time; long jobs are left to other hosts): half the concurrency.
    static func prefetch(_ queue: QueueSettings, averageSeconds: Double) -> Int {
        averageSeconds < 0.05 ? max(1, queue.concurrency / 2) : 0
    }

    /// Takes jobs of `queue` while this host has room for them. A slot is a child task that runs
    /// jobs one after the other, as long as fetched ones are ready; fetches refill the ready
    /// jobs a batch at a time, since one fetch per finished job would cost the server a
    /// statement and a transaction per job.
    private func fetchLoop(_ queue: QueueSettings) async {
        guard let bell = bells[queue.name] else { return }
        await withDiscardingTaskGroup { slots in
            var mayHaveMore = true
            while !stopping.isOpen {
                let (client, epoch, busy, ready, woken, average) = state.withLock { state in
                    (
                        state.client, state.epoch, state.runningByQueue[queue.name] ?? 0, state.ready[queue.name]?.count ?? 0,
                        state.woken.contains(queue.name), state.averageSeconds[queue.name] ?? 0
                    )
                }
                let room = queue.concurrency + Self.prefetch(queue, averageSeconds: average) - busy - ready
                let batch = woken ? 1 : max(1, queue.concurrency / 4)
                guard let client, let epoch, room >= batch, mayHaveMore || woken else {
                    await bell.wait()
                    continue
                }
                let completions = state.withLock { state in
                    state.woken.remove(queue.name)
                    let taken = state.completions
                    state.completions = []
                    return taken
                }
                let taken: [QueueStore.Taken]
                do {
                    taken = try await api.completeAndFetch(completions, queue: queue.name, demand: room, epoch: epoch, on: client)
                } catch {
                    state.withLock { $0.completions.append(contentsOf: completions) }
                    mayHaveMore = true
                    if !client.isClosed {
                        logger.warning("fetching failed", metadata: ["queue": "\(queue.name)", "error": "\(describe(error))"])
                    }
                    await bell.wait()
                    continue
                }
                mayHaveMore = taken.count == room
                let starting = state.withLock { state -> Int in
                    for job in taken {
                        let signal = StopSignal()
                        state.running[job.id] = Running(epoch: epoch, signal: signal)
                        state.ready[queue.name, default: []].append(Ready(job: job, epoch: epoch, signal: signal))
                    }
                    let idle = queue.concurrency - (state.runningByQueue[queue.name] ?? 0)
                    let starting = min(idle, state.ready[queue.name]?.count ?? 0)
                    state.runningByQueue[queue.name, default: 0] += starting
                    return starting
                }
                // As jobs from control connections do: on the event loop of the pool they run on,
                // where their connection's answers arrive, with no thread hop per statement.
                let executor = context.pools.named(Self.pool(of: queue, config: context.config) ?? store)?.executor
                for _ in 0..<starting {
                    slots.addTask(executorPreference: executor) { await self.slot(queue, bell: bell) }
                }
            }
        }
        // Stopping: jobs fetched and not started stay running under this host's lease, and
        // `leave` hands them back with the rest.
        state.withLock { state in
            for ready in state.ready[queue.name] ?? [] { state.running[ready.job.id] = nil }
            state.ready[queue.name] = []
        }
    }

    /// The pool a queue's jobs run on.
    static func pool(of queue: QueueSettings, config: Config) -> String? {
        switch queue.work {
        case .job(let name): config.job(named: name)?.pool
        case .pool(let pool): pool
        }
    }

    /// One slot of `queue`: runs ready jobs until there are none (or poold is stopping).
    private func slot(_ queue: QueueSettings, bell: Doorbell) async {
        while let next = takeReady(queue.name) {
            _ = running.tryEnter()
            let started = ContinuousClock.now
            if let reason = next.signal.reason {
                // Cancelled (job_cancel) or its lease lost while it waited: it never starts.
                count(queue.name, "stopped")
                logger.notice(
                    "durable job stopped before it started",
                    metadata: ["queue": "\(queue.name)", "durable_job_id": "\(next.job.id)", "reason": "\(reason)"])
            } else {
                await execute(next.job, queue: queue, epoch: next.epoch, signal: next.signal)
            }
            let took = started.duration(to: .now).components
            let seconds = Double(took.seconds) + Double(took.attoseconds) / 1e18
            state.withLock { state in
                state.running[next.job.id] = nil
                let old = state.averageSeconds[queue.name] ?? seconds
                state.averageSeconds[queue.name] = old * 0.9 + seconds * 0.1
            }
            running.leave()
            bell.ring()
        }
    }

    /// The next ready job of `queue`, or nil (the slot ends) when there is none or poold is
    /// stopping.
    private func takeReady(_ name: String) -> Ready? {
        state.withLock { state in
            if !stopping.isOpen, var ready = state.ready[name], !ready.isEmpty {
                let next = ready.removeFirst()
                state.ready[name] = ready
                return next
            }
            state.runningByQueue[name, default: 1] -= 1
            return nil
        }
    }

    // MARK: Local enqueues

    /// After an enqueue on this host committed: this host's fetchers look at once.
    func enqueued(_ queues: Set<String>) {
        state.withLock { $0.woken.formUnion(queues) }
        for queue in queues { bells[queue]?.ring() }
    }

    /// Which of `queues` this enqueue should announce to other hosts itself (NOTIFY in its
    /// transaction); the others, announced within the window already, are announced at its end.
    func claimNotifications(_ queues: Set<String>) -> [String] {
        let now = ContinuousClock.now
        return state.withLock { state in
            var claimed: [String] = []
            for queue in queues {
                if let last = state.lastNotify[queue], now - last < Self.notifyWindow {
                    state.pendingNotify.insert(queue)
                } else {
                    state.lastNotify[queue] = now
                    claimed.append(queue)
                }
            }
            return claimed
        }
    }

    // MARK: Recording outcomes

    func completed(_ completion: QueueStore.Completion) {
        state.withLock { $0.completions.append(completion) }
    }

    func failed(_ failure: PendingFailure) {
        state.withLock { $0.failures.append(failure) }
    }

    func count(_ queue: String, _ outcome: String) {
        state.withLock { $0.counters[queue, default: [:]][outcome, default: 0] += 1 }
        context.metrics.queueCollectors(for: queue).count(outcome)
    }

    /// The queues' figures, read on a connection of the store's pool: counting a backlog takes
    /// a while, and the host's own connection must not wait behind it to renew the lease.
    func stats(window: Int) async -> [String: QueueStats]? {
        guard let pool = context.pools.named(store) else { return nil }
        return try? await pool.withPostgresSession(stop: StopSignal()) { session in
            try await api.stats(queues: queues.map(\.name), window: window, on: session.client)
        }
    }

    private func refreshGauges() async {
        guard let stats = await stats(window: 10) else { return }
        for (queue, figures) in stats {
            context.metrics.queueCollectors(for: queue).set(figures, running: runningCount(queue))
        }
    }

    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    func describe(_ error: any Error) -> String {
        PostgresBackend.describe(error)
    }
}
