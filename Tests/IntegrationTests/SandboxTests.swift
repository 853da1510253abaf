import ControlClient
import ControlProtocol
import Foundation
import Testing

/// Ad-hoc SQL is untrusted input (docs/PROTOCOL.md, "run"; issue 14): what a submitter who is not root may
/// send on a pool with `allow_adhoc = true`, and what it must not achieve — crash poold, reach
/// another file, leave state behind for other clients' jobs, or take memory without bound.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SandboxTests {
    /// A poold with pool "main" (ad-hoc SQL allowed) and a named job that sets a pragma.
    static func daemon() throws -> DaemonProcess {
        try AccessTests.ensureUsers()
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                submitters = ["@\(AccessTests.submitterGroup)"]
                """,
            pools: """
                [[pool]]
                name = "main"
                kind = "sqlite"
                path = "@DIR@/main.db"
                max = 1
                allow_adhoc = true

                [[job]]
                name = "stamp"
                pool = "main"
                sql = "PRAGMA user_version = 7"

                [[job]]
                name = "tokenizer"
                pool = "main"
                sql = "SELECT hex(fts3_tokenizer('simple'))"
                """)
        chmod(daemon.directory, 0o755)
        _ = try daemon.sqlite("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)")
        return daemon
    }

    /// Each request sent as the test submitter (not root), on one connection, and its reply.
    static func asSubmitter(_ daemon: DaemonProcess, _ requests: [JSONObject]) throws -> [JSONObject] {
        let lines = requests.enumerated().map { index, request in
            var request = request
            request["id"] = .int(Int64(index))
            return JSON.encode(.object(request))
        }
        let client = """
            import json, socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
            lines = sys.argv[2:]
            s.sendall(''.join(l + '\\n' for l in lines).encode()); s.shutdown(socket.SHUT_WR)
            f = s.makefile()
            replies = {}
            for _ in lines:
                r = json.loads(f.readline())
                replies[r['id']] = r
            for i in range(len(lines)): print(json.dumps(replies[i]))
            """
        let result = try Program.run(
            "/usr/bin/setpriv",
            ["--reuid=poold-t-sub", "--regid=poold-t-sub", "--init-groups", "--", "/usr/bin/python3", "-c", client, daemon.socket] + lines)
        guard result.status == 0 else { throw TestFailure("the submitter's client failed: \(result.err)") }
        return try result.out.split(separator: "\n").map { line in
            guard case .object(let reply) = try JSON.parse(Array(line.utf8)) else { throw TestFailure("not a reply: \(line)") }
            return reply
        }
    }

    static func sql(_ sql: String, params: [JSONValue] = []) -> JSONObject {
        var request: JSONObject = ["op": .string("run"), "pool": .string("main"), "sql": .string(sql)]
        if !params.isEmpty { request["params"] = .array(params) }
        return request
    }

    static func batch(_ statements: [String]) -> JSONObject {
        ["op": .string("run"), "pool": .string("main"), "batch": .array(statements.map { .object(["sql": .string($0)]) })]
    }

    /// The published "SQLite code execution" route: read a live address with the one-argument
    /// fts3_tokenizer, install a fake one with two arguments (literal or bound), then make SQLite
    /// call through it. Every step is refused, and poold stays up.
    @Test func fts3TokenizerCannotCrashPoold() throws {
        let daemon = try Self.daemon()
        let replies = try Self.asSubmitter(
            daemon,
            [
                Self.sql("SELECT hex(fts3_tokenizer('simple'))"),
                Self.batch([
                    "SELECT fts3_tokenizer('simple', x'4141414141414141')", "CREATE VIRTUAL TABLE temp.t USING fts3(tokenize=simple)",
                ]),
                Self.sql("SELECT fts3_tokenizer('simple', ?1)", params: [.object(["base64": .string("QUFBQUFBQUE=")])]),
                Self.sql("CREATE VIRTUAL TABLE t USING fts3(tokenize=simple)"),
            ])
        for reply in replies {
            #expect(reply.errorCode == "sql_error" && reply.errorMessage?.contains("not authorized") == true, "\(reply)")
        }
        // Not for named jobs either: no config needs a tokenizer's address.
        #expect(try daemon.request(["op": .string("run"), "job": .string("tokenizer")]).errorCode == "sql_error")
        #expect(daemon.process.isRunning, "poold died:\n\(daemon.log.suffix(2000))")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    /// ATTACH reaches any file poold may read or write (another pool's database, a new file):
    /// refused, and no file is created.
    @Test func attachIsRefused() throws {
        let daemon = try Self.daemon()
        let outside = daemon.directory + "/outside.db"
        let replies = try Self.asSubmitter(
            daemon,
            [
                Self.sql("ATTACH DATABASE '\(outside)' AS other"),
                Self.sql("ATTACH DATABASE ?1 AS other", params: [.string(outside)]),
                Self.sql("DETACH DATABASE main"),
            ])
        for reply in replies {
            #expect(reply.errorCode == "sql_error", "\(reply)")
        }
        #expect(replies.first?.errorMessage?.contains("not authorized") == true, "\(String(describing: replies.first))")
        #expect(!FileManager.default.fileExists(atPath: outside), "ATTACH created \(outside)")
    }

    /// Nothing a job leaves on the connection changes what the next job (of another client) sees:
    /// temporary triggers, tables and views are refused, as are pragmas that set anything and
    /// the virtual tables that show other clients' statements or the raw file; read-only
    /// pragmas still answer.
    @Test func noStateOutlivesAJob() throws {
        let daemon = try Self.daemon()
        let refused = try Self.asSubmitter(
            daemon,
            [
                Self.sql("CREATE TEMP TRIGGER swallow BEFORE INSERT ON kv BEGIN SELECT RAISE(IGNORE); END"),
                Self.sql("CREATE TEMP TABLE t (x)"),
                Self.sql("CREATE TABLE temp.t2 (x)"),
                Self.sql("CREATE TEMP VIEW v AS SELECT 1"),
                Self.sql("PRAGMA writable_schema = ON"),
                Self.sql("PRAGMA user_version = 5"),
                Self.sql("PRAGMA journal_mode = DELETE"),
                Self.sql("PRAGMA query_only = 1"),
                Self.sql("SELECT sql FROM sqlite_stmt"),
                Self.sql("SELECT * FROM sqlite_dbpage"),
                Self.sql("SELECT * FROM pragma_journal_mode"),
                Self.sql("CREATE INDEX temp.i ON kv (v)"),
                Self.sql("SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')"),
            ])
        for reply in refused {
            #expect(reply.errorCode == "sql_error", "\(reply)")
        }
        let allowed = try Self.asSubmitter(
            daemon,
            [
                Self.sql("PRAGMA table_info(kv)"),
                Self.sql("SELECT name FROM pragma_table_info('kv')"),
                Self.sql("PRAGMA user_version"),
                Self.sql("INSERT INTO kv VALUES (1, 'one')"),
                Self.sql("CREATE TABLE notes (n)"),
                Self.sql("SELECT count(*) FROM kv"),
            ])
        for reply in allowed {
            #expect(reply.ok, "\(reply)")
        }
        #expect(allowed.last?.rows == [[.int(1)]], "the insert was swallowed: \(String(describing: allowed.last))")
        // A named job, written by the config's owner, may set a pragma.
        #expect(try daemon.request(["op": .string("run"), "job": .string("stamp")]).ok)
        #expect(try daemon.sqlite("PRAGMA user_version") == "7")
    }

    /// One statement cannot take memory without bound: a value may not exceed what a result
    /// may hold (16 MiB), so `zeroblob(900000000)` is refused before anything is allocated.
    @Test func aHugeValueIsRefusedBeforeItIsAllocated() throws {
        let daemon = try Self.daemon()
        let before = try Memory.peak(of: daemon)
        let replies = try Self.asSubmitter(
            daemon,
            [
                Self.sql("SELECT zeroblob(900000000)"),
                Self.sql("SELECT length(zeroblob(900000000))"),
                Self.sql("SELECT randomblob(900000000)"),
            ])
        for reply in replies {
            #expect(reply.errorCode == "sql_error" && reply.errorDetail?["sqlite_name"] == .string("SQLITE_TOOBIG"), "\(reply)")
        }
        let after = try Memory.peak(of: daemon)
        print("zeroblob(900000000): VmHWM \(before) kB -> \(after) kB")
        #expect(after - before < 64 * 1024, "poold's peak RSS grew by \((after - before) / 1024) MB")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }
}
