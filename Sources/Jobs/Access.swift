import ControlProtocol
import PoolConfig

#if canImport(Glibc)
    import Glibc
#endif

/// What a peer may do: each role includes the ones below it.
package enum Role: Int, Sendable, Comparable, CustomStringConvertible {
    case none = 0
    case observer, submitter, `operator`

    package static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }

    package var description: String {
        switch self {
        case .none: "no role"
        case .observer: "observer"
        case .submitter: "submitter"
        case .operator: "operator"
        }
    }
}

/// Maps a peer (SO_PEERCRED, plus its supplementary groups from SO_PEERGROUPS) to a role, from `[access]`.
///
/// Names are resolved once, when the config is loaded or reloaded. With `[access]`: root is
/// always an operator; a user name matches that user, `@group` a member of the group (primary
/// or supplementary), `*` anyone; the highest role that matches wins; nobody else has a role.
/// Without it: root is an operator, members of the socket's group submitters, and anyone who
/// can open the socket an observer.
///
/// poold's own user gets no role for being poold's user, nor through its groups: exec workers
/// run as it, and a worker driven by a submitter's input must not act with more than that
/// submitter's rights. It gets only what `[access]` gives it by name, or an observer's `*`.
/// (`systemctl reload` runs `poolctl reload` as root: `ExecReload=+`.)
package struct Authorizer: Sendable {
    struct Matcher: Sendable, Equatable {
        var anyone = false
        var uids: Set<UInt32> = []
        var gids: Set<UInt32> = []

        func matches(_ peer: Peer) -> Bool {
            anyone || uids.contains(peer.uid) || gids.contains(peer.gid) || !gids.isDisjoint(with: peer.groups)
        }
    }

    var operators = Matcher()
    var submitters = Matcher()
    var observers = Matcher()
    /// Entries that name no user or group on this machine, for a warning.
    var unknown: [String] = []

    init(operators: Matcher, submitters: Matcher, observers: Matcher) {
        self.operators = operators
        self.submitters = submitters
        self.observers = observers
    }

    init(config: Config) {
        if let access = config.access {
            operators = Self.resolve(access.operators, unknown: &unknown)
            submitters = Self.resolve(access.submitters, unknown: &unknown)
            observers = Self.resolve(access.observers, unknown: &unknown)
        } else {
            operators.uids = [0]
            if let name = config.daemon.socketGroup, let group = getgrnam(name) {
                submitters.gids = [group.pointee.gr_gid]
            } else {
                submitters.gids = [getgid()]
            }
            observers.anyone = true
        }
    }

    /// poold's own user (see above).
    var ownUID = getuid()

    func role(of peer: Peer) -> Role {
        if peer.uid == 0 { return .operator }
        if peer.uid == ownUID {
            if operators.uids.contains(peer.uid) { return .operator }
            if submitters.uids.contains(peer.uid) { return .submitter }
            return observers.anyone || observers.uids.contains(peer.uid) ? .observer : .none
        }
        if operators.matches(peer) { return .operator }
        if submitters.matches(peer) { return .submitter }
        if observers.matches(peer) { return .observer }
        return .none
    }

    private static func resolve(_ entries: [String], unknown: inout [String]) -> Matcher {
        var matcher = Matcher()
        for entry in entries {
            if entry == "*" {
                matcher.anyone = true
            } else if entry.hasPrefix("@") {
                if let group = getgrnam(String(entry.dropFirst())) {
                    matcher.gids.insert(group.pointee.gr_gid)
                } else {
                    unknown.append(entry)
                }
            } else if let user = getpwnam(entry) {
                matcher.uids.insert(user.pointee.pw_uid)
            } else {
                unknown.append(entry)
            }
        }
        return matcher
    }

    /// The role an op needs. `run` of ad-hoc SQL also needs `allow_adhoc` on the pool, whoever
    /// sends it; `cancel` of one's own job needs only submitter.
    static func required(for command: Command) -> Role {
        required(forOp: command.op)
    }

    static func required(forOp op: Op) -> Role {
        switch op {
        case .ping, .status, .pools, .jobs, .stats, .metrics, .queues: .observer
        case .run, .cancel, .enqueue, .jobStatus, .jobCancel: .submitter
        case .pause, .resume, .resize, .reload, .drain: .operator
        }
    }
}
