import PoolConfig
import Testing

@Suite struct DurationTests {
    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)),
        ("30s", .seconds(30)),
        ("5m", .seconds(300)),
        ("1h", .seconds(3600)),
        ("1m30s", .seconds(90)),
        ("1h30m", .seconds(5400)),
        ("2h3m4s5ms6us7ns", .seconds(7384) + .milliseconds(5) + .microseconds(6) + .nanoseconds(7)),
        ("100us", .microseconds(100)),
        ("100µs", .microseconds(100)),
        ("100μs", .microseconds(100)),
        ("1.5s", .milliseconds(1500)),
        ("0.25ms", .microseconds(250)),
        ("0s", .zero),
        ("0.0000000001s", .zero),
    ])
    func accepts(_ text: String, _ expected: Duration) {
        #expect(parseDuration(text) == expected)
    }

    @Test(arguments: [
        "", "30", "0", "-5s", "+5s", "5", "5 s", " 5s", "5s ", "5d", "5min", "5S", "s", "ms", "1.s", ".5s",
        "1m1h", "5s5s", "1s1m", "5s-", "1e3s", "99999999999999999999999h", "3000000h", "\u{0}5s",
    ])
    func rejects(_ text: String) {
        #expect(parseDuration(text) == nil)
    }
}
