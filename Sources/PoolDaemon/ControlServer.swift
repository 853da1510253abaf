#if canImport(Glibc)
import Glibc
#endif
import ControlProtocol
import Logging
import NIOCore
import NIOPosix
import PoolConfig
import PoolCore
import ServiceLifecycle
import SystemdKit
import Synchronization

/// The control socket: accepts connections, reads request lines, answers them.
///
/// One discarding task group holds every connection; each connection holds its in-flight
/// jobs in its own group. On graceful shutdown it unlinks the socket and stops accepting,
/// lets running jobs finish within `shutdown_grace`, cancels the rest, and closes every
/// connection once each job has been answered.
final class ControlServer: Service {
    let daemon: Daemon
    let socketPath: String
    let socketMode: UInt32
    let socketGroup: String?
    let maxConnections: Int
    let maxInflight: Int
    let grace: Duration
    let group: MultiThreadedEventLoopGroup
    private let answering = Inflight()
    private let live = LiveConnections()
    /// Connections accepted so far (to tell when the backlog is empty, when stopping).
    private let accepted = Atomic<Int>(0)
    /// Opened when graceful shutdown begins (after the socket path is unlinked).
    private let stopping = Latch()

    init(daemon: Daemon, group: MultiThreadedEventLoopGroup) {
        let settings = daemon.config.daemon
        self.daemon = daemon
        self.socketPath = settings.controlSocket
        self.socketMode = settings.socketMode
        self.socketGroup = settings.socketGroup
        self.maxConnections = settings.maxConnections
        self.maxInflight = settings.maxInflightPerConnection
        self.grace = settings.shutdownGrace
        self.group = group
    }

    /// Whether systemd passed the listening socket (socket activation): then it owns the
    /// file, and poold neither creates nor unlinks it.
    var activatedSocket: Int32? {
        Systemd.listenFileDescriptors().first(where: Systemd.isUnixStreamListener)
    }

    /// Takes the socket systemd passed, or binds the configured path with the configured
    /// mode: the file appears at its path with its final permissions, so there is no
    /// moment at which it is more open than configured.
    ///
    /// Accepted connections come out as plain channels, not reading yet (`autoRead` off):
    /// `serve` wraps each in its own task. An `NIOAsyncChannel` made in the child initializer
    /// crashes poold when the listener closes between accepting a connection and handing it
    /// over (apple/swift-nio#2813); a plain channel can be dropped safely.
    func bind() async throws -> NIOAsyncChannel<any Channel, Never> {
        let maxLine = Framing.maxLineBytes
        let initializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLength: maxLine)))
                try channel.pipeline.syncOperations.addHandler(EarlyInbound())
                return channel
            }
        }
        let logger = daemon.logger
        let bootstrap = ServerBootstrap(group: group)
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
        if let fd = activatedSocket {
            daemon.logger.notice("using the socket systemd passed", metadata: ["fd": "\(fd)"])
            return try await bootstrap.bind(fd, childChannelInitializer: initializer)
        }
        if Self.isListening(socketPath) {
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
            if let socketGroup { giveSocket(privatePath, to: socketGroup) }
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

    /// Whether something accepts connections on `path`: a poold already running must not
    /// have its socket taken over. A file left by one that was killed refuses connections,
    /// and is replaced.
    static func isListening(_ path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return connected == 0
    }

    /// Raises the soft limit on open files to the hard one (systemd starts services at 1024
    /// soft), and warns when even that is short of what the config may need: a descriptor per
    /// connection, a few per pool resource, and some to spare.
    static func raiseFileLimit(config: Config, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let resources = config.pools.reduce(0) { $0 + $1.limits.maxResources }
        let needed = config.daemon.maxConnections + 4 * resources + 64
        if limit.rlim_cur != rlim_t.max && Int(limit.rlim_cur) < needed {
            logger.warning("the open-file limit is below what max_connections and the pools may need; raise LimitNOFILE= or lower max_connections", metadata: [
                "limit": "\(limit.rlim_cur)", "needed": "\(needed)",
            ])
        }
    }

    /// socket_group: the socket file's group. A failure is logged, and the socket keeps
    /// poold's group (clients of that group only).
    private func giveSocket(_ path: String, to name: String) {
        guard let group = getgrnam(name) else {
            daemon.logger.error("socket_group names no group on this machine; the socket keeps poold's group", metadata: ["socket_group": "\(name)"])
            return
        }
        if chown(path, uid_t.max, group.pointee.gr_gid) != 0 {
            daemon.logger.error("cannot give the control socket to socket_group (poold must be a member of it); it keeps poold's group", metadata: [
                "socket_group": "\(name)", "error": "\(String(cString: strerror(errno)))",
            ])
        }
    }

    func run() async throws {
        let systemdOwnsSocket = activatedSocket != nil
        let server = try await bind()
        daemon.logger.notice("listening", metadata: ["socket": "\(systemdOwnsSocket ? "passed by systemd" : socketPath)"])
        await daemon.waitForFirstAttempts()
        daemon.markReady()
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    group.addTask {
                        await self.closeListenerWhenStopping(server.channel, drainBacklog: !systemdOwnsSocket)
                    }
                    for try await channel in inbound {
                        accepted.wrappingAdd(1, ordering: .relaxed)
                        let count = daemon.metrics.controlConnections.wrappingAdd(1, ordering: .relaxed).newValue
                        guard count <= maxConnections else {
                            daemon.metrics.connectionRefused()
                            group.addTask {
                                defer { self.daemon.metrics.controlConnections.wrappingSubtract(1, ordering: .relaxed) }
                                await self.refuse(channel)
                            }
                            continue
                        }
                        // Registered before its task starts, so that stopping finds it.
                        let live = live.add(channel, inflightLimit: maxInflight)
                        group.addTask {
                            defer {
                                self.live.remove(live)
                                self.daemon.metrics.controlConnections.wrappingSubtract(1, ordering: .relaxed)
                            }
                            await self.serve(channel, live)
                        }
                    }
                }
                // Stopping: no new connections. Give running jobs their grace, then stop them,
                // then close every connection once it has its answers.
                await finishJobs()
                await closeConnections()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.daemon.requestStop(by: .request)
            if !systemdOwnsSocket { unlink(self.socketPath) }
            self.stopping.open()
        }
    }

    /// Once stopping, closes the listener — after accepting what is already in its backlog
    /// (DESIGN §3) when poold owns the socket: its path is gone, so nothing new can join the
    /// backlog, and it is empty once no connection has come for 50 ms (1 s at most). Under
    /// socket activation systemd keeps the socket, and what waits in it is for the next poold.
    private func closeListenerWhenStopping(_ listener: any Channel, drainBacklog: Bool) async {
        await stopping.waitUnlessCancelled()
        if drainBacklog {
            let end = ContinuousClock.now + .seconds(1)
            var seen = accepted.load(ordering: .relaxed)
            while ContinuousClock.now < end && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(50))
                let now = accepted.load(ordering: .relaxed)
                if now == seen { break }
                seen = now
            }
        }
        listener.close(promise: nil)
    }

    /// Waits for every job to be answered, up to `shutdown_grace` (a second signal ends the
    /// grace early), then stops the remaining jobs and waits for their answers.
    private func finishJobs() async {
        let deadline = ContinuousClock.now + grace
        while answering.count > 0 && ContinuousClock.now < deadline && !daemon.lifecycle.isGraceSkipped && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if answering.count > 0 {
            daemon.logger.warning("stopping jobs that outlived the grace", metadata: ["jobs": "\(daemon.jobs.count)", "grace_skipped": "\(daemon.lifecycle.isGraceSkipped)"])
            daemon.jobs.cancelAll(reason: .shutdown)
            await answering.waitForZero()
        }
        daemon.lifecycle.everyJobAnswered()
        await answering.waitForFinalReplies()
    }

    /// Closes every connection without losing a request it sent: each gets up to `linger` to
    /// go quiet (nothing in flight, nothing new read), then its input is shut, whatever was
    /// already read is answered (`shutting_down` for jobs), and it is closed once its answers
    /// are written. One whose answers are still unwritten `flush` later does not read them
    /// (or is gone) and is closed anyway, so that no client can hold poold up.
    private func closeConnections() async {
        let linger: Duration = daemon.lifecycle.isGraceSkipped ? .zero : Self.stopLinger
        await withDiscardingTaskGroup { group in
            for connection in live.all {
                group.addTask {
                    if await !connection.close(linger: linger, flush: Self.stopFlush) {
                        self.daemon.logger.warning("closed a connection that did not read its answers", metadata: [
                            "uid": "\(connection.peer.uid)", "pid": "\(connection.peer.pid)", "unwritten": "\(connection.slots.used)",
                        ])
                    }
                }
            }
        }
    }

    /// How long stopping waits for a connection to go quiet before shutting its input.
    static let stopLinger: Duration = .seconds(1)
    /// How long stopping waits, after shutting a connection's input, for its answers to be
    /// written before closing it regardless.
    static let stopFlush: Duration = .seconds(2)

    private func refuse(_ channel: any Channel) async {
        let line = Reply.error(id: nil, code: .overloaded, message: "poold has \(maxConnections) connections open (max_connections); retry later")
        try? await channel.writeAndFlush(ByteBuffer(bytes: line)).get()
        try? await channel.close()
    }

    /// Puts the async wrapper on an accepted channel, passes it what arrived so far
    /// (`EarlyInbound`) and starts reading.
    private static func wrap(_ channel: any Channel) async throws -> NIOAsyncChannel<Frame, ByteBuffer> {
        try await channel.eventLoop.submit {
            let early = try channel.pipeline.syncOperations.handler(type: EarlyInbound.self)
            let wrapped = try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
            early.release()
            try channel.syncOptions?.setOption(.autoRead, value: true)
            return wrapped
        }.get()
    }

    private func serve(_ channel: any Channel, _ live: LiveConnection) async {
        guard let connection = try? await Self.wrap(channel) else {
            try? await channel.close()
            return
        }
        let peer = await Self.peer(of: connection.channel)
        live.peer = peer
        let jobs = ConnectionJobs()
        connection.channel.closeFuture.whenComplete { _ in jobs.cancelAll() }
        let slots = live.slots
        let replies = ReplyWriter(channel: connection.channel)
        await read(connection, live: live, peer: peer, jobs: jobs, slots: slots, replies: replies)
    }

    /// The requests of one connection, until it closes: each answered in order if it never
    /// waits, or by a child task (jobs, reload, drain).
    ///
    /// Set up, and waiting for its first request, on the cooperative pool — a burst of idle
    /// connections costs the event loop nothing — a connection is then read, and its requests
    /// decoded and answered, on the event loop its bytes arrive on: a request reaches its
    /// pool (whose jobs start on that loop) and its answer the socket without a thread
    /// handoff. Nothing there blocks. (Measured one at a time, alternating, in one session: an
    /// exec job took 154-158 us at p50 read this way, 170-199 us read from the cooperative
    /// pool.)
    private func read(_ connection: NIOAsyncChannel<Frame, ByteBuffer>, live: LiveConnection, peer: Peer, jobs: ConnectionJobs, slots: Slots, replies: ReplyWriter) async {
        try? await connection.executeThenClose { inbound, _ in
            var frames = inbound.makeAsyncIterator()
            if let first = try await frames.next() {
                try await withTaskExecutorPreference(EventLoopExecutor(loop: connection.channel.eventLoop)) {
                    try await withThrowingDiscardingTaskGroup { group in
                        var next: Frame? = first
                        while let frame = next {
                            guard await self.handle(frame, live: live, peer: peer, jobs: jobs, slots: slots, replies: replies, group: &group) else { break }
                            next = try await frames.next()
                        }
                    }
                }
            }
            // Every answer is handed over before executeThenClose closes the connection.
            await slots.waitUntilIdle()
        }
    }

    /// One request frame: answered at once, or handed to a child task of `group`. False when
    /// the connection is done (the client is gone, or the line was too large).
    private func handle(
        _ frame: Frame, live: LiveConnection, peer: Peer, jobs: ConnectionJobs, slots: Slots, replies: ReplyWriter,
        group: inout ThrowingDiscardingTaskGroup<any Error>
    ) async -> Bool {
        // A client that closed its connection is gone: what it sent but poold had not handled
        // yet (NIO reads the rest of the input when a write fails) has no one to answer to,
        // and must not run.
        if jobs.isClosed { return false }
        // A job's time starts here: whatever it waits for from now on (a free slot, its task,
        // the pool) is part of what its client waits.
        let received = ContinuousClock.now
        live.frameRead()
        // Every request holds a slot until the socket has taken its answer: beyond
        // max_inflight_per_connection this connection is not read (back-pressure), and a
        // client that never reads holds a bounded number of answers.
        await slots.acquire()
        switch frame {
        case .tooLarge:
            replies.send(Reply.tooLarge(maxLineBytes: Framing.maxLineBytes), then: slots.release)
            await slots.waitUntilIdle()
            return false
        case .line(let line):
            let decoded = line.withUnsafeReadableBytes { RequestDecoder.decode($0) }
            let request: ControlRequest
            switch decoded {
            case .failure(let error):
                replies.send(daemon.refuse(error, peer: peer), then: slots.release)
                return true
            case .success(let r):
                request = r
            }
            if Self.answersAtOnce(request.command) {
                replies.send(await daemon.handle(request, peer: peer, owner: jobs), then: slots.release)
                return true
            }
            let (pool, refusal) = daemon.admit(request, peer: peer)
            if let refusal {
                replies.send(refusal, then: slots.release)
                return true
            }
            // A job counts as answered once its reply is queued: writing it is the
            // connection's business (stopping bounds it, see closeConnections).
            let final = Self.isFinal(request.command)
            answering.begin(final: final)
            group.addTask(executorPreference: pool?.executor) {
                let reply = await self.daemon.perform(request, peer: peer, owner: jobs, received: received, admitted: pool)
                pool?.leave()
                replies.send(reply, then: slots.release)
                self.answering.end(final: final)
            }
            return true
        }
    }

    /// Ops answered inline, in order, without a task: they never wait.
    static func answersAtOnce(_ command: Command) -> Bool {
        switch command {
        case .ping, .status, .pools, .jobs, .stats, .metrics, .cancel, .pause, .resume, .resize: true
        case .runSQL, .runNamed, .runExec, .reload, .drain: false
        }
    }

    /// `drain --stop` is answered after every other job, just before exit.
    static func isFinal(_ command: Command) -> Bool {
        if case .drain(_, true) = command { return true }
        return false
    }

    /// The peer's credentials (SO_PEERCRED); unknown if the kernel will not say.
    /// Its uid, gid and pid (SO_PEERCRED) and its supplementary groups (SO_PEERGROUPS), as the
    /// kernel recorded them when it connected: nothing is read from /proc, where a pid may have
    /// been reused by then, and which a hardened unit (`ProtectProc=invisible`) hides.
    static func peer(of channel: any Channel) async -> Peer {
        guard let provider = channel as? any SocketOptionProvider else { return .unknown }
        do {
            let cred: PeerCredentials = try await provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(17 /* SO_PEERCRED */)).get()
            let groups: PeerGroups? = try? await provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(59 /* SO_PEERGROUPS */)).get()
            return Peer(uid: cred.uid, gid: cred.gid, pid: cred.pid, groups: groups?.list ?? [])
        } catch {
            return .unknown
        }
    }
}

/// Out of file descriptors at accept (EMFILE, ENFILE), the listener stops reading for a moment
/// rather than retrying at once: SwiftNIO keeps its accept pending, and the listening socket
/// stays readable, so without a pause the event loop spins on the error (about 8,600 a second)
/// while new clients time out. Clients already connected are served throughout; new ones wait
/// in the backlog. Logged once per burst, with the limit.
final class AcceptPause: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    static let pause: TimeAmount = .milliseconds(100)
    private let logger: Logger
    private var paused = false
    /// Pauses since the last line logged; a burst is logged when it starts.
    private var pausesUnlogged = 0
    private var lastLogged: NIODeadline?

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let io = error as? IOError, io.errnoCode == EMFILE || io.errnoCode == ENFILE else {
            context.fireErrorCaught(error)
            return
        }
        guard !paused else { return }
        paused = true
        pausesUnlogged += 1
        let now = NIODeadline.now()
        if lastLogged.map({ now - $0 > .seconds(60) }) ?? true {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            logger.error("out of file descriptors: not accepting connections for a moment; raise LimitNOFILE= or lower max_connections", metadata: [
                "limit": "\(limit.rlim_cur)", "error": "\(io.errnoCode == EMFILE ? "EMFILE" : "ENFILE")", "pauses": "\(pausesUnlogged)",
            ])
            lastLogged = now
            pausesUnlogged = 0
        }
        let channel = context.channel
        _ = try? channel.syncOptions?.setOption(.autoRead, value: false)
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.pause) {
            self.paused = false
            _ = try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}

/// The control socket could not be put in place.
struct BindFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Another process accepts connections on the control socket's path.
struct SocketInUse: Error, CustomStringConvertible {
    var path: String
    var description: String {
        "something already accepts connections on \(path) (another poold?); stop it first, or give this one another control_socket"
    }
}

/// What SO_PEERGROUPS fills: the peer's supplementary groups, in the kernel's order (ascending),
/// followed by zeros (the buffer starts zeroed). A peer in more than 256 groups gets ERANGE, and
/// none of its supplementary groups count.
struct PeerGroups: Sendable {
    var gids = InlineArray<256, UInt32>(repeating: 0)

    /// The groups: up to the last non-zero entry (gid 0, if present, sorts first). A peer whose
    /// only supplementary group is 0 reads as none; root is an operator by its uid anyway.
    var list: [UInt32] {
        var last = -1
        for index in gids.indices where gids[index] != 0 { last = index }
        return last < 0 ? [] : (0...last).map { gids[$0] }
    }
}

/// Linux's `struct ucred` (not visible to Swift without _GNU_SOURCE), as SO_PEERCRED fills it.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
