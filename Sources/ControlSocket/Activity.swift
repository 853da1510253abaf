import PoolKit
import Synchronization

/// Something that happens now and then — a connection accepted, a request line read — for
/// waiting until it has stopped happening: the event raced against a quiet period on a clock,
/// not sampled on a timer.
package final class Activity: Sendable {
    /// Opened by the next `happened()`; armed only while someone waits, so that the hot path
    /// costs one uncontended lock.
    private let next = Mutex<Latch?>(nil)

    func happened() {
        next.withLock { latch in
            defer { latch = nil }
            return latch
        }?.open()
    }

    /// True if nothing happened for `quiet`, false as soon as something does. Throws
    /// `CancellationError` if the task is cancelled first.
    func isQuiet<C: Clock>(for quiet: Duration, clock: C) async throws -> Bool where C.Duration == Duration {
        let latch = Latch()
        next.withLock { $0 = latch }
        do {
            try await withTimeout(quiet, clock: clock) { try await latch.wait() }
            return false
        } catch is TimeoutError {
            return true
        }
    }
}
