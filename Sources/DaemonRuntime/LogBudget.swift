/// A token bucket for log lines that a peer can cause at will (a worker's stderr, denied
/// requests): `burst` lines at once and `perSecond` after that. Lines it refuses are counted,
/// so the next line let through can say how many were suppressed.
package struct LogBudget: Sendable {
    let burst: Double
    let perSecond: Double
    private var tokens: Double
    private var refilled: ContinuousClock.Instant
    /// Lines refused since the last one let through.
    private(set) var suppressed = 0

    package init(burst: Double, perSecond: Double, now: ContinuousClock.Instant = .now) {
        self.burst = burst
        self.perSecond = perSecond
        self.tokens = burst
        self.refilled = now
    }

    /// Whether a line may be logged at `now`, and if so how many were suppressed before it.
    package mutating func take(at now: ContinuousClock.Instant) -> (allowed: Bool, suppressedBefore: Int) {
        let elapsed = refilled.duration(to: now)
        refilled = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + max(0, seconds) * perSecond)
        guard tokens >= 1 else {
            suppressed += 1
            return (false, 0)
        }
        tokens -= 1
        defer { suppressed = 0 }
        return (true, suppressed)
    }

    /// How many of `count` lines arriving together at `now` may be logged (the first ones), and
    /// how many were suppressed before them; the rest are counted as suppressed.
    package mutating func take(_ count: Int, at now: ContinuousClock.Instant) -> (allowed: Int, suppressedBefore: Int) {
        guard count > 0 else { return (0, 0) }
        let (first, before) = take(at: now)
        guard first else {
            suppressed += count - 1
            return (0, 0)
        }
        let more = min(count - 1, Int(tokens))
        tokens -= Double(more)
        suppressed = count - 1 - more
        return (1 + more, before)
    }

    /// The count of lines refused since the last one let through, reset to zero (for a
    /// closing summary).
    package mutating func takeSuppressed() -> Int {
        defer { suppressed = 0 }
        return suppressed
    }
}
