import ControlClient
import ControlProtocol
import Foundation
import Testing

/// A fake systemd notification socket: a bound datagram socket that collects what poold
/// sends with sd_notify.
final class NotifyListener {
    let path: String
    private let fd: Int32
    private(set) var messages: [[String: String]] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw TestFailure("cannot bind \(path)") }
    }

    deinit { close(fd) }

    /// Waits until a message has `key` (= `value`, if given); returns it.
    @discardableResult
    func waitFor(_ key: String, _ value: String? = nil, timeout: Duration = .seconds(10)) throws -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        var seen = 0
        while ContinuousClock.now < deadline {
            while seen < messages.count {
                let message = messages[seen]
                seen += 1
                if let found = message[key], value == nil || found == value { return message }
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            var message: [String: String] = [:]
            for line in String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { message[String(parts[0])] = String(parts[1]) }
            }
            messages.append(message)
        }
        throw TestFailure("no \(key)\(value.map { "=\($0)" } ?? "") within \(timeout); got \(messages)")
    }
}

/// poold's notifications to systemd, through a fake NOTIFY_SOCKET (no systemd needed).
@Suite(.serialized, .timeLimit(.minutes(1)))
struct NotifyTests {
    @Test func readyStatusReloadingStoppingAndWatchdog() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let listener = try NotifyListener(path: directory + "/notify.sock")
        let daemon = try DaemonProcess(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"], directory: directory)

        let ready = try listener.waitFor("READY", "1")
        #expect(ready["STATUS"]?.hasPrefix("ready · 1 pools · 0/4 busy · 0 waiting") == true, "\(ready)")
        try listener.waitFor("WATCHDOG", "1")
        try listener.waitFor("WATCHDOG", "1")  // keeps pinging, at half the interval

        #expect(try daemon.request(["op": .string("reload")]).ok)
        let reloading = try listener.waitFor("RELOADING", "1")
        #expect(UInt64(reloading["MONOTONIC_USEC"] ?? "") ?? 0 > 0, "RELOADING=1 carries MONOTONIC_USEC")
        try listener.waitFor("READY", "1")

        daemon.signal(SIGTERM)
        let stopping = try listener.waitFor("STOPPING", "1")
        #expect(stopping["STATUS"]?.hasPrefix("stopping: ") == true, "\(stopping)")
        #expect(daemon.waitForExit() == 0)
    }
}

/// Socket activation without systemd: `systemd-socket-activate` binds the socket and starts
/// poold on the first connection, passing the socket as fd 3 (LISTEN_FDS).
@Suite(.serialized, .timeLimit(.minutes(1)))
struct SocketActivationTests {
    @Test func pooldTakesThePassedSocketAndLeavesItInPlace() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/activated.sock"
        let config = directory + "/poold.toml"
        try """
        [daemon]
        control_socket = "\(directory)/unused.sock"
        shutdown_grace = "1s"

        [[pool]]
        name = "main"
        path = "\(directory)/main.db"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let activator = Process()
        activator.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-socket-activate")
        activator.arguments = ["-l", socket, DaemonProcess.binary, "--config", config]
        let log = directory + "/activate.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        activator.standardError = FileHandle(forWritingAtPath: log)
        try activator.run()
        defer {
            if activator.isRunning { kill(activator.processIdentifier, SIGKILL) }
            activator.waitUntilExit()
        }
        var reply: JSONObject?
        for _ in 0..<200 where reply == nil {
            if FileManager.default.fileExists(atPath: socket), let client = try? ControlClient(path: socket) {
                reply = try? client.request(["op": .string("status")], timeout: .seconds(10))
            }
            if reply == nil { usleep(20_000) }
        }
        let status = try #require(
            reply,
            "no answer on the activated socket: \(String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self))")
        #expect(status["state"] == .string("ready"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/unused.sock"), "control_socket is ignored when systemd passes one")
        kill(activator.processIdentifier, SIGTERM)  // systemd-socket-activate execs poold: same pid
        let deadline = ContinuousClock.now + .seconds(10)
        while activator.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        #expect(!activator.isRunning)
        #expect(activator.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: socket), "the socket systemd owns is not unlinked")
    }
}
