import ControlClient
import ControlProtocol
import Foundation
import Testing

/// A real poold started from the build folder with a temporary config, driven over its socket
/// and with signals. Everything it creates lives in a temporary directory removed afterwards.
final class DaemonProcess: @unchecked Sendable {
    let directory: String
    let socket: String
    let configPath: String
    let database: String
    let process: Process
    let logPath: String
    private var exited = false

    /// The poold binary next to the test bundle (`swift build` puts both in one folder).
    static var binary: String {
        if let override = ProcessInfo.processInfo.environment["POOLD_BIN"] { return override }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("poold").path
    }

    /// `pools` is TOML for the [[pool]]/[[job]] tables; `@DIR@` becomes the temporary directory.
    /// `wrapper`: a command poold is started under (e.g. `prlimit --nofile=64:64`).
    init(
        grace: String = "3s", extra daemon: String = "", pools: String? = nil, environment: [String: String] = [:],
        directory given: String? = nil, wrapper: [String] = []
    ) throws {
        directory = try given ?? Self.makeTemporaryDirectory()
        socket = directory + "/control.sock"
        configPath = directory + "/poold.toml"
        database = directory + "/main.db"
        logPath = directory + "/poold.log"
        let poolTables =
            pools ?? """
                [[pool]]
                name = "main"
                kind = "sqlite"
                path = "@DIR@/main.db"
                min = 1
                max = 4
                max_waiters = 256
                acquire_timeout = "2s"
                job_timeout = "10s"
                allow_adhoc = true

                [[job]]
                name = "count"
                pool = "main"
                sql = "SELECT count(*) AS n FROM kv"

                [[job]]
                name = "put"
                pool = "main"
                sql = "INSERT INTO kv(k, v) VALUES (?1, ?2)"
                transaction = true
                """
        let config = """
            [daemon]
            control_socket = "\(socket)"
            shutdown_grace = "\(grace)"
            \(daemon)

            \(poolTables.replacingOccurrences(of: "@DIR@", with: directory))
            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = Process()
        if let program = wrapper.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(wrapper.dropFirst()) + [Self.binary, "--config", configPath]
        } else {
            process.executableURL = URL(fileURLWithPath: Self.binary)
            process.arguments = ["--config", configPath]
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "WATCHDOG_USEC")
        env.removeValue(forKey: "JOURNAL_STREAM")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        try process.run()
        try waitForSocket()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        // POOLD_TEST_KEEP_LOGS=DIR keeps every poold's log there, to look into a failure.
        if let keep = ProcessInfo.processInfo.environment["POOLD_TEST_KEEP_LOGS"] {
            try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            try? FileManager.default.copyItem(
                atPath: logPath, toPath: keep + "/" + URL(fileURLWithPath: directory).lastPathComponent + ".log")
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/poold-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        return String(cString: made)
    }

    private func waitForSocket() throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let client = try? ControlClient(path: socket) {
                if let reply = try? client.request(["op": .string("ping")], timeout: .seconds(5)), reply["ok"] == .bool(true) {
                    return
                }
            }
            if !process.isRunning { throw TestFailure("poold exited early (status \(process.terminationStatus)):\n\(log)") }
            usleep(20_000)
        }
        throw TestFailure("poold did not answer on \(socket) within 20s:\n\(log)")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func client() throws -> ControlClient {
        try ControlClient(path: socket)
    }

    /// Sends one request on a fresh connection and returns the reply.
    func request(_ fields: JSONObject, timeout: Duration = .seconds(30)) throws -> JSONObject {
        try client().request(fields, timeout: timeout)
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for poold to exit; its exit status, or nil if it is still running after `timeout`.
    func waitForExit(timeout: Duration = .seconds(30)) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        return process.terminationStatus
    }

    /// Runs SQL directly on the database file with the sqlite3 library, bypassing poold.
    func sqlite(_ sql: String) throws -> String {
        let run = Process()
        run.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        run.arguments = [database, sql]
        let out = Pipe()
        run.standardOutput = out
        try run.run()
        run.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(
            in: .whitespacesAndNewlines)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension JSONObject {
    var ok: Bool { self["ok"] == .bool(true) }

    var errorCode: String? {
        guard case .object(let error)? = self["error"], case .string(let code)? = error["code"] else { return nil }
        return code
    }

    var errorMessage: String? {
        guard case .object(let error)? = self["error"], case .string(let message)? = error["message"] else { return nil }
        return message
    }

    var rows: [[JSONValue]]? {
        guard case .array(let rows)? = self["rows"] else { return nil }
        return rows.compactMap { if case .array(let cells) = $0 { cells } else { nil } }
    }
}

/// SQL that keeps SQLite busy for a while (about `millions` × 0.4 s here) and can be interrupted.
func busySQL(millions: Int) -> String {
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < \(millions * 1_000_000)) SELECT count(*) FROM c"
}
