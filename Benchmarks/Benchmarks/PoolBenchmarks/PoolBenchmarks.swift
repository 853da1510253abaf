import Benchmark
import PoolCore
import PoolKit
import PoolTestSupport
import _ConnectionPoolModule
import _ConnectionPoolTestUtils

// The workload PostgresNIO benchmarks its own ConnectionPool with
// (postgres-nio 1.33.2, Benchmarks/ConnectionPoolBenchmarks): 1,000 lease/release pairs,
// 50 connections, mock connections and a mock clock; once from 50 parallel tasks, once
// sequentially. Both pools run it in the same process, in the same run.
//
// Our pool does more on every lease: acquire timeout, idle timeout and max lifetime are all
// armed, and the lease is counted for drain.

var configuration: Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 100_000
    )
}

let connections = 50

let poolLimits = PoolLimits(
    minResources: 0,
    maxResources: connections,
    maxWaiters: 1024,
    acquireTimeout: .seconds(5),
    idleTimeout: .seconds(60),
    maxLifetime: .seconds(3600)
)

/// Counts failed leases without crashing the benchmark; any failure is reported at the end.
actor Failures {
    var count = 0
    func add() { count += 1 }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark("poold Pool: Lease/Release 1k requests: 50 parallel", configuration: configuration) { benchmark in
        let pool = Pool(name: "bench", limits: poolLimits, backend: MockBackend(), clock: PoolTestSupport.MockClock())
        let failures = Failures()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            let sequential = benchmark.scaledIterations.upperBound / connections
            benchmark.startMeasurement()
            await withTaskGroup(of: Void.self) { workers in
                for _ in 0..<connections {
                    workers.addTask {
                        for _ in 0..<sequential {
                            do {
                                try await pool.withResource { blackHole($0) }
                            } catch {
                                await failures.add()
                            }
                        }
                    }
                }
            }
            benchmark.stopMeasurement()
            group.cancelAll()
        }
        let failed = await failures.count
        precondition(failed == 0, "leases failed during the benchmark")
    }

    Benchmark("poold Pool: Lease/Release 1k requests: sequential", configuration: configuration) { benchmark in
        let pool = Pool(name: "bench", limits: poolLimits, backend: MockBackend(), clock: PoolTestSupport.MockClock())
        var failures = 0
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                do {
                    try await pool.withResource { blackHole($0) }
                } catch {
                    failures += 1
                }
            }
            benchmark.stopMeasurement()
            group.cancelAll()
        }
        precondition(failures == 0, "leases failed during the benchmark")
    }

    Benchmark("PostgresNIO ConnectionPool: Lease/Release 1k requests: 50 parallel", configuration: configuration) { benchmark in
        let clock = _ConnectionPoolTestUtils.MockClock()
        let factory = MockConnectionFactory<_ConnectionPoolTestUtils.MockClock>(autoMaxStreams: 1)
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnectionSoftLimit = connections
        configuration.maximumConnectionHardLimit = connections

        let pool = ConnectionPool(
            configuration: configuration,
            idGenerator: ConnectionIDGenerator(),
            keepAliveBehavior: MockPingPongBehavior(keepAliveFrequency: nil, connectionType: MockConnection.self),
            observabilityDelegate: NoOpConnectionPoolMetrics(connectionIDType: MockConnection.ID.self),
            clock: clock
        ) {
            try await factory.makeConnection(id: $0, for: $1)
        }
        let failures = Failures()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            let sequential = benchmark.scaledIterations.upperBound / connections
            benchmark.startMeasurement()
            await withTaskGroup(of: Void.self) { workers in
                for _ in 0..<connections {
                    workers.addTask {
                        for _ in 0..<sequential {
                            do {
                                try await pool.withConnection { blackHole($0) }
                            } catch {
                                await failures.add()
                            }
                        }
                    }
                }
            }
            benchmark.stopMeasurement()
            group.cancelAll()
        }
        let failed = await failures.count
        precondition(failed == 0, "leases failed during the benchmark")
    }

    Benchmark("PostgresNIO ConnectionPool: Lease/Release 1k requests: sequential", configuration: configuration) { benchmark in
        let clock = _ConnectionPoolTestUtils.MockClock()
        let factory = MockConnectionFactory<_ConnectionPoolTestUtils.MockClock>(autoMaxStreams: 1)
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnectionSoftLimit = connections
        configuration.maximumConnectionHardLimit = connections

        let pool = ConnectionPool(
            configuration: configuration,
            idGenerator: ConnectionIDGenerator(),
            keepAliveBehavior: MockPingPongBehavior(keepAliveFrequency: nil, connectionType: MockConnection.self),
            observabilityDelegate: NoOpConnectionPoolMetrics(connectionIDType: MockConnection.ID.self),
            clock: clock
        ) {
            try await factory.makeConnection(id: $0, for: $1)
        }
        var failures = 0
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                do {
                    try await pool.withConnection { blackHole($0) }
                } catch {
                    failures += 1
                }
            }
            benchmark.stopMeasurement()
            group.cancelAll()
        }
        precondition(failures == 0, "leases failed during the benchmark")
    }
}
