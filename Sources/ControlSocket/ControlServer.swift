import ControlProtocol
import Jobs
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import PoolKit
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import DaemonRuntime
    import Glibc
#endif

/// The control socket: accepts connections and serves each (`ControlConnection`).
///
/// One discarding task group holds every connection; each connection holds its in-flight
/// jobs in its own group. On graceful shutdown it unlinks the socket and stops accepting,
/// lets running jobs finish within `shutdown_grace`, cancels the rest, and closes every
/// connection once each job has been answered (docs/CONFIG.md, "Stopping").
package final class ControlServer<C: Clock>: Service where C.Duration == Duration {
    let router: JobRouter
    let context: DaemonContext
    let socketPath: String
    let socketMode: UInt32
    let socketGroup: String?
    let maxConnections: Int
    let maxInflight: Int
    let grace: Duration
    let loops: MultiThreadedEventLoopGroup
    let clock: C
    /// Where the server is in its life; `stopping` announces the move out of `serving`.
    enum Phase: String, Sendable {
        case starting, serving, drainingBacklog, finishingJobs, closingConnections, stopped
    }

    private let phase = Mutex(Phase.starting)
    private let answering = JobsInFlight()
    private let connections = ConnectionRegistry()
    /// Connections accepted, to tell when the backlog is empty once stopping.
    private let accepts = Activity()
    /// Opened when graceful shutdown begins (after the socket path is unlinked).
    private let stopping = Latch()

    private func enter(_ next: Phase) {
        phase.withLock { $0 = next }
        context.logger.debug("control server", metadata: ["phase": "\(next.rawValue)"])
    }

    package init(router: JobRouter, loops: MultiThreadedEventLoopGroup, clock: C) {
        let settings = router.context.config.daemon
        self.router = router
        self.context = router.context
        self.socketPath = settings.controlSocket
        self.socketMode = settings.socketMode
        self.socketGroup = settings.socketGroup
        self.maxConnections = settings.maxConnections
        self.maxInflight = settings.maxInflightPerConnection
        self.grace = settings.shutdownGrace
        self.loops = loops
        self.clock = clock
    }

    /// Takes the socket systemd passed, or binds the configured path with the configured
    /// mode: the file appears at its path with its final permissions, so there is no
    /// moment at which it is more open than configured.
    ///
    /// Accepted connections come out as plain channels, not reading yet (`autoRead` off):
    /// `serve` wraps each in its own task. An `NIOAsyncChannel` made in the child initializer
    /// crashes poold when the listener closes between accepting a connection and handing it
    /// over (apple/swift-nio#2813); a plain channel can be dropped safely.
    private func bind() async throws -> NIOAsyncChannel<any Channel, Never> {
        let maxLine = Framing.maxLineBytes
        let initializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLength: maxLine)))
                try channel.pipeline.syncOperations.addHandler(EarlyInbound())
                return channel
            }
        }
        let logger = context.logger
        let bootstrap = ServerBootstrap(group: loops)
            // The kernel caps it at net.core.somaxconn (4096 since Linux 5.4): a burst of
            // quick connects waits in the backlog instead of failing with EAGAIN.
            .serverChannelOption(.backlog, value: Int32(SOMAXCONN))
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPause(logger: logger))
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
        if let fd = SocketFile.activated {
            context.logger.notice("using the socket systemd passed", metadata: ["fd": "\(fd)"])
            return try await bootstrap.bind(fd, childChannelInitializer: initializer)
        }
        if SocketFile.isListening(socketPath) {
            throw SocketInUse(path: socketPath)
        }
        let directory = socketPath.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !directory.isEmpty { _ = mkdir(directory, 0o755) }
        // The socket is bound in a directory only poold may enter, given its mode and group
        // there, and only then renamed to its path: nobody can reach it before it has its final
        // permissions, and nothing changes the process-wide umask (which pools and workers
        // starting at the same moment would inherit).
        var template = Array(((directory.isEmpty ? "." : directory) + "/.poold-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BindFailure(message: "cannot create a private directory beside \(socketPath): \(String(cString: strerror(errno)))")
        }
        let privateDirectory = String(cString: made)
        let privatePath = privateDirectory + "/s"
        defer {
            unlink(privatePath)
            rmdir(privateDirectory)
        }
        let channel = try await bootstrap.bind(unixDomainSocketPath: privatePath, childChannelInitializer: initializer)
        do {
            guard chmod(privatePath, mode_t(socketMode)) == 0 else {
                throw BindFailure(message: "cannot set the control socket's mode: \(String(cString: strerror(errno)))")
            }
            if let socketGroup { SocketFile.giveSocket(privatePath, to: socketGroup, logger: context.logger) }
            // Replaces a file a killed poold left (a live one was refused above).
            guard rename(privatePath, socketPath) == 0 else {
                throw BindFailure(message: "cannot move the control socket to \(socketPath): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? await channel.channel.close()
            throw error
        }
        return channel
    }

    package func run() async throws {
        let systemdOwnsSocket = SocketFile.activated != nil
        let server = try await bind()
        context.logger.notice("listening", metadata: ["socket": "\(systemdOwnsSocket ? "passed by systemd" : socketPath)"])
        await context.pools.waitForFirstAttempts(clock: clock)
        context.markReady()
        enter(.serving)
        defer { enter(.stopped) }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    group.addTask {
                        await self.closeListenerWhenStopping(server.channel, drainBacklog: !systemdOwnsSocket)
                    }
                    for try await channel in inbound {
                        accept(channel, into: &group)
                    }
                }
                // Stopping: no new connections. Give running jobs their grace, then stop them,
                // then close every connection once it has its answers.
                enter(.finishingJobs)
                await finishJobs()
                enter(.closingConnections)
                await closeConnections()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.context.requestStop(by: .request)
            let first = self.phase.withLock { phase -> Bool in
                guard phase == .starting || phase == .serving else { return false }
                phase = .drainingBacklog
                return true
            }
            guard first else { return }
            if !systemdOwnsSocket { unlink(self.socketPath) }
            self.stopping.open()
        }
    }

    /// Serves an accepted connection in a child task, or refuses it past `max_connections`.
    private func accept(_ channel: any Channel, into group: inout ThrowingDiscardingTaskGroup<any Error>) {
        accepts.happened()
        let metrics = context.metrics
        let count = metrics.controlConnections.wrappingAdd(1, ordering: .relaxed).newValue
        guard count <= maxConnections else {
            metrics.connectionRefused()
            group.addTask {
                defer { metrics.controlConnections.wrappingSubtract(1, ordering: .relaxed) }
                await self.refuse(channel)
            }
            return
        }
        // Registered before its task starts, so that stopping finds it.
        let connection = connections.add(channel, maxInflight: maxInflight)
        group.addTask {
            defer {
                self.connections.remove(connection)
                metrics.controlConnections.wrappingSubtract(1, ordering: .relaxed)
            }
            do {
                try await connection.serve(router: self.router, jobs: self.answering)
            } catch {
                // Cancelled: stopping ends the connections' group only after closing every
                // connection, so nothing is left to answer.
            }
        }
    }

    /// Once stopping, closes the listener — after accepting what is already in its backlog
    /// (docs/CONFIG.md, "Stopping") when poold owns the socket: its path is gone, so nothing
    /// new can join the backlog, and it is empty once no connection has come for
    /// `quietPeriod` (`backlogDrain` at most). Under socket activation systemd keeps the
    /// socket, and what waits in it is for the next poold.
    private func closeListenerWhenStopping(_ listener: any Channel, drainBacklog: Bool) async {
        defer { listener.close(promise: nil) }
        do {
            try await stopping.wait()
        } catch {
            return  // cancelled: the server is ending anyway
        }
        guard drainBacklog else { return }
        let (accepts, clock) = (accepts, clock)
        try? await withTimeout(StopTimes.backlogDrain, clock: clock) {
            while try await !accepts.isQuiet(for: StopTimes.quietPeriod, clock: clock) {}
        }
    }

    /// Waits for every job to be answered, up to `shutdown_grace` (a second stop signal ends
    /// the grace early), then stops the remaining jobs and waits for their answers.
    private func finishJobs() async {
        let (unanswered, lifecycle) = (answering.unanswered, context.lifecycle)
        try? await withTimeout(grace, clock: clock) {
            try await firstOf({ try await unanswered.waitForZero() }, { try await lifecycle.waitForGraceSkipped() })
        }
        if unanswered.count > 0 {
            context.logger.warning(
                "stopping jobs that outlived the grace",
                metadata: [
                    "jobs": "\(context.jobs.count)", "grace_skipped": "\(lifecycle.isGraceSkipped)",
                ])
            context.jobs.cancelAll(reason: .shutdown)
            // Stopped jobs answer as soon as they have unwound; should the service group's
            // backstop cancel this wait, closing the connections' group cancels them.
            try? await unanswered.waitForZero()
        }
        lifecycle.everyJobAnswered()
        try? await answering.finalReplies.waitForZero()
    }

    /// Closes every connection without losing a request it sent (`ControlConnection.close`).
    /// One whose answers are still unwritten `stopFlush` after its input was shut does not read
    /// them (or is gone), and is closed anyway, so that no client can hold poold up.
    private func closeConnections() async {
        let linger: Duration = context.lifecycle.isGraceSkipped ? .zero : StopTimes.stopLinger
        let clock = clock
        await withDiscardingTaskGroup { group in
            for connection in connections.all {
                group.addTask {
                    if await !connection.close(linger: linger, flush: StopTimes.stopFlush, clock: clock) {
                        self.context.logger.warning(
                            "closed a connection that did not read its answers",
                            metadata: [
                                "uid": "\(connection.peer.uid)", "pid": "\(connection.peer.pid)",
                                "unwritten": "\(connection.unwritten.count)", "state": "\(connection.state.rawValue)",
                            ])
                    }
                }
            }
        }
    }

    private func refuse(_ channel: any Channel) async {
        let line = Reply.error(
            id: nil, code: .overloaded, message: "poold has \(maxConnections) connections open (max_connections); retry later")
        try? await channel.writeAndFlush(ByteBuffer(bytes: line)).get()
        try? await channel.close()
    }
}

/// How long each step of closing the control socket may take when poold stops.
package enum StopTimes {
    /// How long stopping waits for a connection to go quiet before shutting its input.
    static let stopLinger: Duration = .seconds(1)
    /// How long stopping waits, after shutting a connection's input, for its answers to be
    /// written before closing it regardless.
    static let stopFlush: Duration = .seconds(2)
    /// How long the backlog may take to drain once stopping.
    static let backlogDrain: Duration = .seconds(1)
    /// No new connection, or no new request line, for this long: the backlog is empty, the
    /// connection has gone quiet.
    static let quietPeriod: Duration = .milliseconds(50)
    /// The longest closing connections can take, past the grace.
    package static let longestClose = backlogDrain + stopLinger + stopFlush
}
