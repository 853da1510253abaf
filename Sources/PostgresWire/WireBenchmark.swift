import NIOCore
import NIOPosix

/// The entry point of `Benchmarks/WireClientBench`: `WireClient` as poold would run it, so
/// that its cost per query can be measured beside pgbench and PostgresNIO (the Benchmarks
/// package sees only public API). Each connection runs one query after another from a task
/// on the connection's event loop, as poold's PostgreSQL jobs run.
public enum WireBenchmark {
    /// Runs `sql` (one int4 parameter, a random key) on `connections` connections for
    /// `seconds`; the number of queries answered.
    public static func run(
        host: String, port: Int, user: String, password: String?, database: String, connections: Int, seconds: Double, sql: String
    ) async throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        var configuration = WireConnection.Configuration(
            address: .tcp(host: host, port: port), user: user, database: database, password: password)
        configuration.applicationName = "wire-bench"
        var clients: [WireClient] = []
        do {
            for _ in 0..<connections { clients.append(try await WireClient.connect(configuration, on: group.next())) }
            let total = try await measure(clients, sql: sql, seconds: seconds)
            for client in clients { await client.close() }
            return total
        } catch {
            for client in clients { await client.close() }
            throw error
        }
    }

    private static func measure(_ clients: [WireClient], sql: String, seconds: Double) async throws -> Int {
        for client in clients { _ = try await client.execute(sql, [Frontend.Parameter(bytes: Array("1".utf8), binary: false)]) }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        return try await withThrowingTaskGroup(of: Int.self) { tasks in
            for client in clients {
                tasks.addTask(executorPreference: LoopExecutor(loop: client.channel.eventLoop)) {
                    var n = 0
                    while ContinuousClock.now < deadline {
                        let key = Array(String(Int.random(in: 1...10000)).utf8)
                        _ = try await client.execute(sql, [Frontend.Parameter(bytes: key, binary: false)])
                        n += 1
                    }
                    return n
                }
            }
            var sum = 0
            for try await n in tasks { sum += n }
            return sum
        }
    }
}

/// Runs jobs on an event loop (as poold's `EventLoopExecutor` does).
private final class LoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop
    init(loop: any EventLoop) { self.loop = loop }
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
