// Issue 16: PostgresWire's WireClient (the real client, state machines, statement cache and
// all) as poold runs it, beside the cluster: 8 connections, one query after another from a
// task on each connection's event loop; this process's CPU per query, user and system apart.
//
//   cd Benchmarks && ../scripts/with-postgres.sh ./wire-spike.sh    (which runs this too)
import Foundation
import PostgresWire

let env = ProcessInfo.processInfo.environment
guard let host = env["POOLD_TEST_PG_HOST"], let port = env["POOLD_TEST_PG_PORT"].flatMap(Int.init), let password = env["POOLD_TEST_PG_PASSWORD"]
else {
    print("run beside the throwaway cluster: ../scripts/with-postgres.sh ./wire-spike.sh")
    exit(2)
}
let seconds = Double(env["DURATION"] ?? "5") ?? 5

func cpu() -> (user: Int, system: Int) {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return (
        usage.ru_utime.tv_sec * 1_000_000 + Int(usage.ru_utime.tv_usec), usage.ru_stime.tv_sec * 1_000_000 + Int(usage.ru_stime.tv_usec)
    )
}

for sql in ["SELECT $1::int + 1", "SELECT v FROM kv WHERE k = $1"] {
    let before = cpu()
    let start = ContinuousClock.now
    let queries = try await WireBenchmark.run(
        host: host, port: port, user: "poold", password: password, database: "poold", connections: 8, seconds: seconds, sql: sql)
    let after = cpu()
    let elapsed = start.duration(to: .now)
    let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let user = Double(after.user - before.user) / Double(max(queries, 1))
    let system = Double(after.system - before.system) / Double(max(queries, 1))
    print(
        "WireClient \(sql): \(Int(Double(queries) / wall)) queries/s; client CPU per query \(String(format: "%.1f", user + system)) µs"
            + " (user \(String(format: "%.1f", user)), system \(String(format: "%.1f", system))); \(queries) queries, 8 connections, TCP")
}
