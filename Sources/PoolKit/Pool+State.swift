public import PoolCore

extension Pool {
    /// Everything behind the pool's lock: the machine, the resources it refers to by slot,
    /// the parked waiters, and the work queued for `run()`.
    @usableFromInline
    struct State: Sendable {
        @usableFromInline var machine: PoolStateMachine
        @usableFromInline var resources: [Resource?] = []
        @usableFromInline var waiterCounter: UInt64 = 0
        /// Waiters parked on a continuation.
        @usableFromInline var parked: [WaiterID: CheckedContinuation<Lease, any Error>] = [:]
        /// Outcomes that arrived before their waiter parked (a race between enqueueing and
        /// parking); the waiter takes it when it parks.
        @usableFromInline var early: [WaiterID: Result<Lease, any Error>] = [:]
        /// Work for `run()`, in the order the machine asked for it. `run()` takes all of it at
        /// once, so a plain array is the whole queue.
        @usableFromInline var work: [Work] = []
        /// `run()`, parked in `nextWork()` until there is work or the pool is closed.
        @usableFromInline var runWaiter: CheckedContinuation<[Work]?, Never>?
        @usableFromInline var drainWaiters: [CheckedContinuation<Bool, Never>] = []
        @usableFromInline var closeWaiters: [CheckedContinuation<Bool, Never>] = []

        @usableFromInline
        init(machine: PoolStateMachine) {
            self.machine = machine
        }

        @inlinable
        mutating func nextWaiter() -> WaiterID {
            waiterCounter &+= 1
            return WaiterID(waiterCounter)
        }

        /// The lease for a resource the machine just granted. The machine grants only slots
        /// whose open succeeded, and every successful open stores its resource first.
        @inlinable
        func lease(_ id: ResourceID) -> Lease {
            guard let resource = resources[id.slot] else {
                preconditionFailure("pool granted \(id), which holds no resource")
            }
            return Lease(id: id, resource: resource)
        }

        mutating func store(_ resource: Resource, in id: ResourceID) {
            resources[id.slot] = resource
        }

        /// Turns the machine's effects into work for `run()` and continuations to resume once
        /// the lock is released. Most leases and releases decide nothing more, and skip it all.
        @inlinable
        mutating func apply(_ effects: PoolEffects) -> Resumptions {
            var out = Resumptions()
            guard !effects.isEmpty else { return out }
            for id in effects.close {
                let resource = resources[id.slot]
                resources[id.slot] = nil
                if let resource { work.append(.close(id, resource)) }
            }
            for id in effects.open {
                while resources.count <= id.slot { resources.append(nil) }
                work.append(.open(id))
            }
            for id in effects.healthCheck {
                if let resource = resources[id.slot] { work.append(.check(id, resource)) }
            }
            if let timer = effects.timer { work.append(.timer(timer)) }
            for grant in effects.grant {
                settle(grant.waiter, .success(lease(grant.resource)), into: &out)
            }
            for failure in effects.fail {
                settle(failure.waiter, .failure(failure.error), into: &out)
            }
            if let health = effects.health {
                switch health {
                case .degraded:
                    out.events.append(.degraded(machine.lastError ?? BackendFailure(.transient, "unknown")))
                case .healthy:
                    out.events.append(.recovered)
                }
            }
            if let retryIn = effects.retryIn, let failure = machine.lastError {
                out.events.append(.openFailed(failure, retryIn: retryIn))
            }
            if effects.drained || effects.closed {
                out.finished += drainWaiters.map { ($0, true) }
                drainWaiters.removeAll()
                out.events.append(effects.closed ? .closed : .drained)
            }
            if effects.closed {
                out.finished += closeWaiters.map { ($0, true) }
                closeWaiters.removeAll()
            }
            wakeRun(into: &out)
            return out
        }

        /// Parks a waiter's continuation, or settles it at once if its outcome came first.
        @inlinable
        mutating func park(_ waiter: WaiterID, _ continuation: CheckedContinuation<Lease, any Error>) -> Resumptions {
            var out = Resumptions()
            parked[waiter] = continuation
            if let outcome = early.removeValue(forKey: waiter) { settle(waiter, outcome, into: &out) }
            return out
        }

        /// Parks `run()` until `apply` has work for it, or hands it the work queued already.
        mutating func parkRun(_ continuation: CheckedContinuation<[Work]?, Never>) -> Resumptions {
            var out = Resumptions()
            runWaiter = continuation
            wakeRun(into: &out)
            return out
        }

        /// A parked `run()` gets all queued work, or nil once the pool is closed and none is
        /// left, which is what ends it.
        @inlinable
        mutating func wakeRun(into out: inout Resumptions) {
            guard let runWaiter, !work.isEmpty || machine.mode == .closed else { return }
            out.wakeRun = (runWaiter, work.isEmpty ? nil : work)
            self.runWaiter = nil
            work = []
        }

        @inlinable
        mutating func settle(_ waiter: WaiterID, _ outcome: Result<Lease, any Error>, into out: inout Resumptions) {
            if let continuation = parked.removeValue(forKey: waiter) {
                out.leases.append((continuation, outcome))
            } else {
                early[waiter] = outcome
            }
        }
    }

    /// Continuations to resume and events to report, collected under the lock and performed
    /// after it is released.
    @usableFromInline
    struct Resumptions {
        @usableFromInline var leases: [(CheckedContinuation<Lease, any Error>, Result<Lease, any Error>)] = []
        @usableFromInline var finished: [(CheckedContinuation<Bool, Never>, Bool)] = []
        @usableFromInline var wakeRun: (CheckedContinuation<[Work]?, Never>, [Work]?)?
        @usableFromInline var events: [PoolEvent] = []

        @inlinable init() {}

        @inlinable
        func perform(_ onEvent: @Sendable (PoolEvent) -> Void) {
            if case (let continuation, let work)? = wakeRun { continuation.resume(returning: work) }
            for (continuation, outcome) in leases { continuation.resume(with: outcome) }
            for (continuation, value) in finished { continuation.resume(returning: value) }
            for event in events { onEvent(event) }
        }
    }
}
