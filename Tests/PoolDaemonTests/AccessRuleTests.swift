#if canImport(Glibc)
import Glibc
#endif
import ControlProtocol
import PoolConfig
import Testing

@testable import PoolDaemon

/// How peers map to roles (DESIGN §2 and §6); the integration tests run real users.
struct AccessRuleTests {
    let stranger = Peer(uid: 54_321, gid: 54_321, pid: 1)

    @Test func withoutAccessTheDefaultsApply() {
        let authorizer = Authorizer(config: Config(path: "t.toml"))
        #expect(authorizer.role(of: Peer(uid: 0, gid: 0, pid: 1)) == .operator, "root")
        #expect(authorizer.role(of: Peer(uid: getuid(), gid: 54_321, pid: 1)) == .operator, "poold's own user")
        #expect(authorizer.role(of: Peer(uid: 54_321, gid: getgid(), pid: 1)) == .submitter, "the socket's group (poold's, when socket_group is unset)")
        #expect(authorizer.role(of: Peer(uid: 54_321, gid: 1, pid: 1, groups: [getgid()])) == .submitter, "a supplementary member")
        #expect(authorizer.role(of: stranger) == .observer, "anyone who can open the socket")
    }

    @Test func withAccessOnlyTheListsCountAndRootStaysOperator() {
        let authorizer = Authorizer(config: Config(path: "t.toml", access: AccessSettings(
            operators: ["root"], submitters: ["@root"], observers: ["no-such-user-here", "@no-such-group-here"])))
        #expect(authorizer.role(of: Peer(uid: 0, gid: 0, pid: 1)) == .operator)
        #expect(authorizer.role(of: Peer(uid: getuid(), gid: 54_321, pid: 1)) == .operator, "poold's own user (systemctl reload runs poolctl as it)")
        #expect(authorizer.role(of: Peer(uid: 54_321, gid: 0, pid: 1)) == .submitter, "@root by primary group")
        #expect(authorizer.role(of: stranger) == Role.none, "not listed: no role at all")
        #expect(authorizer.unknown == ["no-such-user-here", "@no-such-group-here"])
        let everyone = Authorizer(config: Config(path: "t.toml", access: AccessSettings(observers: ["*"])))
        #expect(everyone.role(of: stranger) == .observer)
    }

    @Test func eachOpNeedsItsRole() {
        #expect(Authorizer.required(for: .ping) == .observer)
        #expect(Authorizer.required(for: .metrics) == .observer)
        #expect(Authorizer.required(for: .runNamed(job: "j", params: [], timeoutMs: nil)) == .submitter)
        #expect(Authorizer.required(for: .cancel(job: 1)) == .submitter)
        #expect(Authorizer.required(for: .reload) == .operator)
        #expect(Authorizer.required(for: .drain(pool: nil, stop: true)) == .operator)
        #expect(Role.observer < .submitter && .submitter < .operator && Role.none < .observer)
        // By op alone, for a line that names an op but does not decode.
        #expect(Authorizer.required(forOp: .run) == .submitter)
        #expect(Authorizer.required(forOp: .drain) == .operator)
        #expect(Authorizer.required(forOp: .stats) == .observer)
    }
}
