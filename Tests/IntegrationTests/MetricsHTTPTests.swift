import ControlClient
import ControlProtocol
import Foundation
import Synchronization
import Testing

/// The Prometheus scrape endpoint (`[metrics] listen`, issue 17) on a real poold: what it
/// serves, to promtool and to a real Prometheus; what it does with bad requests, without the
/// control socket noticing; and its listener at start, on reload and on SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct MetricsHTTPTests {
    /// poold with `[metrics] listen` on a free port of 127.0.0.1 (or `listen` as given).
    static func daemon(listen: String? = nil, grace: String = "3s") throws -> (DaemonProcess, Int) {
        let port = try HTTP.freePort()
        let daemon = try DaemonProcess(grace: grace, extra: "\n[metrics]\nlisten = \"\(listen ?? "127.0.0.1:\(port)")\"\n")
        return (daemon, port)
    }

    /// What `poold --version` says poold was built from: `0.1.0 (commit 1a2b3c4d5e6f)`.
    static var build: (version: String, commit: String) {
        get throws {
            let out = try CommandLineTests.run("poold", ["--version"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
            let parts = out.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[1].hasPrefix("(commit "), parts[1].hasSuffix(")") else {
                throw TestFailure("poold --version: \(out)")
            }
            return (String(parts[0]), String(parts[1].dropFirst("(commit ".count).dropLast()))
        }
    }

    /// Runs one job on the daemon's "main" pool, so that its counters have something to say.
    static func runJob(_ daemon: DaemonProcess) throws {
        let reply = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")])
        #expect(reply.ok, "\(reply)")
    }

    // MARK: What it serves

    @Test func metricsServesWhatTheMetricsOpServes() throws {
        let build = try Self.build
        let (daemon, port) = try Self.daemon()
        try Self.runJob(daemon)
        let reply = try HTTP.request(port: port, "/metrics")
        #expect(reply.status == 200, "\(reply)")
        #expect(reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(reply.headers["content-length"] == "\(reply.body.utf8.count)")
        #expect(reply.headers["connection"] == "close")
        for series in [
            #"poold_jobs_total{pool="main",outcome="succeeded"} 1"#, #"poold_jobs_total{pool="main",outcome="timed_out"} 0"#,
            #"poold_pool_open{pool="main"} "#, #"poold_pool_idle{pool="main"} "#, #"poold_pool_leased{pool="main"} "#,
            #"poold_pool_waiting{pool="main"} 0"#, #"poold_job_wait_seconds_bucket{pool="main",le="+Inf"} 1"#,
            #"poold_job_exec_seconds_count{pool="main"} 1"#, "poold_uptime_seconds ",
            #"poold_build_info{version="\#(build.version)",commit="\#(build.commit)"} 1"#,
        ] {
            #expect(reply.body.contains(series), "\(series) in:\n\(reply.body)")
        }
        // The same function makes both: the same series, with the same values once the clock's
        // own (uptime) is set aside.
        guard case .string(let op)? = try daemon.request(["op": .string("metrics")])["text"] else {
            Issue.record("metrics has no text")
            return
        }
        func samples(_ text: String) -> [Substring] {
            text.split(separator: "\n").filter { !$0.hasPrefix("poold_uptime_seconds ") && !$0.hasPrefix("poold_control_connections ") }
                .sorted()
        }
        #expect(samples(reply.body) == samples(op))

        let head = try HTTP.request(port: port, "HEAD", "/metrics")
        #expect(head.status == 200 && head.body.isEmpty, "\(head)")
        #expect(Int(head.headers["content-length"] ?? "") ?? 0 > 0, "HEAD says how long GET's body is: \(head)")
        let query = try HTTP.request(port: port, "/metrics?format=whatever")
        #expect(query.status == 200 && query.body.contains("poold_jobs_total"), "a query string is ignored: \(query)")
    }

    @Test func aRemovedPoolsGaugesAreGoneItsCountersStay() throws {
        let (daemon, port) = try Self.daemon()
        let base = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let extra = "\n[[pool]]\nname = \"extra\"\npath = \"\(daemon.directory)/extra.db\"\nmin = 1\nallow_adhoc = true\n"
        try (base + extra).write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.request(["op": .string("reload")]).ok)
        let job = try daemon.request(["op": .string("run"), "pool": .string("extra"), "sql": .string("SELECT 1")])
        #expect(job.ok, "\(job)")
        let with = try HTTP.request(port: port, "/metrics").body
        #expect(with.contains(#"poold_pool_open{pool="extra"} 1"#), "\(with)")
        try base.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.request(["op": .string("reload")]).ok)
        let without = try HTTP.request(port: port, "/metrics").body
        #expect(!without.contains(#"poold_pool_open{pool="extra"}"#), "a removed pool shows no resources:\n\(without)")
        #expect(!without.contains(#"poold_pool_max{pool="extra"}"#), "\(without)")
        #expect(without.contains(#"poold_jobs_total{pool="extra",outcome="succeeded"} 1"#), "counters never go back:\n\(without)")
        #expect(without.contains(#"poold_pool_open{pool="main"}"#), "\(without)")
    }

    @Test func promtoolAcceptsWhatMetricsServes() throws {
        let (daemon, port) = try Self.daemon()
        try Self.runJob(daemon)
        _ = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT * FROM no_such_table")])
        let reply = try HTTP.request(port: port, "/metrics")
        #expect(reply.status == 200)
        let check = try PrometheusTools.checkMetrics(reply.body)
        #expect(check.status == 0, "promtool check metrics:\n\(check.output)\non:\n\(reply.body)")
        #expect(check.output.isEmpty, "promtool has lint remarks:\n\(check.output)")
    }

    @Test func aRealPrometheusScrapesThePoolsSeries() throws {
        let (daemon, port) = try Self.daemon()
        try Self.runJob(daemon)
        try Self.runJob(daemon)
        let prometheus = try PrometheusServer(scraping: "127.0.0.1:\(port)")
        var found: [([String: String], String)] = []
        let scraped = waitUntil(.seconds(90)) {
            found = (prometheus.query("poold_jobs_total") ?? []).filter { $0.0["pool"] == "main" }
            return found.contains { $0.0["outcome"] == "succeeded" && $0.1 == "2" }
        }
        #expect(scraped, "Prometheus's answer: \(found)\nits log:\n\(prometheus.log.suffix(3000))")
        #expect(found.allSatisfy { $0.0["job"] == "poold" && $0.0["instance"] == "127.0.0.1:\(port)" }, "\(found)")
        #expect(Set(found.compactMap { $0.0["outcome"] }) == ["succeeded", "failed", "timed_out", "cancelled", "overloaded"])
        let up = prometheus.query("up") ?? []
        #expect(up.contains { $0.0["job"] == "poold" && $0.1 == "1" }, "the scrape succeeded: \(up)")
        let build = prometheus.query("poold_build_info") ?? []
        let built = try Self.build
        #expect(build.contains { $0.0["version"] == built.version && $0.0["commit"] == built.commit }, "\(build)")
    }

    @Test func healthzSaysReadyThenStoppingAndSigtermExitsZero() throws {
        let (daemon, port) = try Self.daemon(grace: "20s")
        let ready = try HTTP.request(port: port, "/healthz")
        #expect(ready.status == 200 && ready.body == "ready\n", "\(ready)")
        // A job that outlives the SIGTERM keeps poold in its grace, still serving /healthz.
        let running = try daemon.client()
        try running.send(line: #"{"id":1,"op":"run","pool":"main","sql":"\#(busySQL(millions: 8))"}"#)
        #expect(try waitUntil(.seconds(10)) { try jobCount(daemon) == 1 })
        // A client that never finishes its request: stopping closes it.
        let stalled = try TCPClient(port: port)
        stalled.send("GET /metrics HTTP/1.1\r\n")
        daemon.signal(SIGTERM)
        var stopping: HTTPReply?
        _ = waitUntil(.seconds(10)) {
            stopping = try? HTTP.request(port: port, "/healthz")
            return stopping?.status == 503
        }
        #expect(stopping?.status == 503 && stopping?.body == "stopping\n", "\(String(describing: stopping))")
        #expect(try HTTP.request(port: port, "/metrics").status == 200, "metrics are still served while jobs finish")
        daemon.signal(SIGTERM)  // the second one skips the grace: the job is cancelled
        let answer = try #require(try running.readReply(timeout: .seconds(20)))
        #expect(answer.errorCode == "cancelled", "\(answer)")
        #expect(daemon.waitForExit() == 0, "\(daemon.log)")
        stalled.close()
    }

    // MARK: Bad requests

    @Test func otherMethodsAndPathsAreRefused() throws {
        let (daemon, port) = try Self.daemon()
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            for path in ["/metrics", "/healthz"] {
                let reply = try HTTP.request(port: port, method, path, headers: ["Content-Length: 0"])
                #expect(reply.status == 405, "\(method) \(path): \(reply)")
                #expect(reply.headers["allow"] == "GET, HEAD", "\(reply)")
            }
        }
        for path in ["/", "/metrics/", "/metricsx", "/healthz/x", "/../metrics", "*"] {
            #expect(try HTTP.request(port: port, path).status == 404, "\(path)")
        }
        #expect(try HTTP.request(port: port, "POST", "/nope", headers: ["Content-Length: 3"]).status == 404)
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test(arguments: [
        ("garbage", Array("\u{1}\u{2}hello there\r\n\r\n".utf8), 400),
        ("no HTTP version", Array("GET /metrics\r\n\r\n".utf8), 400),
        ("a bad header line", Array("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n".utf8), 400),
        ("binary", [UInt8](repeating: 0xff, count: 512), 400),
        ("a huge header", Array("GET /metrics HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 64 * 1024))\r\n\r\n".utf8), 431),
        ("many headers", Array(("GET /metrics HTTP/1.1\r\n" + String(repeating: "X-A: b\r\n", count: 2000) + "\r\n").utf8), 431),
        ("a huge URI", Array("GET /metrics?\(String(repeating: "a", count: 20000)) HTTP/1.1\r\n\r\n".utf8), 431),
    ])
    func badRequestsGetAnErrorAndAClose(what: String, request: [UInt8], status: Int) throws {
        let (daemon, port) = try Self.daemon()
        let client = try TCPClient(port: port)
        client.send(request)  // poold may answer and close before taking all of it
        let bytes = try #require(client.readToEnd(), "\(what): the connection is closed")
        let reply = try #require(HTTPReply(bytes), "\(what): \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        #expect(reply.status == status, "\(what): \(reply)")
        #expect(reply.headers["connection"] == "close", "\(what): \(reply)")
        #expect(try HTTP.request(port: port, "/healthz").status == 200, "\(what): the endpoint still serves")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test func aClientSendingSlowlyIsCutOffByTheTimeout() throws {
        let (daemon, port) = try Self.daemon()
        let client = try TCPClient(port: port)
        client.send("GET /metrics HTTP/1.1\r\nX-Slow: ")
        // One byte every 250 ms: the header would take 60 s to end, twelve times the endpoint's
        // limit. poold answers and closes long before.
        var sent = 0
        while sent < 240, !client.isReadable(within: .milliseconds(250)) {
            guard client.send("a") else { break }
            sent += 1
        }
        let bytes = try #require(client.readToEnd(), "the connection is closed")
        let reply = try #require(HTTPReply(bytes), "\(String(decoding: bytes, as: UTF8.self))")
        #expect(reply.status == 408, "\(reply)")
        #expect(sent < 240, "poold cut the client off before its request ended")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test func pastTheConnectionLimitOneMoreIsAnswered503() throws {
        let (daemon, port) = try Self.daemon()
        // Eight connections that have not sent their request hold every slot.
        let held = try (0..<8).map { _ in try TCPClient(port: port) }
        let extra = try TCPClient(port: port)
        let bytes = try #require(extra.readToEnd(timeout: .seconds(10)), "the ninth is answered at once and closed")
        let reply = try #require(HTTPReply(bytes), "\(String(decoding: bytes, as: UTF8.self))")
        #expect(reply.status == 503 && reply.body.contains("8 connections"), "\(reply)")
        for client in held { client.close() }
        #expect(
            waitUntil(.seconds(10)) { (try? HTTP.request(port: port, "/healthz"))?.status == 200 },
            "slots come back as connections close")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test func theControlSocketKeepsAnsweringWhileTheHTTPPortIsAbused() throws {
        let (daemon, port) = try Self.daemon()
        let stop = StopFlag()
        let abusers = 6
        let done = DispatchGroup()
        let requests: [[UInt8]] = [
            Array("GET /metrics HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 32 * 1024))\r\n\r\n".utf8),
            Array("\u{0}\u{1}\u{2} garbage\r\n\r\n".utf8),
            Array("POST /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".utf8) + [UInt8](repeating: 0x61, count: 100_000),
            Array("GET /metrics HTTP/1.1\r\n".utf8),  // and then nothing: holds a slot until the timeout
            Array("GET /metrics HTTP/1.1\r\n\r\n".utf8),
        ]
        for abuser in 0..<abusers {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                var round = abuser
                while !stop.isSet {
                    if let client = try? TCPClient(port: port) {
                        client.send(requests[round % requests.count])
                        if round % requests.count != 3 { _ = client.readToEnd(timeout: .seconds(10)) }
                    }
                    round += 1
                }
            }
        }
        // Every ping on the control socket is answered while that goes on.
        var answered = 0
        for _ in 0..<300 {
            let ping = try daemon.request(["op": .string("ping")], timeout: .seconds(10))
            #expect(ping.ok, "\(ping)")
            if ping.ok { answered += 1 }
            usleep(10_000)
        }
        let job = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 41 + 1")])
        #expect(job.rows == [[.int(42)]], "\(job)")
        stop.set()
        done.wait()
        #expect(answered == 300)
        #expect(
            waitUntil(.seconds(15)) { (try? HTTP.request(port: port, "/metrics"))?.status == 200 },
            "the endpoint serves again once the abuse stops")
    }

    // MARK: The listener: start, reload

    @Test func aBadAddressOrAPortInUseStopsPooldWithTheLine() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try HTTP.freePort()
        let release = try HTTP.occupy(port: port)
        defer { release() }
        let path = directory + "/poold.toml"
        func start(listen: String) throws -> (status: Int32, out: String, err: String) {
            try """
            [daemon]
            control_socket = "\(directory)/control.sock"

            [metrics]
            listen = "\(listen)"

            [[pool]]
            name = "main"
            path = "\(directory)/main.db"
            """.write(toFile: path, atomically: true, encoding: .utf8)
            return try CommandLineTests.run("poold", ["--config", path])
        }
        let inUse = try start(listen: "127.0.0.1:\(port)")
        #expect(inUse.status == 1)
        #expect(
            inUse.err.contains("\(path):5: [metrics]: cannot listen on 127.0.0.1:\(port) (address already in use"), "\(inUse.err)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/control.sock"), "poold stopped before binding its socket")

        let bad = try start(listen: "localhost:\(port)")
        #expect(bad.status == 1)
        #expect(bad.err.contains("\(path):5: [metrics]: listen must be an IP address and a port"), "\(bad.err)")

        let notHere = try start(listen: "192.0.2.1:\(port)")
        #expect(notHere.status == 1)
        #expect(notHere.err.contains("\(path):5: [metrics]: cannot listen on 192.0.2.1:\(port) (no such address"), "\(notHere.err)")
    }

    @Test func aReloadMovesTheListenerOrKeepsTheOldOne() throws {
        let (daemon, port) = try Self.daemon()
        let original = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        func reload(listen: String?) throws -> JSONObject {
            let line = "listen = \"127.0.0.1:\(port)\""
            let text = original.replacingOccurrences(of: line, with: listen.map { "listen = \"\($0)\"" } ?? "")
            try text.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
            return try daemon.request(["op": .string("reload")])
        }
        let lineOfListen = (original.components(separatedBy: "\n").firstIndex { $0.hasPrefix("listen = ") } ?? -2) + 1

        // A port in use: bad_config at the line; the old listener keeps serving.
        let taken = try HTTP.freePort()
        let release = try HTTP.occupy(port: taken)
        let inUse = try reload(listen: "127.0.0.1:\(taken)")
        release()
        #expect(inUse.errorCode == "bad_config", "\(inUse)")
        #expect(
            inUse.errorMessage?.contains("poold.toml:\(lineOfListen): [metrics]: cannot listen on 127.0.0.1:\(taken)") == true, "\(inUse)")
        #expect(try HTTP.request(port: port, "/healthz").status == 200)

        let bad = try reload(listen: "127.0.0.1:http")
        #expect(bad.errorCode == "bad_config", "\(bad)")
        #expect(bad.errorMessage?.contains("poold.toml:\(lineOfListen): [metrics]: listen must be") == true, "\(bad)")
        #expect(try HTTP.request(port: port, "/healthz").status == 200)

        // A new address: the listener moves.
        let next = try HTTP.freePort()
        let moved = try reload(listen: "127.0.0.1:\(next)")
        #expect(moved.ok, "\(moved)")
        #expect(moved["changes"] == .array([.string("metrics listening on 127.0.0.1:\(next)")]), "\(moved)")
        #expect(try HTTP.request(port: next, "/healthz").status == 200)
        #expect(!HTTP.isListening(port: port), "the old address is let go")

        // The same port on every address, as for a remote Prometheus: poold's own listener on
        // that port is not in the way.
        let wildcard = try reload(listen: "0.0.0.0:\(next)")
        #expect(wildcard.ok, "\(wildcard)")
        #expect(try HTTP.request(port: next, "/metrics").status == 200)

        let v6 = try reload(listen: "[::1]:\(port)")
        #expect(v6.ok, "\(v6)")
        #expect(try HTTP.request(port: port, "/healthz", host: "::1").status == 200)
        #expect(!HTTP.isListening(port: next), "the old address is let go")

        // No [metrics] listen: the listener stops.
        let off = try reload(listen: nil)
        #expect(off["changes"] == .array([.string("metrics listener stopped")]), "\(off)")
        #expect(!HTTP.isListening(port: port, host: "::1"))

        // And it starts again.
        let on = try reload(listen: "127.0.0.1:\(port)")
        #expect(on["changes"] == .array([.string("metrics listening on 127.0.0.1:\(port)")]), "\(on)")
        #expect(try HTTP.request(port: port, "/metrics").status == 200)
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }
}

/// Jobs running in poold, from the `jobs` op.
func jobCount(_ daemon: DaemonProcess) throws -> Int {
    guard case .array(let jobs)? = try daemon.request(["op": .string("jobs")])["jobs"] else { return -1 }
    return jobs.count
}

/// Tells the threads a test started to stop.
final class StopFlag: Sendable {
    private let flag = Atomic(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
