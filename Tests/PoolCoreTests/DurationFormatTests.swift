import PoolCore
import Testing

@Suite("Durations, limits and backoff")
struct DurationFormatTests {

    // MARK: Duration

    @Test(
        "microseconds are whole and saturate",
        arguments: [
            (Duration.zero, Int64(0)),
            (.nanoseconds(999), 0),
            (.nanoseconds(1500), 1),
            (.microseconds(1), 1),
            (.milliseconds(1), 1000),
            (.seconds(1), 1_000_000),
            (.milliseconds(2500), 2_500_000),
            (.seconds(-1), -1_000_000),
            (.seconds(Int64.max), Int64.max),
            (.seconds(Int64.min), Int64.min),
            (.seconds(Int64.max / 1_000_000), (Int64.max / 1_000_000) * 1_000_000),
        ]
    )
    func microseconds(duration: Duration, expected: Int64) {
        #expect(duration.microseconds == expected)
    }

    @Test("milliseconds and seconds")
    func millisecondsAndSeconds() {
        #expect(Duration.microseconds(1999).milliseconds == 1)
        #expect(Duration.seconds(3).milliseconds == 3000)
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.zero.seconds == 0)
        #expect(Duration.seconds(Int64.max).milliseconds == Int64.max / 1000)
    }

    @Test(
        "a limit reads the way an operator writes it",
        arguments: [
            (Duration.zero, "0µs"),
            (.microseconds(500), "500µs"),
            (.microseconds(999), "999µs"),
            (.milliseconds(1), "1ms"),
            (.milliseconds(250), "250ms"),
            (.milliseconds(1500), "1500ms"),
            (.seconds(1), "1s"),
            (.seconds(2), "2s"),
            (.seconds(59), "59s"),
            (.seconds(60), "1m"),
            (.seconds(90), "1m30s"),
            (.seconds(3600), "1h"),
            (.seconds(3661), "1h1m1s"),
            (.seconds(7200), "2h"),
            (.seconds(86_400), "24h"),
        ]
    )
    func limitDescription(duration: Duration, expected: String) {
        #expect(duration.limitDescription == expected)
    }

    @Test(
        "a limit with sub-millisecond precision is never misstated",
        arguments: [Duration.microseconds(1500), .microseconds(2_500), .microseconds(1_000_500), .microseconds(1_234_567)]
    )
    func limitDescriptionIsExact(duration: Duration) throws {
        // Whatever the unit, reading the text back must give the configured value.
        let text = duration.limitDescription
        let parsed = try #require(parse(text), "\(text) does not parse")
        #expect(parsed == duration.microseconds, "\(duration.microseconds)µs described as \(text)")
    }

    @Test(
        "an elapsed span has one decimal, in ms under a second",
        arguments: [
            (Duration.zero, "0µs"),
            (.microseconds(999), "999µs"),
            (.milliseconds(1), "1.0ms"),
            (.microseconds(1500), "1.5ms"),
            (.microseconds(12_340), "12.3ms"),
            (.milliseconds(250), "250.0ms"),
            (.microseconds(999_940), "999.9ms"),
            (.seconds(1), "1.0s"),
            (.milliseconds(2500), "2.5s"),
            (.seconds(5), "5.0s"),
            (.milliseconds(59_900), "59.9s"),
            (.seconds(60), "1m"),
            (.seconds(90), "1m30s"),
            (.seconds(3600), "1h"),
        ]
    )
    func elapsedDescription(duration: Duration, expected: String) {
        #expect(duration.elapsedDescription == expected)
    }

    // MARK: Limits

    @Test("the default limits are valid, and min 0 / health_check_after 0 / jitter 0 and 1 are allowed")
    func validLimits() {
        #expect(PoolLimits().validate() == nil)
        #expect(PoolLimits(minResources: 0, maxResources: 1, maxWaiters: 0).validate() == nil)
        #expect(PoolLimits(minResources: 4, maxResources: 4).validate() == nil)
        #expect(PoolLimits(idleTimeout: nil, maxLifetime: nil, healthCheckAfter: .zero).validate() == nil)
        #expect(PoolLimits(backoffInitial: .seconds(1), backoffMax: .seconds(1), backoffJitter: 0).validate() == nil)
        #expect(PoolLimits(backoffJitter: 1).validate() == nil)
        #expect(PoolLimits(degradedAfter: 1).validate() == nil)
    }

    static let invalid: [(String, PoolLimits, String)] = [
        ("max 0", PoolLimits(minResources: 0, maxResources: 0), "max must be at least 1 (got 0)"),
        ("min negative", PoolLimits(minResources: -1), "min must not be negative (got -1)"),
        ("min above max", PoolLimits(minResources: 5, maxResources: 4), "min (5) must not exceed max (4)"),
        ("max_waiters negative", PoolLimits(maxWaiters: -1), "max_waiters must not be negative (got -1)"),
        ("acquire_timeout zero", PoolLimits(acquireTimeout: .zero), "acquire_timeout must be positive"),
        ("acquire_timeout negative", PoolLimits(acquireTimeout: .seconds(-1)), "acquire_timeout must be positive"),
        ("idle_timeout zero", PoolLimits(idleTimeout: .zero), "idle_timeout must be positive"),
        ("max_lifetime negative", PoolLimits(maxLifetime: .seconds(-5)), "max_lifetime must be positive"),
        ("health_check_after negative", PoolLimits(healthCheckAfter: .milliseconds(-1)), "health_check_after must not be negative"),
        ("backoff zero", PoolLimits(backoffInitial: .zero), "backoff must be positive, and its maximum no less than its first delay"),
        (
            "backoff max below initial", PoolLimits(backoffInitial: .seconds(2), backoffMax: .seconds(1)),
            "backoff must be positive, and its maximum no less than its first delay"
        ),
        ("jitter above 1", PoolLimits(backoffJitter: 1.5), "backoff jitter must be between 0 and 1"),
        ("jitter negative", PoolLimits(backoffJitter: -0.1), "backoff jitter must be between 0 and 1"),
        ("jitter NaN", PoolLimits(backoffJitter: .nan), "backoff jitter must be between 0 and 1"),
        ("degraded_after 0", PoolLimits(degradedAfter: 0), "degraded_after must be at least 1"),
    ]

    @Test("invalid limits are named in words an operator can act on", arguments: invalid)
    func invalidLimits(name: String, limits: PoolLimits, problem: String) {
        #expect(limits.validate() == problem, "\(name)")
    }

    @Test(
        "backoff doubles from the first delay and is capped at the maximum",
        arguments: [
            (0, 100), (1, 100), (2, 200), (3, 400), (4, 800), (5, 1600), (6, 3200), (7, 5000), (8, 5000),
            (64, 5000), (Int.max, 5000),
        ]
    )
    func backoff(failures: Int, expectedMilliseconds: Int) {
        let limits = PoolLimits(backoffInitial: .milliseconds(100), backoffMax: .seconds(5))
        #expect(limits.backoff(afterFailures: failures) == .milliseconds(expectedMilliseconds))
    }

    @Test("backoff never exceeds its maximum, even when the maximum is not a doubling of the first delay")
    func backoffCap() {
        let limits = PoolLimits(backoffInitial: .milliseconds(300), backoffMax: .milliseconds(1000))
        let delays = (1...10).map { limits.backoff(afterFailures: $0) }
        #expect(delays == [300, 600, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000].map { .milliseconds($0) })
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 }, "never shrinks")
    }

    @Test("error codes keep their protocol strings, and only the transient ones are retryable")
    func errorCodes() {
        #expect(ErrorCode.poolTimeout.rawValue == "pool_timeout")
        #expect(ErrorCode.shuttingDown.rawValue == "shutting_down")
        #expect(ErrorCode.badRequest.rawValue == "bad_request")
        #expect(ErrorCode.overloaded.rawValue == "overloaded")
        #expect(ErrorCode.backend.rawValue == "backend")
        #expect(Set(ErrorCode.allCases.filter(\.isRetryable)) == [.overloaded, .poolTimeout, .shuttingDown, .backend])
        #expect(PoolError(.overloaded, "busy").description == "overloaded: busy")
    }
}

/// Reads a `limitDescription` back as microseconds: `1h1m1s`, `250ms`, `1.5ms`, `500µs`, `1.235s`.
private func parse(_ text: String) -> Int64? {
    let units: [(String, Double)] = [("µs", 1), ("ms", 1000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)]
    var rest = Substring(text)
    var total = 0.0
    while !rest.isEmpty {
        let number = rest.prefix { $0.isNumber || $0 == "." }
        guard !number.isEmpty, let value = Double(number) else { return nil }
        rest = rest.dropFirst(number.count)
        guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
        rest = rest.dropFirst(unit.count)
        total += value * scale
    }
    return Int64(total.rounded())
}
