import Foundation
import PoolConfig
import PoolCore
import Testing

@Suite struct ConfigFileTests {
    /// The repository root, three levels above this file (Tests/PoolConfigTests/…).
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func devConfigIsTheEmbeddedDefault() throws {
        let path = Self.repoRoot.appendingPathComponent("config/dev.toml").path
        let config = try ConfigLoader.load(path: path)
        #expect(config.path == path)
        #expect(config.daemon.controlSocket == "./.poold/control.sock")
        #expect(config.daemon.shutdownGrace == .seconds(5))
        #expect(config.access == nil)
        #expect(config.pools.count == 1)
        let main = try #require(config.pool(named: "main"))
        #expect(main.backend == .sqlite(SQLiteSettings(path: "./.poold/main.db")))
        #expect(main.limits.minResources == 1 && main.limits.maxResources == 4)
        #expect(main.allowAdhoc)
        #expect(config.job(named: "count-kv")?.sql == ["SELECT count(*) AS n FROM kv"])
        let put = try #require(config.job(named: "put-kv"))
        #expect(put.sql == ["INSERT INTO kv(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v"])
        #expect(put.transaction)
        #expect(config.warnings.isEmpty)
    }

    @Test func exampleConfigMirrorsTheDesign() throws {
        let path = Self.repoRoot.appendingPathComponent("config/poold.toml").path
        let config = try ConfigLoader.load(path: path)
        #expect(config.pools.map(\.name) == ["main", "pg", "workers"])
        #expect(config.pools.map(\.kind) == [.sqlite, .postgres, .exec])
        #expect(config.access?.operators == ["root", "@poold-admin"])
        #expect(config.daemon.socketGroup == "poold")
        #expect(config.metrics.listen == nil, "the HTTP endpoint is off unless asked for")
        guard case .postgres(let pg) = config.pool(named: "pg")?.backend else {
            Issue.record("pg is not a postgres pool")
            return
        }
        #expect(pg.passwordFile == "/etc/poold/pg.password")
        #expect(config.job(named: "purge-sessions")?.pool == "pg")
        #expect(config.job(named: "purge-sessions")?.timeout == .seconds(10))
        #expect(config.warnings.isEmpty)
    }

    @Test func exampleConfigCoversEveryKey() throws {
        let text = try String(contentsOf: Self.repoRoot.appendingPathComponent("config/poold.toml"), encoding: .utf8)
        let keys = [
            "control_socket", "socket_mode", "socket_group", "shutdown_grace", "max_connections",
            "max_inflight_per_connection", "operators", "submitters", "observers", "name", "kind", "min", "max",
            "max_waiters", "acquire_timeout", "idle_timeout", "max_lifetime", "health_check_after", "job_timeout",
            "max_job_timeout", "allow_adhoc", "path", "busy_timeout", "url", "password_file", "credential",
            "application_name", "connect_timeout", "command", "max_jobs_per_worker", "kill_grace", "pool", "sql",
            "timeout", "transaction", "listen",
        ]
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        for key in keys {
            #expect(lines.contains { $0.hasPrefix(key + " ") || $0.hasPrefix("# " + key + " ") }, "\(key) is not shown")
        }
    }

    @Test func aMissingFileSaysSo() throws {
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/poold/poold.toml")
            Issue.record("loaded a file that does not exist")
        } catch {
            #expect(error.line == nil)
            #expect(error.message == "cannot read /nonexistent/poold/poold.toml: no such file")
            #expect(error.description == "cannot read /nonexistent/poold/poold.toml: no such file")
        }
    }

    @Test func aDirectoryIsNotAConfigFile() throws {
        do {
            _ = try ConfigLoader.load(path: "/tmp")
            Issue.record("loaded a directory")
        } catch {
            #expect(error.message == "cannot read /tmp: is a directory")
        }
    }

    @Test func invalidUTF8IsReportedWithItsLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("poold-config-\(getpid()).toml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var bytes = Array("[daemon]\n# caf".utf8)
        bytes += [0xC3, 0x28, 0x0A]
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        do {
            _ = try ConfigLoader.load(path: path)
            Issue.record("loaded invalid UTF-8")
        } catch {
            #expect(error.description == "\(path):2: the file is not valid UTF-8")
        }
    }

    @Test func loadReportsErrorsWithThePathAsGiven() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("poold-config-b-\(getpid()).toml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("[daemon]\nmax_connections = 0\n".utf8)))
        do {
            _ = try ConfigLoader.load(path: path)
            Issue.record("loaded an invalid file")
        } catch {
            #expect(error.description == "\(path):2: [daemon]: max_connections must be a positive integer (got 0)")
        }
    }

    /// Mutations of the example config must each give a config or a `poold.toml:`-style
    /// error, never a crash (toml++ asserts abort debug builds), and never show the url's
    /// password.
    @Test func mutatedConfigsNeverCrashOrLeakThePassword() throws {
        let base = try String(contentsOf: Self.repoRoot.appendingPathComponent("config/poold.toml"), encoding: .utf8)
            .replacingOccurrences(of: "postgres://app@", with: "postgres://app:hunter2@")
            .replacingOccurrences(of: "password_file = \"/etc/poold/pg.password\"", with: "")
        let pieces = ["[", "]", "\"", "'", "=", "\n", "#", "0", "-1", "\"\"\"", "[[pool]]", "{", ",", ".", "\\", "@", ":"]
        var rng = SplitMix(seed: 0x5EED)
        var parsed = 0
        var refused = 0
        for _ in 0..<1500 {
            var bytes = Array(base.utf8)
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(contentsOf: Array(pieces[Int(rng.next() % UInt64(pieces.count))].utf8), at: at)
                default: bytes[at] = UInt8(truncatingIfNeeded: 0x20 + rng.next() % 0x5F)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let config = try ConfigLoader.parse(text, path: "poold.toml")
                // A mutation that removed the ':' leaves no password to hide (the user is
                // then "apphunter2"), so look for the password as a password.
                #expect(!config.effectiveTOML().contains(":hunter2"))
                parsed += 1
            } catch {
                #expect(error.description.hasPrefix("poold.toml"))
                #expect(!error.description.contains(":hunter2"), "\(error)")
                refused += 1
            }
        }
        #expect(parsed > 0 && refused > 0)
    }
}

private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
