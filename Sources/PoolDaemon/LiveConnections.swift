import NIOCore
import Synchronization

/// The control connections being served, so that stopping can close each one without
/// losing a request it sent.
final class LiveConnections: Sendable {
    private let connections = Mutex<[ObjectIdentifier: LiveConnection]>([:])

    func add(_ channel: any Channel, inflightLimit: Int) -> LiveConnection {
        let connection = LiveConnection(channel: channel, slots: Slots(limit: inflightLimit))
        connections.withLock { $0[ObjectIdentifier(connection)] = connection }
        return connection
    }

    func remove(_ connection: LiveConnection) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var all: [LiveConnection] { connections.withLock { Array($0.values) } }
}

/// One control connection: its channel, its in-flight slots, its peer and how many request
/// lines it has read (to tell when it has gone quiet).
final class LiveConnection: Sendable {
    let channel: any Channel
    let slots: Slots
    private let frames = Atomic<Int>(0)
    private let peerCredentials = Mutex(Peer.unknown)

    init(channel: any Channel, slots: Slots) {
        self.channel = channel
        self.slots = slots
    }

    var peer: Peer {
        get { peerCredentials.withLock { $0 } }
        set { peerCredentials.withLock { $0 = newValue } }
    }

    func frameRead() {
        frames.wrappingAdd(1, ordering: .relaxed)
    }

    /// Waits up to `linger` for the connection to go quiet (nothing in flight and no new line
    /// for 50 ms), shuts its input — lines already read are still answered, and the client's
    /// further writes fail instead of vanishing — then waits up to `flush` for the connection
    /// to finish (its answers written). Closes it regardless after that; false if it had to.
    func close(linger: Duration, flush: Duration) async -> Bool {
        let lingerEnd = ContinuousClock.now + linger
        var seen = frames.load(ordering: .relaxed)
        while channel.isActive && ContinuousClock.now < lingerEnd && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(50))
            let now = frames.load(ordering: .relaxed)
            if now == seen && slots.used == 0 { break }
            seen = now
        }
        channel.close(mode: .input, promise: nil)
        let flushEnd = ContinuousClock.now + flush
        while channel.isActive && ContinuousClock.now < flushEnd && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(10))
        }
        guard channel.isActive else { return true }
        channel.close(promise: nil)
        return false
    }
}
