import ArgumentParser
import BuildInfo
import ControlClient
import ControlProtocol
import PoolCore

#if canImport(Glibc)
    import Glibc
#endif

/// poolctl: a client of poold's control protocol v1. Exit codes: 0 ok, 1 the job or command
/// failed, 2 usage, 3 daemon unreachable, 4 timed out.
@main
struct Poolctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poolctl",
        abstract: "Control poold: status, jobs, statistics, reload, drain, durable queues.",
        discussion: "Exit codes: 0 ok, 1 the job or command failed, 2 usage, 3 poold unreachable, 4 timed out.",
        version: BuildInfo.description,
        subcommands: [
            Status.self, Pools.self, Jobs.self, Stats.self, Metrics.self, Top.self, Ping.self, Run.self,
            Cancel.self, Pause.self, Resume.self, Resize.self, Reload.self, Drain.self, Enqueue.self, Job.self, Queues.self,
        ]
    )

    @OptionGroup var connection: Connection

    /// As ArgumentParser's, except that a usage error exits 2 (docs/PROTOCOL.md, "Error codes"), not 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

struct Connection: ParsableArguments {
    @Option(name: .long, help: "The control socket (default: $POOLD_SOCKET, then /run/poold/control.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print the raw JSON reply.")
    var json = false

    @Option(name: .long, help: "How long to wait for the answer, e.g. 10s (default: the job's timeout + 5s; no limit otherwise).")
    var wait: String?

    var path: String {
        socket ?? getenv("POOLD_SOCKET").map { String(cString: $0) } ?? "/run/poold/control.sock"
    }

    /// Sends `fields` as one request and returns the reply object; exits on transport
    /// failures and on error replies (after printing them).
    func send(_ fields: JSONObject, defaultWait: Duration? = nil) throws -> JSONObject {
        var request = JSONObject()
        request["id"] = .int(1)
        for entry in fields.entries { request[entry.key] = entry.value }
        let line = Array((JSON.encode(.object(request)) + "\n").utf8)
        var limit = defaultWait
        if let wait {
            guard let parsed = parseLimit(wait) else {
                throw ValidationError("--wait must be a duration like 10s or 500ms (got \"\(wait)\")")
            }
            limit = parsed
        }
        let reply: [UInt8]
        do throws(ControlClient.Failure) {
            let client = try ControlClient(path: path)
            try client.send(line)
            guard let answer = try client.readLine(timeout: limit) else {
                throw ControlClient.Failure.unreachable("poold closed the connection without answering (is it stopping?)")
            }
            reply = answer
        } catch {
            switch error {
            case .unreachable(let message):
                printError("poolctl: \(message)")
                throw ExitCode(3)
            case .noAnswer(let message):
                printError("poolctl: \(message)")
                throw ExitCode(4)
            }
        }
        guard case .object(let object)? = try? JSON.parse(reply) else {
            printError("poolctl: poold sent a reply that is not a JSON object")
            throw ExitCode(1)
        }
        if json { print(String(decoding: reply, as: UTF8.self)) }
        if object["ok"] != .bool(true) {
            var code = "error"
            var message = ""
            if case .object(let error)? = object["error"] {
                if case .string(let c)? = error["code"] { code = c }
                if case .string(let m)? = error["message"] { message = m }
            }
            if !json { printError("poolctl: \(code): \(message)") }
            throw ExitCode(code == "timeout" || code == "pool_timeout" ? 4 : 1)
        }
        return object
    }
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Parses `5s`, `250ms`, `2m`, `1h` (and plain seconds).
func parseLimit(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        if suffix == "s", number.hasSuffix("m") { continue }
        if let value = Double(number), value >= 0 { return .milliseconds(Int64(value * Double(factor))) }
    }
    if let seconds = Double(text), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
    return nil
}
