import Logging
import PoolConfig
import SystemdKit

#if canImport(Glibc)
    import Glibc
#endif

/// The control socket's file: whether systemd passed the socket, whether another poold
/// listens on the path, the group it is given.
package enum SocketFile {
    /// The listening socket systemd passed (socket activation), if any: then it owns the file,
    /// and poold neither creates nor unlinks it.
    static var activated: Int32? {
        Systemd.listenFileDescriptors().first(where: Systemd.isUnixStreamListener)
    }

    /// Whether something accepts connections on `path`: a poold already running must not
    /// have its socket taken over. A file left by one that was killed refuses connections,
    /// and is replaced.
    static func isListening(_ path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return connected == 0
    }

    /// socket_group: the socket file's group. A failure is logged, and the socket keeps
    /// poold's group (clients of that group only).
    static func giveSocket(_ path: String, to name: String, logger: Logger) {
        guard let group = getgrnam(name) else {
            logger.error(
                "socket_group names no group on this machine; the socket keeps poold's group", metadata: ["socket_group": "\(name)"])
            return
        }
        if chown(path, uid_t.max, group.pointee.gr_gid) != 0 {
            logger.error(
                "cannot give the control socket to socket_group (poold must be a member of it); it keeps poold's group",
                metadata: [
                    "socket_group": "\(name)", "error": "\(String(cString: strerror(errno)))",
                ])
        }
    }
}

/// The control socket could not be put in place.
package struct BindFailure: Error, CustomStringConvertible {
    var message: String
    package var description: String { message }
}

/// Another process accepts connections on the control socket's path.
package struct SocketInUse: Error, CustomStringConvertible {
    var path: String
    package var description: String {
        "something already accepts connections on \(path) (another poold?); stop it first, or give this one another control_socket"
    }
}
