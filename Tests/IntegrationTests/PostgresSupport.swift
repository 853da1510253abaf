import ControlClient
import ControlProtocol
import Foundation
import Testing

/// The throwaway PostgreSQL cluster that `scripts/with-postgres.sh` starts for `make test`.
enum PG {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The cluster's settings, or a failure that says how to get one.
    static func require() throws -> (url: String, password: String) {
        guard let url = environment["POOLD_TEST_PG_URL"], let password = environment["POOLD_TEST_PG_PASSWORD"] else {
            throw TestFailure("the PostgreSQL tests need the throwaway cluster: run `make test`, or `scripts/with-postgres.sh swift test`")
        }
        return (url, password)
    }

    /// Runs SQL as the superuser over the cluster's Unix socket; its output, trimmed.
    @discardableResult
    static func psql(_ sql: String) throws -> String {
        guard let psql = environment["POOLD_TEST_PG_PSQL"] else { throw TestFailure("POOLD_TEST_PG_PSQL is not set") }
        return try run(psql, ["-c", sql])
    }

    /// pg_ctl on the cluster: `ctl("restart", "-m", "fast")`.
    static func ctl(_ arguments: String...) throws {
        guard let ctl = environment["POOLD_TEST_PG_CTL"] else { throw TestFailure("POOLD_TEST_PG_CTL is not set") }
        _ = try run(ctl, arguments)
    }

    /// Runs a helper script and returns its output; a non-zero exit is a failure.
    static func run(_ program: String, _ arguments: [String]) throws -> String {
        let result = try Program.run(program, arguments)
        guard result.status == 0 else {
            throw TestFailure("\(program) \(arguments.joined(separator: " ")) failed (status \(result.status)): \(result.err)")
        }
        return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Connections the server has for one application_name (each test uses its own).
    static func connections(_ application: String, activeOnly: Bool = false) throws -> Int {
        let filter = activeOnly ? " AND state = 'active'" : ""
        return Int(try psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '\(application)'\(filter)")) ?? -1
    }

    /// A poold with one postgres pool named "pg". `pool` adds keys to the pool's table;
    /// `password` overrides the file's content.
    static func daemon(
        _ application: String, min: Int = 1, max: Int = 4, acquireTimeout: String = "3s",
        pool extra: String = "", password: String? = nil, url: String? = nil,
        grace: String = "3s", environment: [String: String] = [:], passwordKey: String = "password_file = \"@DIR@/pg.password\""
    ) throws -> DaemonProcess {
        let cluster = try require()
        let directory = try DaemonProcess.makeTemporaryDirectory()
        try (password ?? cluster.password).write(toFile: directory + "/pg.password", atomically: true, encoding: .utf8)
        return try DaemonProcess(
            grace: grace,
            pools: """
                [[pool]]
                name = "pg"
                kind = "postgres"
                url = "\(url ?? cluster.url)"
                \(passwordKey)
                application_name = "\(application)"
                min = \(min)
                max = \(max)
                acquire_timeout = "\(acquireTimeout)"
                allow_adhoc = true
                \(extra)
                """, environment: environment, directory: directory)
    }

    /// A unique application_name, so that a test counts only its own connections.
    static func application(_ test: String) -> String {
        "poold-t-\(test)-\(UInt32.random(in: 0 ... .max))"
    }
}

extension DaemonProcess {
    /// Runs ad-hoc SQL on the pool "pg".
    func sql(_ sql: String, _ params: [JSONValue] = [], timeoutMs: Int? = nil, transaction: Bool = false, pool: String = "pg") throws
        -> JSONObject
    {
        var fields: JSONObject = ["op": .string("run"), "pool": .string(pool), "sql": .string(sql)]
        if !params.isEmpty { fields["params"] = .array(params) }
        if let timeoutMs { fields["timeout_ms"] = .int(Int64(timeoutMs)) }
        if transaction { fields["transaction"] = .bool(true) }
        return try request(fields)
    }

    /// The pool's entry in `pools`.
    func poolState(_ name: String = "pg") throws -> JSONObject {
        let reply = try request(["op": .string("pools")])
        guard case .array(let pools)? = reply["pools"] else { throw TestFailure("no pools in \(reply)") }
        for case .object(let pool) in pools where pool["name"] == .string(name) { return pool }
        throw TestFailure("no pool \(name) in \(reply)")
    }
}

/// Polls `condition` every 50 ms for up to `limit`; whether it became true.
func waitUntil(_ limit: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    repeat {
        if try condition() { return true }
        usleep(50_000)
    } while ContinuousClock.now < deadline
    return try condition()
}

/// Runs a program to its end. posix_spawn and waitpid rather than Foundation's Process,
/// whose waitUntilExit was seen to hang here on an exited child while other threads were busy.
enum Program {
    static func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outPath = directory + "/out"
        let errPath = directory + "/err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, nil, argv, environ)
        guard rc == 0 else { throw TestFailure("cannot run \(program): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return ((status >> 8) & 0xFF, out, err)
    }
}
