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
    static func peer(of channel: any Channel) async -> Peer {
        // SO_PEERCRED and SO_PEERGROUPS, which Swift's Glibc module does not show.
        guard let provider = channel as? any SocketOptionProvider else { return .unknown }
        do {
            let cred: PeerCredentials = try await provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(Self.soPeerCred)
            ).get()
            let groups: PeerGroups? = try? await provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(Self.soPeerGroups)
            ).get()
            return Peer(uid: cred.uid, gid: cred.gid, pid: cred.pid, groups: groups?.list ?? [])
        } catch {
            return .unknown
        }
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
