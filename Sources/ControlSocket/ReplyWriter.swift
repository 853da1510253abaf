import NIOCore
import Synchronization

/// Coalesces one connection's answers: those ready at the same moment go out in one write
/// and one flush on the event loop, instead of a write, a flush and a wakeup each.
package final class ReplyWriter: Sendable {
    private struct Pending {
        var bytes: [UInt8] = []
        var completions: [@Sendable () -> Void] = []
        var scheduled = false
    }

    private let channel: any Channel
    private let pending = Mutex(Pending())

    init(channel: any Channel) {
        self.channel = channel
    }

    /// Queues one answer line; `then` runs once the socket has taken it (or the connection
    /// is gone).
    func send(_ reply: [UInt8], then completion: @escaping @Sendable () -> Void) {
        let schedule = pending.withLock { pending -> Bool in
            pending.bytes.append(contentsOf: reply)
            pending.completions.append(completion)
            defer { pending.scheduled = true }
            return !pending.scheduled
        }
        if schedule {
            channel.eventLoop.execute { self.flush() }
        }
    }

    private func flush() {
        let (bytes, completions) = pending.withLock { pending in
            defer {
                pending.bytes.removeAll(keepingCapacity: true)
                pending.completions.removeAll(keepingCapacity: true)
                pending.scheduled = false
            }
            return (pending.bytes, pending.completions)
        }
        guard !completions.isEmpty else { return }
        channel.writeAndFlush(ByteBuffer(bytes: bytes)).whenComplete { _ in
            for completion in completions { completion() }
        }
    }
}
