import Histogram
import PoolCore
public import Synchronization

/// How a job ended, as counted in statistics and logged as `POOLD_OUTCOME`.
public enum JobOutcome: String, Sendable, Hashable, CaseIterable {
    case succeeded
    case failed
    case timedOut = "timed_out"
    case cancelled
    case overloaded

    /// The outcome a job that threw `error` (or nil: returned) ends with.
    public init(_ error: (any Error)?) {
        guard let error else {
            self = .succeeded
            return
        }
        switch error {
        case let classified as any OutcomeClassified: self = classified.outcome
        case is TimeoutError: self = .timedOut
        case is CancellationError: self = .cancelled
        case let error as PoolError:
            switch error.code {
            case .timeout, .poolTimeout: self = .timedOut
            case .cancelled: self = .cancelled
            case .overloaded: self = .overloaded
            default: self = .failed
            }
        default: self = .failed
        }
    }
}

/// An error that knows which outcome it stands for (e.g. a job stopped by `cancel` is
/// `cancelled`, whatever type carries that news).
public protocol OutcomeClassified: Error {
    var outcome: JobOutcome { get }
}

/// Marks the phases of one job. Created when the job is accepted; `acquiring()` when it
/// starts waiting for a resource, `running()` when it has one.
///
/// Marks are kept as offsets from the start, so the lock guards plain durations and nothing
/// generic has to be instantiated at run time on the job path.
public final class JobStopwatch<C: Clock>: Sendable where C.Duration == Duration {
    @usableFromInline
    struct Marks: Sendable {
        @usableFromInline var acquiring: Duration?
        @usableFromInline var running: Duration?
        @usableFromInline var end: Duration?

        @inlinable init() {}
    }

    @usableFromInline let clock: C
    @usableFromInline let start: C.Instant
    @usableFromInline let marks = Mutex(Marks())

    @inlinable
    public init(clock: C) {
        self.clock = clock
        self.start = clock.now
    }

    /// A stopwatch whose job began at `start` (when its request was read), so that the queue
    /// phase covers everything between reading the request and asking for a resource.
    @inlinable
    public init(clock: C, startedAt start: C.Instant) {
        self.clock = clock
        self.start = start
    }

    @inlinable
    var elapsed: Duration { start.duration(to: clock.now) }

    @inlinable
    public func acquiring() {
        let now = elapsed
        marks.withLock { if $0.acquiring == nil { $0.acquiring = now } }
    }

    @inlinable
    public func running() {
        let now = elapsed
        marks.withLock { if $0.running == nil { $0.running = now } }
    }

    /// Ends the job (the first call wins) and returns its timing so far.
    @inlinable
    @discardableResult
    public func finish() -> JobTiming {
        let now = elapsed
        return marks.withLock { marks in
            if marks.end == nil { marks.end = now }
            return Self.timing(marks, now: now)
        }
    }

    @inlinable
    public var timing: JobTiming {
        let now = elapsed
        return marks.withLock { Self.timing($0, now: now) }
    }

    /// Whether the job got as far as waiting for, or running on, a resource.
    @inlinable
    public var phases: (acquired: Bool, ran: Bool) {
        marks.withLock { ($0.acquiring != nil, $0.running != nil) }
    }

    @inlinable
    static func timing(_ marks: Marks, now: Duration) -> JobTiming {
        let end = marks.end ?? now
        let acquiring = marks.acquiring ?? end
        let running = marks.running ?? end
        return JobTiming(
            queue: acquiring,
            acquire: marks.acquiring == nil ? .zero : running - acquiring,
            exec: marks.running == nil ? .zero : end - running
        )
    }
}

/// Per-pool counts per outcome and latency distributions (HdrHistogram, microseconds).
public final class PoolStatistics: Sendable {
    public struct Percentiles: Sendable, Hashable, Codable {
        public var p50: UInt64
        public var p90: UInt64
        public var p99: UInt64
        public var max: UInt64
    }

    public struct Snapshot: Sendable, Hashable {
        public var counts: [JobOutcome: UInt64]
        public var queueMicros: Percentiles
        public var acquireMicros: Percentiles
        public var execMicros: Percentiles

        public func count(_ outcome: JobOutcome) -> UInt64 { counts[outcome, default: 0] }
    }

    private struct Data: Sendable {
        var counts: [JobOutcome: UInt64] = [:]
        // One hour in microseconds, three significant digits: about 100 KiB per histogram.
        var queue = Histogram<UInt32>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var acquire = Histogram<UInt32>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var exec = Histogram<UInt32>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    }

    private let data = Mutex(Data())

    public init() {}

    /// Counts one job. Phases it never reached are not recorded in their histograms.
    public func record(_ outcome: JobOutcome, _ timing: JobTiming, acquired: Bool = true, ran: Bool = true) {
        func micros(_ d: Duration) -> UInt64 { UInt64(clamping: Swift.max(d.microseconds, 0)) }
        data.withLock { data in
            data.counts[outcome, default: 0] += 1
            _ = data.queue.record(Swift.min(micros(timing.queue), 3_600_000_000))
            if acquired { _ = data.acquire.record(Swift.min(micros(timing.acquire), 3_600_000_000)) }
            if ran { _ = data.exec.record(Swift.min(micros(timing.exec), 3_600_000_000)) }
        }
    }

    public var snapshot: Snapshot {
        func percentiles(_ h: Histogram<UInt32>) -> Percentiles {
            guard h.totalCount > 0 else { return Percentiles(p50: 0, p90: 0, p99: 0, max: 0) }
            return Percentiles(
                p50: h.valueAtPercentile(50), p90: h.valueAtPercentile(90),
                p99: h.valueAtPercentile(99), max: h.max
            )
        }
        return data.withLock { data in
            Snapshot(
                counts: data.counts, queueMicros: percentiles(data.queue),
                acquireMicros: percentiles(data.acquire), execMicros: percentiles(data.exec)
            )
        }
    }
}

/// Runs one job inside a measurement scope: whatever way `body` ends, the job is counted in
/// `statistics` with its outcome and the phases `stopwatch` saw.
@inlinable
public func withMeasurement<C: Clock, R>(
    _ stopwatch: JobStopwatch<C>,
    into statistics: PoolStatistics,
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> R
) async throws -> R {
    do {
        let result = try await body()
        let timing = stopwatch.finish()
        let phases = stopwatch.phases
        statistics.record(.succeeded, timing, acquired: phases.acquired, ran: phases.ran)
        return result
    } catch {
        let timing = stopwatch.finish()
        let phases = stopwatch.phases
        statistics.record(JobOutcome(error), timing, acquired: phases.acquired, ran: phases.ran)
        throw error
    }
}
