import Testing

@testable import DaemonRuntime

/// The log budget for lines a peer can cause at will: a burst, then a steady rate, and the
/// count of what was held back.
struct LogBudgetTests {
    @Test func aBurstThenTheRateThenTheSuppressedCount() {
        let start = ContinuousClock.now
        var budget = LogBudget(burst: 3, perSecond: 2, now: start)
        let burst = (0..<5).map { _ in budget.take(at: start).allowed }
        #expect(burst == [true, true, true, false, false])
        #expect(budget.suppressed == 2)
        // Half a second refills one line, which reports the two held back.
        let next = budget.take(at: start + .milliseconds(500))
        #expect(next.allowed && next.suppressedBefore == 2)
        #expect(budget.take(at: start + .milliseconds(500)).allowed == false)
        // A long quiet refills no more than the burst.
        let later = start + .seconds(60)
        #expect((0..<4).map { _ in budget.take(at: later).allowed } == [true, true, true, false])
        #expect(budget.takeSuppressed() == 1)
        #expect(budget.takeSuppressed() == 0)
    }
}
