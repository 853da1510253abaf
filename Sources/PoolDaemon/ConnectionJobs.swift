import Synchronization

/// The jobs one connection has in flight, so that a disconnect cancels them.
final class ConnectionJobs: Sendable {
    private let jobs = Mutex<[Int64: CancelSignal]>([:])

    func add(_ job: Int64, _ signal: CancelSignal) {
        jobs.withLock { $0[job] = signal }
    }

    func remove(_ job: Int64) {
        jobs.withLock { _ = $0.removeValue(forKey: job) }
    }

    func cancelAll() {
        let signals = jobs.withLock { Array($0.values) }
        for signal in signals { signal.fire(.disconnected) }
    }
}
