import ControlClient
import ControlProtocol
import Foundation
import Testing

/// Smaller promises of docs/PROTOCOL.md and docs/CONFIG.md that only show when pushed: a burst of connects, a config that
/// sets only the maximum job timeout.
@Suite(.timeLimit(.minutes(2)))
struct ContractTests {
    /// 600 connects while poold accepts nothing (it is stopped with SIGSTOP) all wait in the
    /// listen backlog: none fails with EAGAIN, and each is served once poold goes on.
    @Test func aBurstOfConnectsWaitsInTheBacklog() throws {
        let daemon = try DaemonProcess()
        daemon.signal(SIGSTOP)
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var refused: [String] = []
        for _ in 0..<600 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { break }
            if Self.connect(fd, to: daemon.socket) != 0 {
                refused.append(String(cString: strerror(errno)))
                close(fd)
                continue
            }
            sockets.append(fd)
        }
        daemon.signal(SIGCONT)
        #expect(refused.isEmpty, "\(refused.count) of 600 connects failed, the first with \(refused.first ?? "")")
        let ping = Array(#"{"id":1,"op":"ping"}"#.utf8) + [0x0A]
        var answered = 0
        for fd in sockets {
            var flags = fcntl(fd, F_GETFL)
            flags &= ~O_NONBLOCK
            _ = fcntl(fd, F_SETFL, flags)
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard ping.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == ping.count else { continue }
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0, String(decoding: buffer[..<n], as: UTF8.self).contains(#""ok":true"#) { answered += 1 }
        }
        #expect(answered == sockets.count, "\(answered) of \(sockets.count) connections were served")
    }

    static func connect(_ fd: Int32, to path: String) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// `max_job_timeout = "1s"` on its own is a valid config: `job_timeout` defaults to
    /// min(30s, max_job_timeout), and a job that asks for no timeout gets that second.
    @Test func maxJobTimeoutAloneSetsTheDefault() throws {
        let daemon = try DaemonProcess(
            pools: """
                [[pool]]
                name = "main"
                kind = "sqlite"
                path = "@DIR@/main.db"
                max_job_timeout = "1s"
                allow_adhoc = true
                """)
        let started = ContinuousClock.now
        let reply = try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string(busySQL(millions: 1000))])
        let took = started.duration(to: .now)
        #expect(reply.errorCode == "timeout", "\(reply)")
        #expect(reply.errorMessage?.contains("exceeded 1s") == true, "\(reply)")
        #expect(took >= .milliseconds(900) && took < .seconds(3), "the job was stopped after \(took)")
        let tooLong = try daemon.request([
            "op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1"), "timeout_ms": .int(1500),
        ])
        #expect(tooLong.errorCode == "bad_request", "\(tooLong)")
    }

    /// A config replaced by a FIFO (or a device) is refused at once as not a regular file: the
    /// read neither waits for a writer nor holds up anything else (a reload used to hang there,
    /// and with it ping, run and SIGTERM).
    @Test func aConfigThatIsAFIFOIsRefusedAtOnce() throws {
        let daemon = try DaemonProcess()
        try FileManager.default.removeItem(atPath: daemon.configPath)
        #expect(mkfifo(daemon.configPath, 0o644) == 0)
        let started = ContinuousClock.now
        let reply = try daemon.request(["op": .string("reload")], timeout: .seconds(5))
        #expect(reply.errorCode == "bad_config" && reply.errorMessage?.contains("not a regular file") == true, "\(reply)")
        #expect(started.duration(to: .now) < .seconds(2), "the reload took \(started.duration(to: .now))")
        daemon.signal(SIGHUP)
        usleep(200_000)
        let pinged = ContinuousClock.now
        #expect(try daemon.request(["op": .string("ping")], timeout: .seconds(5)).ok)
        #expect(try daemon.request(["op": .string("run"), "pool": .string("main"), "sql": .string("SELECT 1")], timeout: .seconds(5)).ok)
        #expect(pinged.duration(to: .now) < .seconds(1), "poold was held up after a SIGHUP")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 0)
    }
}
