// PostgresNIO used directly, with no daemon in front: the ceiling for any pool built on its
// PostgresConnection. Eight connections, each running one query after another (as pgbench
// -c 8 does), for the workloads of `make bench-daemon`. Run it beside the throwaway cluster:
//
//   cd Benchmarks && ../scripts/with-postgres.sh swift run -c release PostgresDirect
//
// It prints queries per second and this process's CPU per query (user + system).
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// A statement with one int4 parameter, the key.
protocol Keyed: PostgresPreparedStatement {
    var k: Int { get }
}

extension Keyed {
    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(Int32(k))
        return bindings
    }
}

struct AddOne: Keyed {
    static let sql = "SELECT $1::int + 1"
    var k: Int
    func decodeRow(_ row: PostgresRow) throws -> Int { try row.decode(Int.self) }
}

struct PointRead: Keyed {
    static let sql = "SELECT v FROM kv WHERE k = $1"
    var k: Int
    func decodeRow(_ row: PostgresRow) throws -> String { try row.decode(String.self) }
}

func cpuMicros() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000 + Int(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
}

let env = ProcessInfo.processInfo.environment
guard let url = env["POOLD_TEST_PG_URL"].flatMap(URL.init(string:)), let host = url.host, let port = url.port,
    let user = url.user, let password = env["POOLD_TEST_PG_PASSWORD"]
else {
    print("run beside the throwaway cluster: ../scripts/with-postgres.sh swift run -c release PostgresDirect")
    exit(2)
}
let database = String(url.path.dropFirst())
let seconds = Double(env["DURATION"] ?? "5") ?? 5
let connectionCount = 8
let logger = Logger(label: "direct", factory: { _ in SwiftLogNoOpLogHandler() })

var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: .disable)
configuration.options.additionalStartupParameters = [("application_name", "postgres-direct")]
var opened: [PostgresConnection] = []
for id in 0..<connectionCount {
    opened.append(try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger))
}
let connections = opened

/// Runs `body` on every connection in a loop for the duration; queries done and CPU used.
func measure(_ name: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> Void) async throws {
    let connections = connections
    for connection in connections { try await body(connection) }  // prepare, warm up
    let cpu = cpuMicros()
    let start = ContinuousClock.now
    let deadline = start + .milliseconds(Int(seconds * 1000))
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for connection in connections {
            group.addTask {
                var n = 0
                while ContinuousClock.now < deadline {
                    try await body(connection)
                    n += 1
                }
                return n
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = start.duration(to: .now)
    let rate = Double(total) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    let perQuery = Double(cpuMicros() - cpu) / Double(max(total, 1))
    print("\(name): \(Int(rate)) queries/s, \(Int(perQuery)) µs of CPU per query (\(total) queries, \(connectionCount) connections)")
}

try await measure("prepared  SELECT $1::int + 1") { connection in
    for try await _ in try await connection.execute(AddOne(k: Int.random(in: 1...10000)), logger: logger) {}
}
try await measure("prepared  SELECT v FROM kv WHERE k = $1") { connection in
    for try await _ in try await connection.execute(PointRead(k: Int.random(in: 1...10000)), logger: logger) {}
}
try await measure("unnamed   SELECT $1::int + 1") { connection in
    for try await _ in try await connection.query("SELECT \(Int.random(in: 1...10000))::int + 1", logger: logger) {}
}
for connection in connections { try await connection.close().get() }
