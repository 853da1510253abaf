import PoolCore
import Testing

@Suite("Pool state machine, random event sequences")
struct PoolStateMachineRandomTests {
    static let chunks = 8
    static let sequencesPerChunk = 250
    static let steps = 200

    /// 2,000 seeded sequences of 200 random events each (in 8 chunks that run in parallel).
    /// A failure names the seed and the step; `Simulation(seed:)` replays it exactly.
    @Test("random event sequences keep every rule", arguments: 0..<chunks)
    func randomSequences(chunk: Int) {
        var failingSeeds = 0
        for index in 0..<Self.sequencesPerChunk {
            let seed = UInt64(chunk * Self.sequencesPerChunk + index + 1)
            var simulation = Simulation(seed: seed)
            simulation.run(steps: Self.steps)
            if let failure = simulation.failure {
                Issue.record("seed \(seed): \(failure)")
                failingSeeds += 1
                if failingSeeds >= 3 { return }
            }
        }
    }

    @Test("a sequence replays identically from its seed")
    func deterministic() {
        var first = Simulation(seed: 77)
        first.run(steps: Self.steps)
        var second = Simulation(seed: 77)
        second.run(steps: Self.steps)
        #expect(first.failure == nil)
        #expect(first.history == second.history)
        #expect(first.pool.snapshot == second.pool.snapshot)
    }
}

/// One pool driven by random events, with everything around it modelled: the backend (opens,
/// checks and closes in flight, resources it holds open), the jobs (waiting, holding a
/// resource) and the shell's single timer. After every step it checks the pool's answers
/// against the model and the rules; the first broken rule ends the run and is kept in `failure`.
struct Simulation {
    let seed: UInt64
    var rng: SplitMix64
    var pool: PoolStateMachine
    var now: Duration = .zero
    var step = 0
    var failure: String?
    /// Every event, for replay comparison; the last few go into a failure message.
    var history: [Event] = []

    struct Event: Equatable, CustomStringConvertible {
        var step: Int
        var at: Duration
        var what: String
        var description: String { "\(step)@\(at): \(what)" }
    }

    // The backend.
    var pendingOpens: [ResourceID] = []
    var pendingChecks: [ResourceID] = []
    var pendingCloses: [ResourceID] = []
    /// Opened successfully and not yet reported closed.
    var backendOpen: Set<ResourceID> = []
    var everOpened: [ResourceID] = []
    var everOpenedSet: Set<ResourceID> = []
    var openedAt: [ResourceID: Duration] = [:]

    // The jobs.
    var held: [ResourceID] = []
    var queue: [WaiterID] = []
    var deadlines: [WaiterID: Duration] = [:]
    var outcomes: [WaiterID: String] = [:]
    var nextWaiter: UInt64 = 1

    // The shell.
    var timer: Duration?
    var failuresSinceSuccess = 0
    var retryAt: Duration?
    var closedReported = false

    init(seed: UInt64) {
        self.seed = seed
        var rng = SplitMix64(seed: seed)
        let limits = Self.randomLimits(&rng)
        self.rng = rng
        self.pool = PoolStateMachine(name: "sim", limits: limits, seed: seed)
    }

    static func randomLimits(_ rng: inout SplitMix64) -> PoolLimits {
        func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
        let max = Int.random(in: 1...6, using: &rng)
        let initial = Duration.milliseconds(Int.random(in: 10...200, using: &rng))
        return PoolLimits(
            minResources: Int.random(in: 0...Swift.min(max, 3), using: &rng),
            maxResources: max,
            maxWaiters: Int.random(in: 0...8, using: &rng),
            acquireTimeout: .milliseconds(Int.random(in: 200...5000, using: &rng)),
            idleTimeout: chance(0.6) ? .milliseconds(Int.random(in: 100...5000, using: &rng)) : nil,
            maxLifetime: chance(0.5) ? .milliseconds(Int.random(in: 500...20_000, using: &rng)) : nil,
            healthCheckAfter: chance(0.6) ? .milliseconds(Int.random(in: 0...1500, using: &rng)) : nil,
            backoffInitial: initial,
            backoffMax: initial * Int.random(in: 1...20, using: &rng),
            backoffJitter: [0, 0.1, 0.5, 1].randomElement(using: &rng)!,
            degradedAfter: Int.random(in: 1...4, using: &rng)
        )
    }

    // MARK: Running

    mutating func run(steps: Int) {
        let before = pool.snapshot
        note("start")
        absorb(pool.start(at: now), before: before)
        while step < steps && failure == nil {
            step += 1
            randomStep()
        }
        if failure == nil { finish() }
    }

    mutating func randomStep() {
        if Int.random(in: 0..<10, using: &rng) < 4 {
            now += .milliseconds(Int.random(in: 0...300, using: &rng))
        }
        let roll = Int.random(in: 0..<1000, using: &rng)
        switch roll {
        case 0..<200: lease()
        case 200..<330: if !held.isEmpty { release() } else { lease() }
        case 330..<380: cancel()
        case 380..<530: if !pendingOpens.isEmpty { completeOpen() } else { fireTimer() }
        case 530..<580: if !pendingChecks.isEmpty { completeCheck() } else { fireTimer() }
        case 580..<680: if !pendingCloses.isEmpty { completeClose() } else { fireTimer() }
        case 680..<800: fireTimer()
        case 800..<830: resize()
        case 830..<840: updateLimits()
        case 840..<865: pause()
        case 865..<895: resume()
        case 895..<901: drain()
        case 901..<902: close()
        default: staleEvent()
        }
    }

    /// Closes the pool, then completes every job and every backend operation in a random order.
    mutating func finish() {
        step += 1
        close()
        var rounds = 0
        while failure == nil && !(pendingOpens.isEmpty && pendingChecks.isEmpty && pendingCloses.isEmpty && held.isEmpty) {
            rounds += 1
            if rounds > 10_000 { return fail("shutting down does not converge") }
            step += 1
            switch Int.random(in: 0..<4, using: &rng) {
            case 0 where !held.isEmpty: release()
            case 1 where !pendingOpens.isEmpty: completeOpen()
            case 2 where !pendingChecks.isEmpty: completeCheck()
            case 3 where !pendingCloses.isEmpty: completeClose()
            default: continue
            }
        }
        guard failure == nil else { return }
        let s = pool.snapshot
        if s.mode != .closed { return fail("not closed at the end: \(s)") }
        if !closedReported { return fail("effects.closed was never reported") }
        if s.open != 0 { return fail("\(s.open) still open after close") }
        if !backendOpen.isEmpty { return fail("the backend still holds \(backendOpen.count) open: \(backendOpen)") }
        if !queue.isEmpty { return fail("waiters left after close: \(queue)") }
        for raw in 1..<nextWaiter where outcomes[WaiterID(raw)] == nil {
            return fail("w\(raw) never got an outcome")
        }
    }

    // MARK: Events

    mutating func lease() {
        let waiter = WaiterID(nextWaiter)
        nextWaiter += 1
        let before = pool.snapshot
        note("lease \(waiter)")
        switch pool.leaseRequested(waiter, at: now) {
        case .granted(let resource, let effects):
            if !queue.isEmpty { return fail("\(waiter) was granted at once ahead of \(queue)") }
            if before.isPaused || before.mode != .running { return fail("granted at once while \(before.state)") }
            take(resource, by: waiter)
            absorb(effects, before: before)
        case .queued(let effects):
            if before.mode != .running { return fail("\(waiter) queued while \(before.mode)") }
            queue.append(waiter)
            deadlines[waiter] = now + pool.limits.acquireTimeout
            absorb(effects, before: before)
        case .refused(let error):
            settle(waiter, "refused \(error.code)")
            switch error.code {
            case .overloaded:
                if before.waiting < pool.limits.maxWaiters {
                    fail("overloaded with \(before.waiting) of \(pool.limits.maxWaiters) waiting")
                }
            case .shuttingDown:
                if before.mode == .running { fail("shutting_down while running") }
            case .backend:
                if before.health != .degraded { fail("backend refusal while healthy") }
                if let last = pool.lastError, !error.message.contains(last.message) {
                    fail("backend refusal without the backend's words: \(error.message)")
                }
            default:
                fail("refused with \(error.code)")
            }
            if pool.snapshot != before { fail("a refusal changed the pool: \(before) -> \(pool.snapshot)") }
            absorb(PoolEffects(), before: before)
        }
    }

    mutating func release() {
        let index = Int.random(in: 0..<held.count, using: &rng)
        let resource = held.remove(at: index)
        let broken = Int.random(in: 0..<100, using: &rng) < 15
        let before = pool.snapshot
        note("release \(resource)\(broken ? " broken" : "")")
        let effects = pool.released(resource, broken: broken, at: now)
        if broken && !effects.close.contains(resource) { fail("broken \(resource) was not closed") }
        if isPastLifetime(resource) && !effects.close.contains(resource) { fail("\(resource) past max_lifetime was not closed on release") }
        if broken && effects.grant.contains(where: { $0.resource == resource }) { fail("broken \(resource) was handed on") }
        absorb(effects, before: before)
    }

    mutating func cancel() {
        let waiter: WaiterID
        if !queue.isEmpty && Int.random(in: 0..<10, using: &rng) < 7 {
            waiter = queue[Int.random(in: 0..<queue.count, using: &rng)]
        } else {
            waiter = WaiterID(UInt64.random(in: 1...nextWaiter, using: &rng))
        }
        let before = pool.snapshot
        let waiting = queue.contains(waiter)
        note("cancel \(waiter)")
        if let effects = pool.waiterCancelled(waiter) {
            if !waiting { return fail("cancelling \(waiter), which was not waiting, returned effects") }
            queue.removeAll { $0 == waiter }
            settle(waiter, "cancelled")
            absorb(effects, before: before)
        } else {
            if waiting { return fail("cancelling waiting \(waiter) returned nil") }
            if pool.snapshot != before { return fail("a cancel that found nothing changed the pool") }
            absorb(PoolEffects(), before: before)
        }
    }

    mutating func completeOpen() {
        let resource = pendingOpens.remove(at: Int.random(in: 0..<pendingOpens.count, using: &rng))
        let before = pool.snapshot
        let roll = Int.random(in: 0..<100, using: &rng)
        if roll < 75 {
            note("openSucceeded \(resource)")
            backendOpen.insert(resource)
            openedAt[resource] = now
            failuresSinceSuccess = 0
            retryAt = nil
            absorb(pool.openSucceeded(resource, at: now), before: before)
            return
        }
        let failure: BackendFailure
        switch roll {
        case 75..<94: failure = BackendFailure(.transient, "connection refused (\(step))")
        case 94..<97: failure = BackendFailure(.authentication, "password authentication failed (\(step))")
        default: failure = BackendFailure(.misconfigured, "no such database (\(step))")
        }
        note("openFailed \(resource) \(failure.kind)")
        failuresSinceSuccess += 1
        let limits = pool.limits
        let effects = pool.openFailed(resource, failure, at: now)
        guard let retryIn = effects.retryIn else { return fail("openFailed without retryIn") }
        let base = limits.backoff(afterFailures: failuresSinceSuccess)
        let low = base * (1 - limits.backoffJitter)
        let high = Swift.min(base * (1 + limits.backoffJitter), limits.backoffMax)
        if retryIn < low - .nanoseconds(1) || retryIn > high + .nanoseconds(1) {
            return fail("retryIn \(retryIn) outside [\(low), \(high)] after \(failuresSinceSuccess) failures")
        }
        retryAt = now + retryIn
        if pool.lastError != failure { return fail("lastError not set") }
        let degrades =
            before.health == .healthy
            && (failure.kind != .transient || failuresSinceSuccess >= limits.degradedAfter)
        if degrades && effects.health != .degraded { return fail("not degraded after \(failuresSinceSuccess) failures (\(failure.kind))") }
        if !degrades && effects.health != nil { return fail("health changed to \(String(describing: effects.health)) early") }
        if pool.health == .degraded {
            let failed = Set(effects.fail.map(\.waiter))
            if failed != Set(queue) { return fail("degraded but waiters \(queue) not all failed (\(failed))") }
        }
        absorb(effects, before: before)
        if before.mode == .running || before.mode == .draining {
            guard let timer, timer <= now + retryIn else { return fail("no timer armed for the retry at \(now + retryIn)") }
        }
    }

    mutating func completeCheck() {
        let resource = pendingChecks.remove(at: Int.random(in: 0..<pendingChecks.count, using: &rng))
        let before = pool.snapshot
        if Int.random(in: 0..<100, using: &rng) < 80 {
            note("healthCheckSucceeded \(resource)")
            absorb(pool.healthCheckSucceeded(resource, at: now), before: before)
        } else {
            note("healthCheckFailed \(resource)")
            let failure = BackendFailure(.transient, "check failed (\(step))")
            let effects = pool.healthCheckFailed(resource, failure, at: now)
            if !effects.close.contains(resource) { fail("\(resource) failed its check but was not closed") }
            if pool.lastError != failure { fail("lastError not set by a failed check") }
            absorb(effects, before: before)
        }
    }

    mutating func completeClose() {
        let resource = pendingCloses.remove(at: Int.random(in: 0..<pendingCloses.count, using: &rng))
        backendOpen.remove(resource)
        let before = pool.snapshot
        note("closed \(resource)")
        absorb(pool.closed(resource, at: now), before: before)
    }

    mutating func fireTimer() {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<5: if let timer { now = Swift.max(now, timer) }  // as a shell does
        case 5..<8: now += .milliseconds(Int.random(in: 0...2000, using: &rng))
        default: break  // early, or twice
        }
        if let pending = timer, pending <= now { timer = nil }
        let before = pool.snapshot
        note("timerFired")
        absorb(pool.timerFired(at: now), before: before)
        if let late = queue.first(where: { deadlines[$0]! <= now }) {
            fail("\(late) is still waiting past its deadline \(deadlines[late]!)")
        }
    }

    mutating func resize() {
        let newMin = Int.random(in: -1...4, using: &rng)
        let newMax = Int.random(in: 0...6, using: &rng)
        var proposed = pool.limits
        proposed.minResources = newMin
        proposed.maxResources = newMax
        let valid = proposed.validate() == nil
        let before = pool.snapshot
        let limits = pool.limits
        note("resize \(newMin)...\(newMax)")
        switch pool.resize(min: newMin, max: newMax, at: now) {
        case .success(let effects):
            if !valid { return fail("invalid resize accepted") }
            absorb(effects, before: before)
        case .failure(let error):
            if valid { return fail("valid resize refused: \(error)") }
            if error.code != .badRequest || !error.message.hasPrefix("pool \"sim\": ") { return fail("resize refused with \(error)") }
            if pool.snapshot != before || pool.limits != limits { return fail("a refused resize changed the pool") }
            absorb(PoolEffects(), before: before)
        }
    }

    mutating func updateLimits() {
        var limits = Self.randomLimits(&rng)
        // A reload that lowers max_waiters below the queue keeps those waiters, which
        // invariantViolations() flags: a reported open question (see updateLimitsLoweringMaxWaiters).
        limits.maxWaiters = Swift.max(limits.maxWaiters, queue.count)
        let invalid = Int.random(in: 0..<5, using: &rng) == 0
        if invalid { limits.acquireTimeout = .zero }
        let before = pool.snapshot
        let old = pool.limits
        note("updateLimits")
        switch pool.updateLimits(limits, at: now) {
        case .success(let effects):
            if invalid { return fail("invalid limits accepted") }
            absorb(effects, before: before)
        case .failure(let error):
            if !invalid { return fail("valid limits refused: \(error)") }
            if error.code != .badConfig { return fail("limits refused with \(error.code)") }
            if pool.snapshot != before || pool.limits != old { return fail("refused limits changed the pool") }
            absorb(PoolEffects(), before: before)
        }
    }

    mutating func pause() {
        let before = pool.snapshot
        note("pause")
        pool.pause()
        absorb(PoolEffects(), before: before)
    }

    mutating func resume() {
        let before = pool.snapshot
        note("resume")
        absorb(pool.resume(at: now), before: before)
    }

    mutating func drain() {
        let before = pool.snapshot
        note("drain")
        absorb(pool.drain(at: now), before: before)
    }

    mutating func close() {
        let before = pool.snapshot
        note("close")
        let effects = pool.close(at: now)
        if before.mode != .closing && before.mode != .closed {
            let failed = Set(effects.fail.map(\.waiter))
            if failed != Set(queue) { return fail("close did not fail every waiter") }
            if !effects.fail.allSatisfy({ $0.error.code == .shuttingDown }) { return fail("close failed waiters with the wrong code") }
        }
        absorb(effects, before: before)
    }

    /// An event the pool must ignore: about a resource that is not in the state it names.
    mutating func staleEvent() {
        guard !everOpened.isEmpty else { return fireTimer() }
        let resource = everOpened[Int.random(in: 0..<everOpened.count, using: &rng)]
        let before = pool.snapshot
        let lastError = pool.lastError
        let effects: PoolEffects
        switch Int.random(in: 0..<6, using: &rng) {
        case 0 where !pendingOpens.contains(resource):
            note("stale openSucceeded \(resource)")
            effects = pool.openSucceeded(resource, at: now)
        case 1 where !pendingOpens.contains(resource):
            note("stale openFailed \(resource)")
            effects = pool.openFailed(resource, BackendFailure(.authentication, "stale"), at: now)
        case 2 where !pendingChecks.contains(resource):
            note("stale healthCheckSucceeded \(resource)")
            effects = pool.healthCheckSucceeded(resource, at: now)
        case 3 where !pendingChecks.contains(resource):
            note("stale healthCheckFailed \(resource)")
            effects = pool.healthCheckFailed(resource, BackendFailure(.transient, "stale"), at: now)
        case 4 where !pendingCloses.contains(resource):
            note("stale closed \(resource)")
            effects = pool.closed(resource, at: now)
        case 5 where !held.contains(resource):
            note("stale released \(resource)")
            effects = pool.released(resource, broken: true, at: now)
        default:
            return fireTimer()
        }
        if !effects.isEmpty { return fail("a stale event had effects: \(effects)") }
        if pool.snapshot != before || pool.lastError != lastError { return fail("a stale event changed the pool") }
        absorb(effects, before: before)
    }

    // MARK: Checking

    mutating func note(_ event: String) {
        history.append(Event(step: step, at: now, what: event))
    }

    mutating func fail(_ message: String) {
        guard failure == nil else { return }
        let recent = history.suffix(15).map(\.description).joined(separator: "\n  ")
        failure = "step \(step) at \(now): \(message)\n  limits: \(pool.limits)\n  pool: \(pool.snapshot)\n  recent events:\n  \(recent)"
    }

    func isPastLifetime(_ resource: ResourceID) -> Bool {
        guard let lifetime = pool.limits.maxLifetime, let opened = openedAt[resource] else { return false }
        return now - opened >= lifetime
    }

    mutating func settle(_ waiter: WaiterID, _ outcome: String) {
        if let first = outcomes[waiter] {
            return fail("\(waiter) got a second outcome: \(first), then \(outcome)")
        }
        outcomes[waiter] = outcome
    }

    mutating func take(_ resource: ResourceID, by waiter: WaiterID) {
        if !backendOpen.contains(resource) { return fail("granted \(resource), which the backend does not hold open") }
        if held.contains(resource) { return fail("granted \(resource) to \(waiter) while another job holds it") }
        if pendingChecks.contains(resource) || pendingCloses.contains(resource) {
            return fail("granted \(resource) while it is being checked or closed")
        }
        if isPastLifetime(resource) { return fail("granted \(resource), opened at \(openedAt[resource]!), past max_lifetime") }
        held.append(resource)
        settle(waiter, "granted \(resource)")
    }

    /// Applies what the pool asked for to the model, then checks the pool against the model
    /// and the rules.
    mutating func absorb(_ effects: PoolEffects, before: PoolSnapshot) {
        guard failure == nil else { return }
        let problems = pool.invariantViolations()
        if !problems.isEmpty { return fail("invariants broken: \(problems)") }
        let s = pool.snapshot

        for r in effects.close {
            if !backendOpen.contains(r) { return fail("close of \(r), which the backend does not hold open") }
            if held.contains(r) { return fail("close of \(r) while a job holds it") }
            if pendingChecks.contains(r) || pendingCloses.contains(r) { return fail("close of \(r) while it is being checked or closed") }
            pendingCloses.append(r)
        }
        for r in effects.open {
            if everOpenedSet.contains(r) { return fail("open reuses the id \(r)") }
            everOpenedSet.insert(r)
            everOpened.append(r)
            pendingOpens.append(r)
        }
        for r in effects.healthCheck {
            if !backendOpen.contains(r) || held.contains(r) || pendingChecks.contains(r) || pendingCloses.contains(r) {
                return fail("health check of \(r), which is not idle")
            }
            pendingChecks.append(r)
        }
        for failure in effects.fail {
            guard let index = queue.firstIndex(of: failure.waiter) else { return fail("fails \(failure.waiter), which is not waiting") }
            queue.remove(at: index)
            settle(failure.waiter, "failed \(failure.error.code)")
            switch failure.error.code {
            case .poolTimeout:
                if now < deadlines[failure.waiter]! { return fail("\(failure.waiter) timed out before its deadline") }
            case .backend:
                if s.health != .degraded { return fail("backend failure while healthy") }
            case .shuttingDown:
                if s.mode != .closing && s.mode != .closed { return fail("shutting_down while \(s.mode)") }
            default:
                return fail("\(failure.waiter) failed with \(failure.error.code)")
            }
        }
        for grant in effects.grant {
            if queue.first != grant.waiter { return fail("grant to \(grant.waiter) out of turn; queue \(queue)") }
            queue.removeFirst()
            take(grant.resource, by: grant.waiter)
        }
        if let t = effects.timer { timer = timer.map { Swift.min($0, t) } ?? t }
        guard failure == nil else { return }

        // The pool's counts are the model's.
        let idle = backendOpen.count - held.count - pendingChecks.count - pendingCloses.count
        if s.waiting != queue.count || s.leased != held.count || s.connecting != pendingOpens.count
            || s.checking != pendingChecks.count || s.closing != pendingCloses.count || s.idle != idle
        {
            return fail(
                "counts differ from the model: waiting \(queue.count), leased \(held.count), connecting \(pendingOpens.count), checking "
                    + "\(pendingChecks.count), closing \(pendingCloses.count), idle \(idle)"
            )
        }

        // Opens: never at or beyond max, never while closing or during backoff, only as needed.
        let live = s.connecting + s.idle + s.leased + s.checking
        if !effects.open.isEmpty {
            if s.open > s.max { return fail("opened to \(s.open) above max \(s.max)") }
            if before.mode == .closing || before.mode == .closed { return fail("opened while \(before.mode)") }
            if let retryAt, now < retryAt { return fail("opened during the backoff (retry at \(retryAt))") }
            if failuresSinceSuccess > 0 && (effects.open.count != 1 || s.connecting != 1) {
                return fail("\(effects.open.count) opens (\(s.connecting) in flight) while opens are failing")
            }
            let forWaiters = s.isPaused ? 0 : s.waiting
            let needed =
                s.connecting + s.checking <= forWaiters
                || (s.mode == .running && live <= s.min)
                || (s.mode == .running && s.health == .degraded && s.connecting == 1)
            if !needed { return fail("opened more than waiters and min need") }
        }
        if !effects.grant.isEmpty && (s.isPaused || s.mode == .closing || s.mode == .closed) {
            return fail("granted while \(s.state)")
        }

        // Health, drained and closed are reported exactly when they change.
        if effects.health != nil && (effects.health != s.health || before.health == s.health) {
            return fail("health effect \(String(describing: effects.health)) but \(before.health) -> \(s.health)")
        }
        if effects.health == nil && before.health != s.health { return fail("health changed to \(s.health) unreported") }
        if effects.closed {
            if s.mode != .closed || s.open != 0 { return fail("closed reported while \(s.mode) with \(s.open) open") }
            closedReported = true
        }
        if s.mode == .closed && before.mode != .closed && !effects.closed { return fail("became closed unreported") }
        let drainedNow = s.mode == .draining && s.open == 0 && s.waiting == 0
        let drainedBefore = before.mode == .draining && before.open == 0 && before.waiting == 0
        if effects.drained && !drainedNow { return fail("drained reported with \(s.open) open, \(s.waiting) waiting") }
        if drainedNow && !drainedBefore && !effects.drained { return fail("drained unreported") }

        // Nothing the pool needs is left undone: min is kept and waiters have opens, unless at
        // max or backing off.
        if failuresSinceSuccess == 0 && s.open < s.max {
            if s.mode == .running && live < s.min { return fail("below min (\(live) of \(s.min)) with room to open") }
            if (s.mode == .running || s.mode == .draining) && !s.isPaused && s.waiting > s.connecting + s.checking {
                return fail("\(s.waiting) waiting with \(s.connecting) opening and \(s.checking) checking, and room to open")
            }
        }

        // Liveness: any work the timer would find must be due no earlier than the shell's timer.
        if s.mode != .closed {
            let probeAt = timer.map { $0 - .nanoseconds(1) } ?? now + .seconds(1_000_000)
            if probeAt >= now {
                var copy = pool
                let due = copy.timerFired(at: probeAt)
                if !(due.open.isEmpty && due.close.isEmpty && due.healthCheck.isEmpty && due.grant.isEmpty && due.fail.isEmpty) {
                    return fail(
                        "work due by \(probeAt) without a timer (pending \(String(describing: timer))): open \(due.open), close "
                            + "\(due.close), fail \(due.fail.map(\.waiter))"
                    )
                }
            }
        }
    }
}
