// Issue 16, step 1: is a PostgreSQL protocol 3.0 client of our own, on SwiftNIO, cheap enough
// to be worth writing? Only the hot path: a connection authenticated by trust (the throwaway
// cluster's Unix socket), one Parse per connection, then Bind/Execute/Sync of that statement in
// one write, binary results decoded in place. Eight connections, one query after another, as
// pgbench -c 8 does; this process's CPU per query, user and system apart.
//
//   cd Benchmarks && ../scripts/with-postgres.sh ./wire-spike.sh
//
// Two drivers: from Swift tasks awaiting each answer (as a poold job would), and from the event
// loop alone (the next query is sent from the handler that read the previous answer: the floor).
import Foundation
import NIOCore
import NIOPosix

// MARK: Messages

/// Frontend messages, written straight into a buffer.
enum Frontend {
    static func startup(user: String, database: String, into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(Int32(196_608))  // protocol 3.0
        for (key, value) in [("user", user), ("database", database), ("application_name", "wire-spike")] {
            buffer.writeNullTerminated(key)
            buffer.writeNullTerminated(value)
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }

    /// Parse (named statement, one int4 parameter) and Sync.
    static func parse(name: String, sql: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "P"), into: &buffer) { buffer in
            buffer.writeNullTerminated(name)
            buffer.writeNullTerminated(sql)
            buffer.writeInteger(Int16(1))
            buffer.writeInteger(Int32(23))  // int4
        }
        sync(into: &buffer)
    }

    /// Bind (binary int4 parameter, binary results), Execute and Sync: one write per query.
    static func bindExecuteSync(statement: [UInt8], key: Int32, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "B"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(0))  // unnamed portal
            buffer.writeBytes(statement)  // name and its NUL
            buffer.writeInteger(Int16(1))
            buffer.writeInteger(Int16(1))  // parameters in binary
            buffer.writeInteger(Int16(1))
            buffer.writeInteger(Int32(4))
            buffer.writeInteger(key)
            buffer.writeInteger(Int16(1))
            buffer.writeInteger(Int16(1))  // results in binary
        }
        message(UInt8(ascii: "E"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(Int32(0))
        }
        sync(into: &buffer)
    }

    static func terminate(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "X"))
        buffer.writeInteger(Int32(4))
    }

    private static func sync(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "S"))
        buffer.writeInteger(Int32(4))
    }

    private static func message(_ type: UInt8, into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        buffer.writeInteger(type)
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }
}

extension ByteBuffer {
    mutating func writeNullTerminated(_ string: String) {
        writeString(string)
        writeInteger(UInt8(0))
    }
}

/// What one query answered: its first column, decoded from binary.
enum Value: Sendable {
    case int(Int32)
    case text(String)
    case null
}

struct ServerError: Error, CustomStringConvertible {
    var description: String
}

// MARK: The connection

/// Reads backend messages in place from what arrived, keeping a partial one for the next read.
/// One query at a time: `send` writes Bind/Execute/Sync; the answer completes its promise at
/// ReadyForQuery (or, in loop mode, sends the next query itself).
final class WireHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase { case starting, parsing, idle, querying }

    private var phase = Phase.starting
    private var pending: ByteBuffer?
    private var context: ChannelHandlerContext?
    private var value: Value = .null
    private var failure: ServerError?
    private var answer: EventLoopPromise<Value>?
    let ready: EventLoopPromise<Void>
    let statement: [UInt8]
    private let user: String
    private let database: String
    private let sql: String
    private let textResult: Bool
    /// Loop mode: queries left to send from the handler itself, and when they are done.
    private var loopLeft = 0
    private var loopDone: EventLoopPromise<Int>?
    private var loopCount = 0

    init(user: String, database: String, sql: String, textResult: Bool, ready: EventLoopPromise<Void>) {
        self.user = user
        self.database = database
        self.sql = sql
        self.textResult = textResult
        self.ready = ready
        self.statement = Array("s1".utf8) + [0]
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        var buffer = context.channel.allocator.buffer(capacity: 64)
        Frontend.startup(user: user, database: database, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Sends one query; `promise` gets its first column. On the event loop.
    func send(key: Int32, promise: EventLoopPromise<Value>) {
        guard let context, phase == .idle else {
            promise.fail(ServerError(description: "not idle"))
            return
        }
        answer = promise
        write(key: key, context: context)
    }

    /// Sends `count` queries one after another from the handler; the future gives how many ran.
    func loop(count: Int, on loop: any EventLoop) -> EventLoopFuture<Int> {
        let promise = loop.makePromise(of: Int.self)
        loop.execute {
            guard let context = self.context, self.phase == .idle else {
                promise.fail(ServerError(description: "not idle"))
                return
            }
            self.loopLeft = count
            self.loopCount = 0
            self.loopDone = promise
            self.write(key: Int32.random(in: 1...10000), context: context)
        }
        return promise.futureResult
    }

    private func write(key: Int32, context: ChannelHandlerContext) {
        phase = .querying
        value = .null
        var buffer = context.channel.allocator.buffer(capacity: 48)
        Frontend.bindExecuteSync(statement: statement, key: key, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var partial = pending {
            partial.writeBuffer(&incoming)
            incoming = partial
            pending = nil
        }
        while incoming.readableBytes >= 5 {
            guard let type: UInt8 = incoming.getInteger(at: incoming.readerIndex),
                let length: Int32 = incoming.getInteger(at: incoming.readerIndex + 1),
                length >= 4, length <= 1 << 30
            else {
                context.close(promise: nil)
                return
            }
            guard incoming.readableBytes >= Int(length) + 1 else { break }
            incoming.moveReaderIndex(forwardBy: 5)
            var body = incoming.readSlice(length: Int(length) - 4) ?? ByteBuffer()
            handle(type, &body, context: context)
        }
        if incoming.readableBytes > 0 { pending = incoming }
    }

    private func handle(_ type: UInt8, _ body: inout ByteBuffer, context: ChannelHandlerContext) {
        switch type {
        case UInt8(ascii: "D"):  // DataRow: the first column
            guard let columns: Int16 = body.readInteger(), columns > 0, let length: Int32 = body.readInteger() else { return }
            if length < 0 {
                value = .null
            } else if textResult {
                value = .text(body.readString(length: Int(length)) ?? "")
            } else {
                value = .int(body.readInteger() ?? 0)
            }
        case UInt8(ascii: "Z"):  // ReadyForQuery
            readyForQuery(context: context)
        case UInt8(ascii: "E"):
            failure = ServerError(description: Self.errorText(&body))
        case UInt8(ascii: "R"):  // Authentication: only Ok (trust) in this spike
            if body.readInteger(as: Int32.self) != 0 {
                failure = ServerError(description: "the spike speaks trust only")
            }
        default:  // ParseComplete, BindComplete, CommandComplete, ParameterStatus, BackendKeyData, notices
            break
        }
    }

    private func readyForQuery(context: ChannelHandlerContext) {
        switch phase {
        case .starting:
            if let failure {
                ready.fail(failure)
                return
            }
            phase = .parsing
            var buffer = context.channel.allocator.buffer(capacity: 64)
            Frontend.parse(name: "s1", sql: sql, into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .parsing:
            if let failure {
                ready.fail(failure)
                return
            }
            phase = .idle
            ready.succeed(())
        case .querying:
            phase = .idle
            if let loopDone {
                loopCount += 1
                loopLeft -= 1
                if loopLeft > 0 && failure == nil {
                    write(key: Int32.random(in: 1...10000), context: context)
                } else {
                    self.loopDone = nil
                    if let failure { loopDone.fail(failure) } else { loopDone.succeed(loopCount) }
                }
                return
            }
            let promise = answer
            answer = nil
            if let failure {
                self.failure = nil
                promise?.fail(failure)
            } else {
                promise?.succeed(value)
            }
        case .idle:
            break
        }
    }

    private static func errorText(_ body: inout ByteBuffer) -> String {
        var fields: [String] = []
        while let code: UInt8 = body.readInteger(), code != 0 {
            let bytes = body.readableBytesView
            guard let end = bytes.firstIndex(of: 0) else { break }
            let text = body.readString(length: end - bytes.startIndex) ?? ""
            body.moveReaderIndex(forwardBy: 1)
            if code == UInt8(ascii: "M") || code == UInt8(ascii: "C") { fields.append(text) }
        }
        return fields.joined(separator: ": ")
    }
}

// MARK: Measuring

/// Runs jobs on an event loop, as poold runs PostgreSQL jobs (its `EventLoopExecutor`).
final class LoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop
    init(loop: any EventLoop) { self.loop = loop }
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

struct CPU {
    var user: Int
    var system: Int

    static var now: CPU {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return CPU(
            user: usage.ru_utime.tv_sec * 1_000_000 + Int(usage.ru_utime.tv_usec),
            system: usage.ru_stime.tv_sec * 1_000_000 + Int(usage.ru_stime.tv_usec))
    }
}

let env = ProcessInfo.processInfo.environment
guard let socketDirectory = env["POOLD_TEST_PG_SOCKET_DIR"], let port = env["POOLD_TEST_PG_PORT"] else {
    print("run beside the throwaway cluster: ../scripts/with-postgres.sh ./wire-spike.sh")
    exit(2)
}
let socketPath = "\(socketDirectory)/.s.PGSQL.\(port)"
/// WIRE_TCP=1: over TCP to 127.0.0.1 instead (wire-spike.sh lets role poold in by trust there).
let overTCP = env["WIRE_TCP"] == "1"
let seconds = Double(env["DURATION"] ?? "5") ?? 5
let connectionCount = 8
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

func connect(sql: String, textResult: Bool) async throws -> (any Channel, WireHandler) {
    let loop = group.next()
    let ready = loop.makePromise(of: Void.self)
    let handler = WireHandler(user: "poold", database: "poold", sql: sql, textResult: textResult, ready: ready)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
        }
        .connect(to: overTCP ? try SocketAddress(ipAddress: "127.0.0.1", port: Int(port) ?? 5432) : try SocketAddress(unixDomainSocketPath: socketPath))
        .get()
    try await ready.futureResult.get()
    return (channel, handler)
}

func report(_ name: String, queries: Int, elapsed: Duration, cpu: (CPU, CPU)) {
    let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let user = Double(cpu.1.user - cpu.0.user) / Double(max(queries, 1))
    let system = Double(cpu.1.system - cpu.0.system) / Double(max(queries, 1))
    print(
        "\(name): \(Int(Double(queries) / wall)) queries/s; client CPU per query \(String(format: "%.1f", user + system)) µs"
            + " (user \(String(format: "%.1f", user)), system \(String(format: "%.1f", system))); \(queries) queries, \(connectionCount) connections"
            + (overTCP ? ", TCP" : ", Unix socket"))
}

for (label, sql, text) in [("SELECT $1::int + 1", "SELECT $1::int + 1", false), ("SELECT v FROM kv WHERE k = $1", "SELECT v FROM kv WHERE k = $1", true)] {
    var connections: [(any Channel, WireHandler)] = []
    for _ in 0..<connectionCount { connections.append(try await connect(sql: sql, textResult: text)) }
    let opened = connections

    // Driven from tasks, each awaiting its answer (as a poold job would).
    for (channel, handler) in opened {  // warm up
        let promise = channel.eventLoop.makePromise(of: Value.self)
        channel.eventLoop.execute { handler.send(key: 1, promise: promise) }
        _ = try await promise.futureResult.get()
    }
    var total = 0
    for onLoop in [false, true] {
        let before = CPU.now
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
        let executor = LoopExecutor(loop: group.next())
        let count = try await withThrowingTaskGroup(of: Int.self) { tasks in
            for (channel, handler) in opened {
                tasks.addTask(executorPreference: onLoop ? executor : nil) {
                    var n = 0
                    while ContinuousClock.now < deadline {
                        let promise = channel.eventLoop.makePromise(of: Value.self)
                        let key = Int32.random(in: 1...10000)
                        if channel.eventLoop.inEventLoop {
                            handler.send(key: key, promise: promise)
                        } else {
                            channel.eventLoop.execute { handler.send(key: key, promise: promise) }
                        }
                        _ = try await promise.futureResult.get()
                        n += 1
                    }
                    return n
                }
            }
            var sum = 0
            for try await n in tasks { sum += n }
            return sum
        }
        total = count
        report(onLoop ? "tasks on the loop \(label)" : "tasks  \(label)", queries: count, elapsed: start.duration(to: .now), cpu: (before, .now))
    }

    // Driven from the event loop alone: the floor of this client.
    let perConnection = max(total / connectionCount, 1000)
    let loopBefore = CPU.now
    let loopStart = ContinuousClock.now
    var loopTotal = 0
    let counts = opened.map { channel, handler in handler.loop(count: perConnection, on: channel.eventLoop) }
    for count in counts { loopTotal += try await count.get() }
    report("loop   \(label)", queries: loopTotal, elapsed: loopStart.duration(to: .now), cpu: (loopBefore, .now))

    for (channel, _) in opened {
        var buffer = channel.allocator.buffer(capacity: 5)
        Frontend.terminate(into: &buffer)
        try await channel.writeAndFlush(buffer).get()
        try? await channel.close().get()
    }
}
try await group.shutdownGracefully()
