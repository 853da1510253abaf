import ArgumentParser
import ControlClient
import ControlProtocol
import PoolCore

#if canImport(Glibc)
    import Glibc
#endif

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of every pool: state, resources, jobs/s by outcome, wait and exec p50/p99, last error.",
        discussion: """
            Every --interval poolctl asks poold for status, pools and metrics. Jobs/s are the differences of the \
            poold_jobs_total counters between two samples, divided by the time between them. p50 and p99 of wait \
            (queue + acquire) and exec cover only the jobs that finished in that interval: they come from the \
            differences of the poold_job_wait_seconds and poold_job_exec_seconds histogram buckets, interpolated \
            linearly inside the bucket that holds the percentile (as Prometheus's histogram_quantile does), so they are \
            as precise as the buckets (0.1ms to 30s, roughly 1-2-5 steps); beyond 30s they show as ">30s". \
            A "-" means no job finished in the interval, or no interval yet.
            In a terminal the view is redrawn in place on the alternate screen; q, Q or Ctrl-C quits and restores the \
            terminal, as do SIGINT and SIGTERM. On a narrow terminal the rightmost columns are dropped (the last error \
            then gets a line under the table), and long pool names and errors are cut with an ellipsis; no line wraps.
            When stdout is not a terminal, a plain snapshot (no escape sequences) is printed every interval, the first \
            without rates. --once prints one plain snapshot and exits: it takes two samples --interval apart, and the \
            rates and percentiles are over that interval. --json prints each snapshot as one JSON line instead.
            If poold goes away, top exits 3 like every command; with no answer within --wait (default 5s) it exits 4.
            """
    )
    @ParentCommand var root: Poolctl
    var connection: Connection { root.connection }

    @Option(help: "How often to refresh, e.g. 1s or 200ms (at least 100ms).") var interval = "1s"
    @Flag(help: "Print one plain snapshot, over one --interval, and exit.") var once = false

    /// The least --interval: less would make poold build its metrics text all the time.
    static let shortestInterval = Duration.milliseconds(100)

    func validate() throws {
        guard let every = parseLimit(interval), every >= Self.shortestInterval else {
            throw ValidationError("--interval must be a duration of at least 100ms, like 1s or 500ms (got \"\(interval)\")")
        }
        if let wait = connection.wait, parseLimit(wait) == nil {
            throw ValidationError("--wait must be a duration like 10s or 500ms (got \"\(wait)\")")
        }
    }

    func run() throws {
        let every = parseLimit(interval) ?? .seconds(1)
        let wait = connection.wait.flatMap(parseLimit) ?? .seconds(5)
        do {
            let source = try TopSource(path: connection.path, wait: wait)
            let screen = !once && !connection.json && Terminal.isTerminal(STDOUT_FILENO)
            if screen {
                try runOnScreen(source, every: every)
            } else {
                try runPlain(source, every: every)
            }
        } catch let failure as TopFailure {
            // Printed only now, after the screen is left, so that it stays visible.
            printError(failure.message)
            throw ExitCode(failure.code)
        }
    }

    /// `--once`, `--json`, or stdout not a terminal: snapshots as plain lines, flushed each time.
    private func runPlain(_ source: TopSource, every: Duration) throws {
        var previous: TopSnapshot?
        if once {
            previous = try source.snapshot()
            sleep(for: every)
        }
        while true {
            let current = try source.snapshot()
            let rows = TopRow.rows(previous: previous, current: current)
            if connection.json {
                print(JSON.encode(TopView.json(current, rows: rows)))
            } else {
                let title = TopView.title(current, seconds: rows.first?.seconds, every: once ? nil : every, interactive: false)
                for line in TopView.render(title: title, rows: rows, width: nil) { print(line) }
            }
            // stdout itself is a C global Swift 6 will not touch; nil flushes every stream.
            fflush(nil)
            if once { return }
            previous = current
            sleep(for: every - current.at.duration(to: .now))
            if !connection.json { print("") }
        }
    }

    /// The live view: one loop that polls the keyboard and the signal pipe until the next
    /// sample is due. Single-threaded on purpose: nothing to cancel, and nothing else touches
    /// the terminal.
    private func runOnScreen(_ source: TopSource, every: Duration) throws {
        // The first sample before the screen: if poold is not there, the error is printed plainly.
        var current = try source.snapshot()
        var previous: TopSnapshot?
        let keyboard: Int32? = Terminal.isTerminal(STDIN_FILENO) ? STDIN_FILENO : nil
        // The signals are caught from before the terminal changes until after it is restored.
        try SignalPipe.with([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH]) { signals in
            try Terminal.withScreen(output: STDOUT_FILENO, input: keyboard) {
                var keys = keyboard ?? -1
                func draw() {
                    let size = Terminal.size(of: STDOUT_FILENO) ?? (columns: 80, rows: 24)
                    let rows = TopRow.rows(previous: previous, current: current)
                    let title = TopView.title(current, seconds: rows.first?.seconds, every: every, interactive: keyboard != nil)
                    let lines = TopView.render(title: title, rows: rows, width: size.columns, height: size.rows)
                    Terminal.write(
                        STDOUT_FILENO,
                        Terminal.home + lines.joined(separator: Terminal.clearToEndOfLine + "\r\n") + Terminal.clearToEndOfLine
                            + Terminal.clearToEndOfScreen)
                }
                draw()
                var next = current.at + every
                while true {
                    let left = ContinuousClock.now.duration(to: next)
                    if left <= .zero {
                        previous = current
                        current = try source.snapshot()
                        next = max(next + every, current.at)
                        draw()
                        continue
                    }
                    var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0), pollfd(fd: keys, events: Int16(POLLIN), revents: 0)]
                    let ready = poll(&fds, 2, Int32(clamping: left.milliseconds + 1))
                    if ready < 0 {
                        if errno == EINTR { continue }
                        throw TopFailure(code: 1, message: "poolctl: poll failed: \(String(cString: strerror(errno)))")
                    }
                    if fds[0].revents != 0 {
                        var caught = [UInt8](repeating: 0, count: 16)
                        let n = caught.withUnsafeMutableBytes { read(signals, $0.baseAddress, $0.count) }
                        if n > 0 {
                            if caught[0..<n].contains(where: { Int32($0) != SIGWINCH }) { return }
                            draw()
                        }
                    }
                    if fds[1].revents != 0 {
                        var typed = [UInt8](repeating: 0, count: 64)
                        let n = typed.withUnsafeMutableBytes { read(keys, $0.baseAddress, $0.count) }
                        if n <= 0 {
                            // The terminal is gone or closed: stop reading it; SIGHUP or a signal ends top.
                            if n == 0 || errno != EINTR { keys = -1 }
                        } else if typed[0..<n].contains(where: { $0 == UInt8(ascii: "q") || $0 == UInt8(ascii: "Q") || $0 == 3 }) {
                            return
                        }
                    }
                }
            }
        }
    }

    private func sleep(for duration: Duration) {
        guard duration > .zero else { return }
        var request = timespec(tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
        var left = timespec()
        while nanosleep(&request, &left) != 0, errno == EINTR { request = left }
    }
}

/// Why `top` stops early: printed on stderr, then poolctl exits with `code`, as every command
/// does for the same failure (3 unreachable, 4 no answer, 1 an error reply).
struct TopFailure: Error {
    var code: Int32
    var message: String
}

/// poold as `top` sees it: one connection for the whole session, three observer requests a sample.
final class TopSource {
    private let client: ControlClient
    private let wait: Duration

    init(path: String, wait: Duration) throws {
        do throws(ControlClient.Failure) {
            client = try ControlClient(path: path)
        } catch {
            throw Self.failure(error)
        }
        self.wait = wait
    }

    func snapshot() throws -> TopSnapshot {
        let status = try request("status")
        let pools = try request("pools")
        let metrics = try request("metrics")
        return TopSnapshot(at: .now, status: status, pools: pools, metrics: metrics)
    }

    private func request(_ op: String) throws -> JSONObject {
        let reply: JSONObject
        do throws(ControlClient.Failure) {
            reply = try client.request(["id": .int(1), "op": .string(op)], timeout: wait)
        } catch {
            throw Self.failure(error)
        }
        if reply["ok"] != .bool(true) {
            var code = "error"
            var message = ""
            if case .object(let error)? = reply["error"] {
                if case .string(let c)? = error["code"] { code = c }
                if case .string(let m)? = error["message"] { message = m }
            }
            throw TopFailure(code: code == "timeout" || code == "pool_timeout" ? 4 : 1, message: "poolctl: \(code): \(message)")
        }
        return reply
    }

    static func failure(_ error: ControlClient.Failure) -> TopFailure {
        switch error {
        case .unreachable(let message): TopFailure(code: 3, message: "poolctl: \(message)")
        case .noAnswer(let message): TopFailure(code: 4, message: "poolctl: \(message)")
        }
    }
}
