import ControlProtocol
import Jobs
import NIOCore
import PoolKit
import Synchronization

/// One client of the control socket, from accept to close: reads its request lines, answers
/// each (in order if it never waits, or from a child task: jobs, reload, drain), and when poold
/// stops, closes without losing a request it sent.
package final class ControlConnection: Sendable {
    /// Where the connection is in its life.
    enum State: String, Sendable {
        /// Accepted, not reading yet.
        case accepted
        /// Reading requests and answering them.
        case reading
        /// Stopping: its input is shut; what it already sent is still answered.
        case inputShut
        /// The channel has closed.
        case closed
    }

    let channel: any Channel
    /// Requests read whose answers the socket has not taken yet, at most
    /// `max_inflight_per_connection`: beyond it the connection is not read (back-pressure),
    /// and a client that never reads holds a bounded number of answers.
    let unwritten: AsyncCounter
    /// Request lines read, to tell when the connection has gone quiet.
    let reads = Activity()
    private let mutable = Mutex<(state: State, peer: Peer)>((.accepted, .unknown))

    init(channel: any Channel, maxInflight: Int) {
        self.channel = channel
        self.unwritten = AsyncCounter(limit: maxInflight)
    }

    var state: State { channel.isActive ? mutable.withLock { $0.state } : .closed }

    /// Opened when the channel has closed, whoever closed it. Made when stopping asks, not per
    /// connection: thousands of idle clients each hold one connection.
    private func closedEvent() -> Latch {
        let closed = Latch()
        channel.closeFuture.whenComplete { _ in closed.open() }
        return closed
    }

    var peer: Peer {
        get { mutable.withLock { $0.peer } }
        set { mutable.withLock { $0.peer = newValue } }
    }

    private func enter(_ state: State) {
        mutable.withLock { $0.state = state }
    }

    /// Closes the connection without losing a request it sent: waits up to `linger` for it to
    /// go quiet (nothing unwritten, and no new line for `quietPeriod`), shuts its input — lines
    /// already read are still answered, and the client's further writes fail instead of
    /// vanishing — then waits up to `flush` for it to finish (its answers written). Closes it
    /// regardless after that; false if it had to.
    func close<C: Clock>(linger: Duration, flush: Duration, clock: C) async -> Bool where C.Duration == Duration {
        let quietPeriod = StopTimes.quietPeriod
        let closed = closedEvent()
        try? await withTimeout(linger, clock: clock) {
            try await firstOf(
                { try await closed.wait() },
                {
                    while true {
                        try await self.unwritten.waitForZero()
                        if try await self.reads.isQuiet(for: quietPeriod, clock: clock), self.unwritten.count == 0 { return }
                    }
                })
        }
        enter(.inputShut)
        channel.close(mode: .input, promise: nil)
        try? await withTimeout(flush, clock: clock) { try await closed.wait() }
        guard channel.isActive else { return true }
        channel.close(promise: nil)
        return false
    }

    // MARK: Serving

    /// Puts the async wrapper on the accepted channel, passes it what arrived so far
    /// (`EarlyInbound`) and starts reading; reads who the peer is on the way.
    private func wrap() async throws -> (NIOAsyncChannel<Frame, ByteBuffer>, Peer) {
        try await channel.eventLoop.submit { [channel] in
            let early = try channel.pipeline.syncOperations.handler(type: EarlyInbound.self)
            let wrapped = try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
            early.release()
            try channel.syncOptions?.setOption(.autoRead, value: true)
            return (wrapped, PeerCredentialsReader.peerOnLoop(of: channel))
        }.get()
    }

    /// Serves the connection until it closes. Throws only `CancellationError` (poold is
    /// stopping and closed the connection's task group).
    func serve(router: JobRouter, jobs answering: JobsInFlight) async throws {
        let connection: NIOAsyncChannel<Frame, ByteBuffer>
        do {
            (connection, peer) = try await wrap()
        } catch {
            try? await channel.close()
            return
        }
        enter(.reading)
        let jobs = ConnectionJobs()
        channel.closeFuture.whenComplete { _ in jobs.cancelAll() }
        let peer = self.peer
        do {
            try await connection.executeThenClose { inbound, _ in
                // An idle connection waits here, in as shallow a stack as can be: each of
                // thousands of idle clients holds one.
                var frames = inbound.makeAsyncIterator()
                guard let first = try await frames.next() else { return }
                let reader = RequestReader(connection: self, router: router, answering: answering, jobs: jobs, peer: peer)
                try await reader.read(first: first, then: &frames)
                // Every answer is handed over before executeThenClose closes the connection.
                try? await self.unwritten.waitForZero()
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The client went away mid-read (reset, broken pipe): nobody to answer.
        }
    }
}

/// The control connections being served, so that stopping can close each one.
package final class ConnectionRegistry: Sendable {
    private let connections = Mutex<[ObjectIdentifier: ControlConnection]>([:])

    func add(_ channel: any Channel, maxInflight: Int) -> ControlConnection {
        let connection = ControlConnection(channel: channel, maxInflight: maxInflight)
        connections.withLock { $0[ObjectIdentifier(connection)] = connection }
        return connection
    }

    func remove(_ connection: ControlConnection) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var all: [ControlConnection] { connections.withLock { Array($0.values) } }
}

/// Jobs of every connection not answered yet, and `drain --stop` requests (answered last):
/// stopping waits for both to reach zero.
package struct JobsInFlight: Sendable {
    let unanswered = AsyncCounter()
    let finalReplies = AsyncCounter()

    func begin(final: Bool) {
        _ = (final ? finalReplies : unanswered).tryEnter()
    }

    func end(final: Bool) {
        (final ? finalReplies : unanswered).leave()
    }
}
