import Foundation
import Testing

/// A blocking TCP client on loopback, for talking HTTP to poold's metrics endpoint (and to a
/// Prometheus) byte by byte: well-formed requests, and the ones a misbehaving client sends.
final class TCPClient {
    private(set) var fd: Int32

    init(port: Int, host: String = "127.0.0.1") throws {
        let v6 = host.contains(":")
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        let connected: Int32
        if v6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET6, host, &address.sin6_addr)
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, host, &address.sin_addr)
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        guard connected == 0 else {
            let error = errno
            Glibc.close(fd)
            fd = -1
            throw ConnectFailure(errno: error)
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Sends every byte; false if the peer has gone (reset, closed).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Whether something (bytes or the end) can be read within `timeout`.
    func isReadable(within timeout: Duration) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return poll(&poller, 1, ms) > 0
    }

    /// Everything until the peer closes (a reset ends it too, after what came before it); nil
    /// if the peer has not closed within `timeout`.
    func readToEnd(timeout: Duration = .seconds(30)) -> [UInt8]? {
        let deadline = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero, isReadable(within: left) else { return nil }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                bytes += chunk[..<n]
            } else if n == 0 || errno == ECONNRESET {
                return bytes
            } else if errno != EINTR && errno != EAGAIN {
                return bytes
            }
        }
    }
}

struct ConnectFailure: Error, CustomStringConvertible {
    var errno: Int32
    var description: String { "connect: \(String(cString: strerror(errno)))" }
}

/// One HTTP response as read off the wire.
struct HTTPReply: CustomStringConvertible {
    var status: Int
    /// Names lowercased.
    var headers: [String: String]
    var body: String

    /// nil if `bytes` is not a whole response.
    init?(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusLine = lines[0].split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else { return nil }
        self.status = status
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        body = String(text[split.upperBound...])
    }

    var description: String { "HTTP \(status) \(headers) \(body.prefix(300))" }
}

enum HTTP {
    /// Sends one request on a fresh connection and reads the response to the end (the
    /// endpoint closes every connection after its answer).
    static func request(port: Int, _ path: String, host: String = "127.0.0.1") throws -> HTTPReply {
        try request(port: port, "GET", path, host: host)
    }

    /// `version`: "1.0" for a server that keeps HTTP/1.1 connections open (Prometheus), and
    /// answers it chunked.
    static func request(
        port: Int, _ method: String, _ path: String, host: String = "127.0.0.1", headers: [String] = [], version: String = "1.1"
    ) throws -> HTTPReply {
        let client = try TCPClient(port: port, host: host)
        let lines = ["\(method) \(path) HTTP/\(version)", "Host: poold"] + headers
        client.send(lines.joined(separator: "\r\n") + "\r\n\r\n")
        guard let bytes = client.readToEnd() else { throw TestFailure("no complete answer to \(method) \(path) within 30s") }
        guard let reply = HTTPReply(bytes) else {
            throw TestFailure("not an HTTP response to \(method) \(path): \(String(decoding: bytes.prefix(300), as: UTF8.self))")
        }
        return reply
    }

    /// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestFailure("no free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A socket listening on `127.0.0.1:port`, so that poold finds the port in use; closed
    /// when the returned closure is called.
    static func occupy(port: Int) throws -> () -> Void {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok, listen(fd, 1) == 0 else {
            Glibc.close(fd)
            throw TestFailure("cannot occupy port \(port): \(String(cString: strerror(errno)))")
        }
        return { Glibc.close(fd) }
    }

    /// Whether anything accepts connections on the port.
    static func isListening(port: Int, host: String = "127.0.0.1") -> Bool {
        (try? TCPClient(port: port, host: host)) != nil
    }
}

/// A program from Debian's prometheus package (`make deps` installs it).
enum PrometheusTools {
    static func path(_ name: String) throws -> String {
        for directory in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw TestFailure("\(name) is not installed: `make deps` installs Debian's prometheus package, which has it")
    }

    /// `promtool check metrics` on `text`: its exit status and what it printed.
    static func checkMetrics(_ text: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try path("promtool"))
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: printed, as: UTF8.self))
    }
}

/// A real Prometheus server scraping one target every second, with everything it writes in a
/// temporary directory (its own config and TSDB: nothing of /etc/prometheus, never the packaged
/// service). Stopped by its pid.
final class PrometheusServer {
    let directory: String
    let port: Int
    let process = Process()
    let logPath: String

    init(scraping target: String) throws {
        directory = try DaemonProcess.makeTemporaryDirectory()
        port = try HTTP.freePort()
        logPath = directory + "/prometheus.log"
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: poold
                static_configs:
                  - targets: ["\(target)"]
            """
        try config.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: try PrometheusTools.path("prometheus"))
        process.arguments = [
            "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
            "--web.listen-address=127.0.0.1:\(port)", "--web.console.templates=\(directory)/consoles",
            "--web.console.libraries=\(directory)/console_libraries",
        ]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
    }

    deinit {
        let pid = process.processIdentifier
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The result vector of an instant query, as `[labels, value]` pairs; nil until Prometheus
    /// answers.
    func query(_ expression: String) -> [([String: String], String)]? {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        guard let reply = try? HTTP.request(port: port, "GET", "/api/v1/query?query=\(encoded)", version: "1.0"), reply.status == 200,
            let json = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
            let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]]
        else { return nil }
        return result.compactMap { sample in
            guard let labels = sample["metric"] as? [String: String], let value = sample["value"] as? [Any], value.count == 2,
                let text = value[1] as? String
            else { return nil }
            return (labels, text)
        }
    }
}
