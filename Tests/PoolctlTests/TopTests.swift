import ControlProtocol
import Testing

@testable import poolctl

/// `poolctl top`'s pure parts: reading the metrics text, percentiles and rates over an
/// interval, and fitting the view to a terminal.
@Suite("poolctl top: metrics, intervals, layout")
struct TopTests {
    /// The `metrics` text as swift-prometheus writes it, cut to one pool's families plus
    /// some the parser must skip.
    static func metrics(pool: String = "main", ok: Int, failed: Int, wait: [Int], exec: [Int]) -> String {
        let bounds = [
            "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "5", "10",
            "30",
        ]
        var text = """
            # HELP poold_control_connections Control connections open.
            # TYPE poold_control_connections gauge
            poold_control_connections 1
            # TYPE poold_jobs_total counter
            poold_jobs_total{pool="\(pool)",outcome="succeeded"} \(ok)
            poold_jobs_total{pool="\(pool)",outcome="failed"} \(failed)
            poold_jobs_total{pool="\(pool)",outcome="timed_out"} 0
            poold_pool_open{pool="\(pool)"} 2

            """
        for (family, counts) in [("poold_job_wait_seconds", wait), ("poold_job_exec_seconds", exec)] {
            text += "# TYPE \(family) histogram\n"
            var cumulative = 0
            for (i, bound) in bounds.enumerated() {
                cumulative += i < counts.count ? counts[i] : 0
                text += "\(family)_bucket{pool=\"\(pool)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += counts.count > bounds.count ? counts[bounds.count] : 0
            text += "\(family)_bucket{pool=\"\(pool)\",le=\"+Inf\"} \(cumulative)\n"
            text += "\(family)_sum{pool=\"\(pool)\"} 0.5\n\(family)_count{pool=\"\(pool)\"} \(cumulative)\n"
        }
        return text
    }

    /// Observation counts per bucket (the 17 finite ones, then +Inf) with `n` in bucket `i`.
    static func only(_ i: Int, _ n: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: 18)
        counts[i] = n
        return counts
    }

    // MARK: The metrics text

    @Test func metricsTextGivesEachPoolsCountersAndHistograms() throws {
        let text = Self.metrics(ok: 7, failed: 2, wait: Self.only(3, 9), exec: Self.only(4, 8))
        let counters = try #require(PoolCounters.parse(metrics: text)["main"])
        #expect(counters.jobs["succeeded"] == 7)
        #expect(counters.jobs["failed"] == 2)
        #expect(counters.jobs["timed_out"] == 0)
        let wait = try #require(counters.wait)
        #expect(wait.bounds.count == 18)
        #expect(wait.bounds.first == 0.0001)
        #expect(wait.bounds.last == .infinity)
        #expect(wait.total == 9)
        #expect(wait.counts[2] == 0 && wait.counts[3] == 9, "cumulative: nothing at or below 0.5ms, all 9 at or below 1ms")
        #expect(counters.exec?.total == 8)
    }

    @Test func labelValuesMayHoldEscapesCommasAndBraces() {
        let sample = PrometheusText.parse(#"poold_jobs_total{pool="a\"b,c}",outcome="failed"} 3"#)
        #expect(sample == PrometheusText.Sample(name: "poold_jobs_total", labels: ["pool": #"a"b,c}"#, "outcome": "failed"], value: 3))
        #expect(PrometheusText.parse("poold_control_connections 1 1700000000")?.value == 1, "a timestamp is not the value")
        #expect(PrometheusText.parse(#"broken{pool="x} 1"#) == nil)
        #expect(PrometheusText.parse("no_value") == nil)
    }

    // MARK: Percentiles over an interval

    /// Whether `q` is a value within a nanosecond of `seconds`.
    static func close(_ q: CumulativeHistogram.Quantile?, _ seconds: Double) -> Bool {
        guard case .seconds(let s)? = q else { return false }
        return abs(s - seconds) < 1e-9
    }

    @Test func intervalPercentilesComeFromTheBucketDifferencesInterpolated() throws {
        // Before: 100 slow jobs (5s–10s). In the interval: 10 more, all between 1ms and 2ms.
        let before = PoolCounters.parse(metrics: Self.metrics(ok: 100, failed: 0, wait: Self.only(15, 100), exec: []))
        var afterWait = Self.only(15, 100)
        afterWait[4] = 10
        let after = PoolCounters.parse(metrics: Self.metrics(ok: 110, failed: 0, wait: afterWait, exec: []))
        let interval = try #require(after["main"]?.wait?.since(before["main"]?.wait))
        #expect(interval.total == 10)
        // Rank 5 of 10, all in (1ms, 2ms]: halfway through the bucket.
        #expect(Self.close(interval.quantile(0.5), 0.0015))
        // Rank 9.9 of 10: 99% of the way through it. Cumulatively the p99 would be in 5s–10s.
        #expect(Self.close(interval.quantile(0.99), 0.00199))
        #expect(Self.close(after["main"]?.wait?.quantile(0.99), 5 + 5 * (108.9 - 10) / 100), "the cumulative p99 is another story")
    }

    @Test func aPercentileSpanningBucketsAndTheFirstBucketStartingAtZero() {
        // 4 observations ≤ 100µs, 4 in (100µs, 250µs].
        let h = CumulativeHistogram(bounds: [0.0001, 0.00025, .infinity], counts: [4, 8, 8])
        #expect(Self.close(h.quantile(0.25), 0.00005), "rank 2 of 4 in [0, 100µs]")
        #expect(Self.close(h.quantile(0.75), 0.0001 + 0.00015 * 0.5), "rank 6: 2 of 4 into the second bucket")
    }

    @Test func beyondTheLargestBucketIsOnlyAboveIt() {
        let h = CumulativeHistogram(bounds: [1, 30, .infinity], counts: [1, 1, 10])
        #expect(h.quantile(0.5) == .above(30))
        #expect(TopView.quantile(h.quantile(0.99)) == ">30s")
    }

    @Test func noObservationsInTheIntervalIsNoPercentile() {
        let h = CumulativeHistogram(bounds: [0.001, .infinity], counts: [5, 6])
        let interval = h.since(h)
        #expect(interval.total == 0)
        #expect(interval.quantile(0.5) == nil)
        #expect(TopView.quantile(interval.quantile(0.5)) == "-")
    }

    @Test func countersThatWentDownStartAgainFromZero() {
        let before = CumulativeHistogram(bounds: [0.001, .infinity], counts: [50, 60])
        let after = CumulativeHistogram(bounds: [0.001, .infinity], counts: [2, 3])
        #expect(after.since(before) == after, "poold restarted: what it counted since is the interval")
        let other = CumulativeHistogram(bounds: [0.002, .infinity], counts: [1, 1])
        #expect(after.since(other) == after, "other buckets cannot be subtracted")
    }

    // MARK: Rates

    static func snapshot(at instant: ContinuousClock.Instant, metrics: String, pools: [TopSnapshot.Pool]) -> TopSnapshot {
        TopSnapshot(at: instant, daemonState: "ready", pools: pools, counters: PoolCounters.parse(metrics: metrics))
    }

    static func pool(_ name: String, lastError: String? = nil) -> TopSnapshot.Pool {
        TopSnapshot.Pool(
            name: name, kind: "sqlite", state: "ready", min: 1, max: 4, open: 2, idle: 1, leased: 1, waiting: 0, lastError: lastError)
    }

    @Test func ratesAreCounterDifferencesOverTheTimeBetweenSamples() throws {
        let start = ContinuousClock.now
        let first = Self.snapshot(at: start, metrics: Self.metrics(ok: 10, failed: 1, wait: [], exec: []), pools: [Self.pool("main")])
        let second = Self.snapshot(
            at: start + .seconds(2), metrics: Self.metrics(ok: 16, failed: 2, wait: Self.only(0, 7), exec: Self.only(1, 6)),
            pools: [Self.pool("main")])
        let row = try #require(TopRow.rows(previous: first, current: second).first)
        #expect(row.seconds == 2)
        #expect(row.jobs?["succeeded"] == 6)
        #expect(row.rate("succeeded") == 3)
        #expect(row.rate("failed") == 0.5)
        #expect(row.rate("cancelled") == 0)
        #expect(Self.close(row.execP50, 0.000175))

        let firstOnly = try #require(TopRow.rows(previous: nil, current: second).first)
        #expect(firstOnly.rate("succeeded") == nil, "one sample has no interval")
        #expect(TopView.rate(firstOnly.rate("succeeded")) == "-")

        let restarted = Self.snapshot(
            at: start + .seconds(4), metrics: Self.metrics(ok: 1, failed: 0, wait: [], exec: []), pools: [Self.pool("main")])
        let after = try #require(TopRow.rows(previous: second, current: restarted).first)
        #expect(after.jobs?["succeeded"] == 1, "after a reset the new count is the interval's")
        #expect(TopRow.outcomes.allSatisfy { (after.rate($0) ?? -1) >= 0 })
    }

    @Test(arguments: [(0.0, "0"), (0.04, "0.0"), (0.45, "0.5"), (9.96, "10.0"), (12.4, "12"), (3456, "3.5k"), (123_456, "123k")])
    func rateText(value: Double, text: String) {
        #expect(TopView.rate(value) == text)
    }

    // MARK: Layout

    static func rows() -> [TopRow] {
        let start = ContinuousClock.now
        let name = "a-pool-with-a-name-far-longer-than-any-column-should-be"
        let pools = [Self.pool("main"), Self.pool(name, lastError: "could not open main.db: unable to open database file")]
        let first = Self.snapshot(at: start, metrics: Self.metrics(ok: 10, failed: 1, wait: [], exec: []), pools: pools)
        let second = Self.snapshot(
            at: start + .seconds(1), metrics: Self.metrics(ok: 16, failed: 2, wait: Self.only(0, 7), exec: Self.only(1, 6)), pools: pools)
        return TopRow.rows(previous: first, current: second)
    }

    @Test func withoutAWidthEveryColumnAndWholeNames() {
        let lines = TopView.render(title: "t", rows: Self.rows(), width: nil)
        #expect(lines.count == 4)
        for header in [
            "POOL", "STATE", "OPEN", "IDLE", "LEASED", "WAITING", "OK/s", "FAILED/s", "WAIT p50", "EXEC p99", "OVERLOAD/s", "LAST ERROR",
        ] {
            #expect(lines[1].contains(header))
        }
        #expect(lines[3].hasPrefix("a-pool-with-a-name-far-longer-than-any-column-should-be "))
        #expect(lines[3].hasSuffix("could not open main.db: unable to open database file"))
        #expect(lines[2].contains(" 6.0 "), "main's 6 jobs in 1s")
    }

    @Test(arguments: [200, 140, 80, 40, 20, 8, 1])
    func noLineIsLongerThanTheWidth(width: Int) {
        let lines = TopView.render(title: "poold ready · 2 pools · every 1s · q quits", rows: Self.rows(), width: width)
        #expect(lines.count >= 4)
        for line in lines { #expect(line.count <= width, "\(line.debugDescription) at \(width) columns") }
        #expect(lines.allSatisfy { !$0.contains("\n") })
    }

    @Test func narrowTerminalsDropColumnsFromTheRightAndCutNames() {
        let wide = TopView.render(title: "t", rows: Self.rows(), width: 200)
        #expect(wide.count == 4)
        #expect(wide[1].contains("LAST ERROR"))
        #expect(wide[3].hasPrefix("a-pool-with-a-name-far-…"), "names are cut at 24 columns")
        #expect(wide[3].contains("could not open main.db"))

        let forty = TopView.render(title: "t", rows: Self.rows(), width: 40)
        #expect(forty[1].hasPrefix("POOL"))
        #expect(forty[1].contains("STATE"))
        #expect(!forty[1].contains("WAIT p50") && !forty[1].contains("LAST ERROR"), "the rightmost columns go first: \(forty[1])")
        #expect(forty[3].hasPrefix("a-pool-with-a-name-far-…"))
        #expect(
            Array(forty.dropFirst(4)) == ["", "LAST ERROR", "a-pool-with-a-name-far-longer-than-any-…"],
            "without its column the last error gets a line under the table: \(forty)")

        let twenty = TopView.render(title: "t", rows: Self.rows(), width: 20)
        #expect(twenty[1].hasPrefix("POOL") && !twenty[1].contains("OPEN"))
        #expect(twenty[3].contains("…"))

        let tiny = TopView.render(title: "t", rows: Self.rows(), width: 8)
        #expect(tiny[3] == "a-pool-…", "the first column alone, cut to the width")
    }

    @Test func aShortTerminalSaysWhatItHides() {
        let lines = TopView.render(title: "t", rows: Self.rows(), width: 200, height: 3)
        #expect(lines.count == 3)
        #expect(lines[2].hasPrefix("… 2 more lines"))
        let narrow = TopView.render(title: "t", rows: Self.rows(), width: 40, height: 5)
        #expect(narrow.count == 5)
        #expect(narrow[4] == "… 3 more lines: enlarge the terminal")
    }

    @Test func controlCharactersInAnErrorCannotReachTheTerminal() {
        #expect(TopView.fit("bad\u{1B}[2Jthing\nnext", 80) == "bad [2Jthing next")
        #expect(TopView.fit("abcdef", 4) == "abc…")
        #expect(TopView.fit("abcdef", 1) == "a")
        #expect(TopView.fit("abcdef", 0) == "")
    }

    @Test func theJSONSnapshotHasTheIntervalsCountsAndMicroseconds() throws {
        let rows = Self.rows()
        guard case .object(let top) = TopView.json(Self.snapshot(at: .now, metrics: "", pools: []), rows: rows),
            case .array(let pools)? = top["pools"], case .object(let main)? = pools.first,
            case .object(let jobs)? = main["jobs"], case .object(let exec)? = main["exec_us"]
        else {
            Issue.record("unexpected shape")
            return
        }
        #expect(top["interval_s"] == .double(1))
        #expect(jobs["succeeded"] == .int(6))
        #expect(jobs["failed"] == .int(1))
        #expect(exec["p50"] == .int(175))
        #expect(main["open"] == .int(2))
    }
}
