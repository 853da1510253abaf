/// The few things `poolctl top` reads from the `metrics` op's Prometheus text: the cumulative
/// job counters and latency histograms of each pool. Everything else in the text is skipped,
/// so families added to the exposition later change nothing here.
enum PrometheusText {
    /// One sample line: `name{label="value",…} 12.5`.
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// The sample lines of `text`; comments, blank lines and lines that do not parse are skipped
    /// (a line this parser cannot read must not stop `top`, which needs only a few families).
    static func samples(_ text: String) -> [Sample] {
        var out: [Sample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#") {
            if let sample = parse(Substring(line)) { out.append(sample) }
        }
        return out
    }

    static func parse(_ line: Substring) -> Sample? {
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        guard !name.isEmpty else { return nil }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while let first = rest.first, first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { return nil }
                let key = rest[..<equals].trimmingLeadingCommaAndSpace()
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "\"" {
                        closed = true
                        break
                    }
                    if c == "\\", let escaped = rest.first {
                        rest = rest.dropFirst()
                        value.append(escaped == "n" ? "\n" : escaped)
                    } else {
                        value.append(c)
                    }
                }
                guard closed else { return nil }
                labels[String(key)] = value
                if rest.first == "," { rest = rest.dropFirst() }
            }
            guard rest.first == "}" else { return nil }
            rest = rest.dropFirst()
        }
        // The value, then an optional timestamp.
        let fields = rest.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = fields.first, let value = number(first) else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }

    static func number(_ text: Substring) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        default: Double(text)
        }
    }
}

extension Substring {
    fileprivate func trimmingLeadingCommaAndSpace() -> Substring {
        drop { $0 == "," || $0 == " " }
    }
}

/// A Prometheus histogram's cumulative buckets: `counts[i]` observations were at most
/// `bounds[i]` seconds; the last bound is `+Inf`, and its count is every observation.
struct CumulativeHistogram: Equatable {
    var bounds: [Double]
    var counts: [Double]

    var total: Double { counts.last ?? 0 }

    /// The observations made between `earlier` and `self`: the differences of the counts. When
    /// there is no earlier histogram (a pool that had recorded nothing yet), or it does not fit
    /// (other buckets, or fewer observations now: the counters started again), everything in
    /// `self` counts, as Prometheus's `increase()` treats a counter reset.
    func since(_ earlier: CumulativeHistogram?) -> CumulativeHistogram {
        guard let earlier, earlier.bounds == bounds, earlier.total <= total else { return self }
        var difference = self
        for i in counts.indices { difference.counts[i] = Swift.max(0, counts[i] - earlier.counts[i]) }
        return difference
    }

    /// Where a latency percentile falls.
    enum Quantile: Equatable {
        /// About this many seconds.
        case seconds(Double)
        /// Beyond the largest finite bucket (this many seconds): the histogram cannot say more.
        case above(Double)
    }

    /// The `q`-quantile (0…1) of the observations, nil when there are none. Like Prometheus's
    /// `histogram_quantile`: find the bucket that holds the observation of rank `q × total`,
    /// then interpolate linearly between its lower and upper bound, as if its observations
    /// were spread evenly inside it (the first bucket starts at 0). The answer is as precise
    /// as the buckets are narrow; in the `+Inf` bucket it is only "above the largest bound".
    func quantile(_ q: Double) -> Quantile? {
        let total = self.total
        guard total > 0, !bounds.isEmpty, bounds.count == counts.count else { return nil }
        let rank = Swift.min(Swift.max(q, 0), 1) * total
        guard let i = counts.firstIndex(where: { $0 >= rank && $0 > 0 }) else { return nil }
        let upper = bounds[i]
        let lower = i == 0 ? 0 : bounds[i - 1]
        if upper == .infinity {
            return .above(lower)
        }
        let below = i == 0 ? 0 : counts[i - 1]
        let inside = counts[i] - below
        guard inside > 0 else { return .seconds(upper) }
        return .seconds(lower + (upper - lower) * (rank - below) / inside)
    }
}

/// One pool's cumulative job counters and latency histograms from the `metrics` text.
struct PoolCounters: Equatable {
    /// Jobs finished by outcome (`succeeded`, `failed`, `timed_out`, `cancelled`, `overloaded`).
    var jobs: [String: Double] = [:]
    /// Queue plus acquire time of every job, including refused ones (0).
    var wait: CumulativeHistogram?
    /// Time on a resource, of the jobs that got one.
    var exec: CumulativeHistogram?

    /// Every pool's counters in `text` (the families `poold_jobs_total`,
    /// `poold_job_wait_seconds` and `poold_job_exec_seconds`), keyed by pool name.
    static func parse(metrics text: String) -> [String: PoolCounters] {
        var out: [String: PoolCounters] = [:]
        var buckets: [String: [String: [(Double, Double)]]] = [:]
        for sample in PrometheusText.samples(text) {
            guard let pool = sample.labels["pool"] else { continue }
            switch sample.name {
            case "poold_jobs_total":
                if let outcome = sample.labels["outcome"] { out[pool, default: PoolCounters()].jobs[outcome, default: 0] += sample.value }
            case "poold_job_wait_seconds_bucket", "poold_job_exec_seconds_bucket":
                guard let le = sample.labels["le"], let bound = PrometheusText.number(le[...]) else { continue }
                buckets[sample.name, default: [:]][pool, default: []].append((bound, sample.value))
            default:
                continue
            }
        }
        for (family, pools) in buckets {
            for (pool, list) in pools {
                let sorted = list.sorted { $0.0 < $1.0 }
                guard sorted.last?.0 == .infinity else { continue }
                let histogram = CumulativeHistogram(bounds: sorted.map(\.0), counts: sorted.map(\.1))
                if family == "poold_job_wait_seconds_bucket" {
                    out[pool, default: PoolCounters()].wait = histogram
                } else {
                    out[pool, default: PoolCounters()].exec = histogram
                }
            }
        }
        return out
    }
}
