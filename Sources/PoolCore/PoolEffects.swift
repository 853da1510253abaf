/// What the shell must do after an event, in this order: close, open, check, grant, fail,
/// schedule the timer. Empty arrays cost nothing, so the common lease/release path
/// allocates nothing.
public struct PoolEffects: Sendable, Equatable {
    /// Start opening a resource into this slot; report `openSucceeded` or `openFailed`.
    public var open: [PoolStateMachine.ResourceID] = []
    /// Close this resource (it is no longer leased to anyone); report `closed`.
    public var close: [PoolStateMachine.ResourceID] = []
    /// Health-check this idle resource; report `healthCheckSucceeded` or `healthCheckFailed`.
    public var healthCheck: [PoolStateMachine.ResourceID] = []
    /// Hand this resource to this waiter.
    public var grant: [PoolStateMachine.Grant] = []
    /// Fail this waiter with this error.
    public var fail: [PoolStateMachine.WaiterFailure] = []
    /// Make sure `timerFired` is called at (or after) this instant.
    public var timer: PoolStateMachine.Instant?
    /// The pool's health changed to this.
    public var health: PoolStateMachine.Health?
    /// An open failed; the next attempt is due after this delay.
    public var retryIn: Duration?
    /// `drain` is complete: nothing waits, nothing is leased or open.
    public var drained = false
    /// `close` is complete: nothing is open.
    public var closed = false

    public init() {}

    public var isEmpty: Bool {
        open.isEmpty && close.isEmpty && healthCheck.isEmpty && grant.isEmpty && fail.isEmpty
            && timer == nil && health == nil && retryIn == nil && !drained && !closed
    }
}

extension PoolStateMachine {
    public struct Grant: Sendable, Hashable {
        public var waiter: WaiterID
        public var resource: ResourceID
    }

    public struct WaiterFailure: Sendable, Hashable {
        public var waiter: WaiterID
        public var error: PoolError
    }
}
