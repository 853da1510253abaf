import CSystemd

#if canImport(Glibc)
    import Glibc
#endif

/// The Swift face of libsystemd's daemon API: notify, watchdog, listen fds.
///
/// Every call is a no-op when poold does not run under systemd (no `NOTIFY_SOCKET`, no
/// passed sockets), so the daemon calls them unconditionally.
public enum Systemd {
    /// Sends one notification (`READY=1`, `STATUS=…`, …). Lines are joined with "\n".
    /// Returns false when systemd is not listening or the message could not be sent.
    @discardableResult
    public static func notify(_ lines: String...) -> Bool {
        notify(lines)
    }

    @discardableResult
    public static func notify(_ lines: [String]) -> Bool {
        let message = lines.joined(separator: "\n")
        return message.withCString { sd_notify(0, $0) } > 0
    }

    /// Whether a notification socket is set (poold runs as a `Type=notify` unit).
    public static var isNotifying: Bool {
        getenv("NOTIFY_SOCKET") != nil
    }

    /// `RELOADING=1` with the monotonic timestamp systemd 253+ wants alongside it.
    public static func reloading() {
        notify("RELOADING=1", "MONOTONIC_USEC=\(monotonicMicroseconds())")
    }

    /// The watchdog interval systemd expects pings within, if the unit sets `WatchdogSec=`.
    public static var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec))
    }

    /// Sockets passed by socket activation (`sd_listen_fds`), starting at fd 3.
    /// The environment variables are left in place (the fds are ours to keep).
    public static func listenFileDescriptors() -> [Int32] {
        let count = sd_listen_fds(0)
        guard count > 0 else { return [] }
        return (0..<count).map { SD_LISTEN_FDS_START + $0 }
    }

    /// Whether fd is a listening Unix stream socket (what poold's control socket must be).
    public static func isUnixStreamListener(_ fd: Int32) -> Bool {
        sd_is_socket_unix(fd, sockStreamValue, 1, nil, 0) > 0
    }

    /// CLOCK_MONOTONIC in microseconds, as systemd's `MONOTONIC_USEC=` and `EXTEND_TIMEOUT_USEC=` count.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    /// Whether stderr is connected to journald (`JOURNAL_STREAM` names stderr's device and
    /// inode), so native journal entries should be written instead of text lines.
    public static var isStderrJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}

private let sockStreamValue = Int32(SOCK_STREAM.rawValue)
