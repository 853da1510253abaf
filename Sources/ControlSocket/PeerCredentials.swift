import Jobs
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Who is at the other end of a connection.
package enum PeerCredentialsReader {
    static let soPeerCred: Int32 = 17
    static let soPeerGroups: Int32 = 59

    /// Its uid, gid and pid (SO_PEERCRED) and its supplementary groups (SO_PEERGROUPS), as the
    /// kernel recorded them when it connected: nothing is read from /proc, where a pid may have
    /// been reused by then, and which a hardened unit (`ProtectProc=invisible`) hides.
    ///
    /// On the channel's event loop, where NIO answers at once: the 1 KiB group list then lives
    /// on that thread's stack for a moment, not in the connection task's async frames, which
    /// keep their high-water mark for as long as the connection lasts (measured: 6.5 KB more
    /// per idle connection when read with `await`).
    static func peerOnLoop(of channel: any Channel) -> Peer {
        channel.eventLoop.assertInEventLoop()
        guard let provider = channel as? any SocketOptionProvider else { return .unknown }
        // SO_PEERCRED and SO_PEERGROUPS, which Swift's Glibc module does not show.
        var credentials: PeerCredentials?
        var groups: [UInt32] = []
        provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(Self.soPeerCred))
            .assumeIsolated().whenSuccess { (value: PeerCredentials) in credentials = value }
        provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(Self.soPeerGroups))
            .assumeIsolated().whenSuccess { (value: PeerGroups) in groups = value.list }
        guard let credentials else { return .unknown }
        return Peer(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, groups: groups)
    }
}

/// What SO_PEERGROUPS fills: the peer's supplementary groups, in the kernel's order (ascending),
/// followed by zeros (the buffer starts zeroed). A peer in more than 256 groups gets ERANGE, and
/// none of its supplementary groups count.
package struct PeerGroups: Sendable {
    var gids = InlineArray<256, UInt32>(repeating: 0)

    /// The groups: up to the last non-zero entry (gid 0, if present, sorts first). A peer whose
    /// only supplementary group is 0 reads as none; root is an operator by its uid anyway.
    var list: [UInt32] {
        var last = -1
        for index in gids.indices where gids[index] != 0 { last = index }
        return last < 0 ? [] : (0...last).map { gids[$0] }
    }
}

/// Linux's `struct ucred` (not visible to Swift without _GNU_SOURCE), as SO_PEERCRED fills it.
package struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
