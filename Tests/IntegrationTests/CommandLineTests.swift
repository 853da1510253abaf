import ControlClient
import ControlProtocol
import Foundation
import Testing

/// poold's and poolctl's command lines: what an operator types, and the exit codes they get.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CommandLineTests {
    /// Runs a binary from the build folder; its exit status and everything it printed.
    static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (
        status: Int32, out: String, err: String
    ) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent(name)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    @Test func checkConfigPrintsTheEffectiveConfigOrFileLineErrors() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/poold.toml"
        try """
        [[pool]]
        name = "main"
        path = "\(directory)/main.db"
        """.write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try Self.run("poold", ["--check-config", "--config", good])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out.contains("max_waiters = 1024"), "defaults are filled in")

        let bad = directory + "/bad.toml"
        try "[[pool]]\nname = \"main\"\npath = \"x.db\"\nmax_waiters = \"lots\"\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try Self.run("poold", ["--check-config", "--config", bad])
        #expect(refused.status == 1)
        #expect(refused.err.contains("bad.toml:4:"), "\(refused.err)")
        #expect(refused.err.contains("max_waiters"))

        let missing = try Self.run("poold", ["--config", directory + "/nope.toml"])
        #expect(missing.status == 1)
        #expect(missing.err.contains("nope.toml"))

        let version = try Self.run("poold", ["--version"])
        #expect(version.status == 0)
        #expect(!version.out.isEmpty)
    }

    @Test func poolctlExitCodesAndOutput() throws {
        let unreachable = try Self.run("poolctl", ["--socket", "/tmp/poold-no-such.sock", "status"])
        #expect(unreachable.status == 3)
        #expect(unreachable.err.contains("cannot connect to /tmp/poold-no-such.sock: no such file (is poold running? try: make run)"))

        let daemon = try DaemonProcess()
        let socket = ["--socket", daemon.socket]
        let status = try Self.run("poolctl", socket + ["status"])
        #expect(status.status == 0)
        #expect(status.out.contains("ready"))

        let viaEnvironment = try Self.run("poolctl", ["pools"], environment: ["POOLD_SOCKET": daemon.socket])
        #expect(viaEnvironment.status == 0, "$POOLD_SOCKET is the default socket")
        #expect(viaEnvironment.out.contains("main"))

        let query = try Self.run("poolctl", socket + ["run", "main", "SELECT ?1 AS answer", "42"])
        #expect(query.status == 0)
        #expect(query.out.contains("answer"))
        #expect(query.out.contains("42"))

        let json = try Self.run("poolctl", socket + ["--json", "run", "main", "SELECT 1"])
        #expect(json.status == 0)
        let reply = try JSON.parse(json.out.trimmingCharacters(in: .whitespacesAndNewlines))
        guard case .object(let object) = reply else {
            Issue.record("--json did not print a JSON object: \(json.out)")
            return
        }
        #expect(object["ok"] == .bool(true))

        let failed = try Self.run("poolctl", socket + ["run", "main", "SELECT * FROM no_such_table"])
        #expect(failed.status == 1)
        #expect(failed.err.contains("sql_error"))

        let timedOut = try Self.run("poolctl", socket + ["run", "main", busySQL(millions: 1000), "--timeout", "200ms"])
        #expect(timedOut.status == 4)
        #expect(timedOut.err.contains("timeout"))

        let completions = try Self.run("poolctl", ["--generate-completion-script", "bash"])
        #expect(completions.status == 0)
        #expect(completions.out.contains("poolctl"))

        let usage = try Self.run("poolctl", socket + ["resize", "main"])
        #expect(usage.status == 2, "a usage error exits 2")
        #expect(usage.err.contains("--min"))
    }

    @Test func connectionsBeyondMaxConnectionsGetOverloaded() throws {
        let daemon = try DaemonProcess(extra: "max_connections = 2")
        // A connection that answers a ping holds a slot (the start-up probe's may linger a moment).
        func holdSlot() throws -> ControlClient {
            for _ in 0..<100 {
                let client = try daemon.client()
                if (try? client.request(["op": .string("ping")], timeout: .seconds(5)).ok) == true { return client }
                usleep(20_000)
            }
            throw TestFailure("no free connection slot")
        }
        let first = try holdSlot()
        let second = try holdSlot()
        #expect(try first.request(["op": .string("ping")], timeout: .seconds(5)).ok)
        let third = try daemon.client()
        let refused = try #require(try third.readReply(timeout: .seconds(5)))
        #expect(refused.errorCode == "overloaded")
        #expect(refused["id"] == .null)
        #expect(try third.readLine(timeout: .seconds(5)) == nil, "then the connection is closed")
        second.close()
        third.close()
        var answered = false
        for _ in 0..<100 where !answered {
            usleep(20_000)
            answered = (try? daemon.request(["op": .string("ping")], timeout: .seconds(5)).ok) == true
        }
        #expect(answered, "a slot frees when a client leaves")
    }
}
