public import ControlProtocol
import PoolCore

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking client of the control socket, for poolctl and for tests: one connection,
/// lines out, lines in.
public final class ControlClient {
    public enum Failure: Error, CustomStringConvertible {
        /// The daemon cannot be reached or the connection broke (poolctl exit 3).
        case unreachable(String)
        /// No answer within the wait (poolctl exit 4).
        case noAnswer(String)

        public var description: String {
            switch self {
            case .unreachable(let message), .noAnswer(let message): message
            }
        }
    }

    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    /// Connects to the socket at `path`.
    public init(path: String) throws(Failure) {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .unreachable("cannot create a socket: \(Self.errorText(errno))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            Glibc.close(fd)
            throw .unreachable("the socket path is too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            raw[path.utf8.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected != 0 {
            let code = errno
            Glibc.close(fd)
            var hint = "is poold running? try: make run"
            if code == EACCES { hint = "you may not open it: ask for the socket's group (socket_group)" }
            throw .unreachable("cannot connect to \(path): \(Self.errorText(code)) (\(hint))")
        }
        self.fd = fd
    }

    deinit {
        if !closed { Glibc.close(fd) }
    }

    /// Sends raw bytes as they are.
    public func send(_ bytes: [UInt8]) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreachable("lost the connection to \(path): \(Self.errorText(errno))")
            }
            sent += n
        }
    }

    /// Sends one line (a "\n" is added).
    public func send(line: String) throws(Failure) {
        try send(Array((line + "\n").utf8))
    }

    /// The next line (without "\n"), or nil at EOF.
    public func readLine(timeout: Duration? = nil) throws(Failure) -> [UInt8]? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        // Bytes already searched for "\n": a long answer arrives in many reads, and must not
        // be searched again from its start after each one.
        var scanned = 0
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            scanned = buffer.count
            var wait: Int32 = -1
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                if left <= .zero { throw .noAnswer("no answer from poold within \(timeout.map { $0.limitDescription } ?? "")") }
                wait = Int32(clamping: left.milliseconds + 1)
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, wait)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .unreachable("lost the connection to \(path): \(Self.errorText(errno))")
            }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreachable("lost the connection to \(path): \(Self.errorText(errno))")
            }
            if n == 0 {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return buffer
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// The next reply, parsed.
    public func readReply(timeout: Duration? = nil) throws(Failure) -> JSONObject? {
        guard let line = try readLine(timeout: timeout) else { return nil }
        guard case .object(let object)? = try? JSON.parse(line) else {
            throw .unreachable("poold sent a line that is not a JSON object: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        return object
    }

    /// Sends one request and waits for its reply (no pipelining).
    public func request(_ fields: JSONObject, timeout: Duration? = nil) throws(Failure) -> JSONObject {
        try send(line: JSON.encode(.object(fields)))
        guard let reply = try readReply(timeout: timeout) else {
            throw .unreachable("poold closed the connection without answering (is it stopping?)")
        }
        return reply
    }

    /// Half-close: no more requests, answers still welcome.
    public func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    static func errorText(_ code: Int32) -> String {
        switch code {
        case ENOENT: "no such file"
        case ECONNREFUSED: "connection refused"
        case EACCES: "permission denied"
        default: String(cString: strerror(code))
        }
    }
}
