/// The daemon's lifecycle, as a pure state machine: the shell (poold's `Daemon`) feeds it
/// events and performs the action each returns — tell systemd, start stopping, skip the grace.
/// No clock, no I/O (docs/PROTOCOL.md, "Lifecycle").
///
///     starting ──started──▶ ready ──reloadBegan──▶ reloading ──reloadEnded──▶ ready
///        │                    │                        │
///        └──────────────── stopRequested ──────────────┴──▶ stopping ──everyJobAnswered──▶ stopped
///
/// What each state allows:
/// - `starting`: jobs (the socket is not bound yet, so none arrive), reloads (not announced to
///   systemd: it has not heard READY=1 yet).
/// - `ready`, `reloading`: jobs and reloads. Reloads may overlap (SIGHUP and `reload`); the
///   state goes back to `ready` when the last one ends.
/// - `stopping`: no new jobs (`shutting_down`), no reloads (a reload could start pools that
///   stopping would never close); running jobs finish within the grace. A second stop signal
///   skips the rest of the grace.
/// - `stopped`: every job has been answered; only exiting is left.
public struct DaemonLifecycle: Sendable, Equatable {
    public enum State: String, Sendable, Hashable, CaseIterable {
        case starting, ready, reloading, stopping, stopped
    }

    /// Who asked to stop: a second stop *signal* skips the rest of the grace; a second
    /// `drain --stop` only waits for the first.
    public enum StopCause: Sendable, Hashable {
        case signal
        case request
    }

    /// What the shell does after an event.
    public enum Action: Sendable, Hashable {
        case none
        /// READY=1 with a fresh STATUS=.
        case notifyReady
        /// RELOADING=1, then re-read the config.
        case notifyReloading
        /// Re-read the config without telling systemd (it has not heard READY=1 yet).
        case reloadQuietly
        /// Refuse: poold is stopping.
        case refuseReload
        /// STOPPING=1; refuse new jobs, close the pools, stop accepting connections.
        case beginStopping
        /// Cancel the running jobs now instead of at the end of the grace.
        case skipGrace
    }

    public private(set) var state: State = .starting
    /// Whether a second stop signal cut the grace short.
    public private(set) var isGraceSkipped = false
    /// Reloads begun and not ended.
    public private(set) var reloadsRunning = 0

    public init() {}

    /// Whether a new job may start.
    public var acceptsJobs: Bool {
        switch state {
        case .starting, .ready, .reloading: true
        case .stopping, .stopped: false
        }
    }

    /// Whether stopping has begun (or finished).
    public var isStopping: Bool { state == .stopping || state == .stopped }

    /// The control socket is bound and every pool has made its first attempt.
    public mutating func started() -> Action {
        guard state == .starting else { return .none }
        state = reloadsRunning > 0 ? .reloading : .ready
        return .notifyReady
    }

    /// SIGHUP or `reload`.
    public mutating func reloadBegan() -> Action {
        switch state {
        case .stopping, .stopped:
            return .refuseReload
        case .starting:
            reloadsRunning += 1
            return .reloadQuietly
        case .ready, .reloading:
            reloadsRunning += 1
            state = .reloading
            return .notifyReloading
        }
    }

    /// A reload `reloadBegan` let through has ended, applied or not.
    public mutating func reloadEnded() -> Action {
        guard reloadsRunning > 0 else { return .none }
        reloadsRunning -= 1
        guard reloadsRunning == 0, state == .reloading else { return .none }
        state = .ready
        return .notifyReady
    }

    /// SIGTERM, SIGINT or `drain --stop`.
    public mutating func stopRequested(by cause: StopCause) -> Action {
        switch state {
        case .starting, .ready, .reloading:
            state = .stopping
            return .beginStopping
        case .stopping, .stopped:
            guard cause == .signal, !isGraceSkipped else { return .none }
            isGraceSkipped = true
            return state == .stopping ? .skipGrace : .none
        }
    }

    /// Every job has been answered (after `beginStopping`).
    public mutating func everyJobAnswered() {
        if state == .stopping { state = .stopped }
    }
}
