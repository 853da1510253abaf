#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads small files (the config, a password file) whole, with errors in plain words.
public enum FileBytes {
    public struct Failure: Error, Sendable {
        /// "no such file", "permission denied", …
        public var reason: String
        /// The file is larger than the limit.
        public var tooLarge: Bool
    }

    /// The file's bytes; refuses directories, devices and anything over `limit` bytes.
    public static func read(path: String, limit: Int) throws(Failure) -> [UInt8] {
        func failure(_ reason: String, tooLarge: Bool = false) -> Failure { Failure(reason: reason, tooLarge: tooLarge) }
        // Non-blocking: opening a FIFO for reading would otherwise wait for a writer (a config
        // replaced by a FIFO hung a reload). It is refused below as not a regular file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw failure(describe(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(describe(errno)) }
        if (info.st_mode & S_IFMT) == S_IFDIR { throw failure("is a directory") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw failure("not a regular file") }
        guard Int(info.st_size) <= limit else { throw failure("larger than \(limit) bytes", tooLarge: true) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(describe(errno))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
            if bytes.count > limit { throw failure("larger than \(limit) bytes", tooLarge: true) }
        }
        return bytes
    }

    /// The file's text (UTF-8, invalid sequences repaired).
    public static func readText(path: String, limit: Int) throws(Failure) -> String {
        String(decoding: try read(path: path, limit: limit), as: UTF8.self)
    }

    static func describe(_ code: Int32) -> String {
        switch code {
        case ENOENT: "no such file"
        case EACCES, EPERM: "permission denied"
        case EISDIR: "is a directory"
        case ENOTDIR: "a component of the path is not a directory"
        case ELOOP: "too many levels of symbolic links"
        case ENAMETOOLONG: "the path is too long"
        default:
            if let message = strerror(code) {
                String(cString: message).lowercased()
            } else {
                "error \(code)"
            }
        }
    }
}
