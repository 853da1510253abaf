import ControlProtocol
import PoolConfig
import Testing

@testable import Jobs

#if canImport(Glibc)
    import Glibc
#endif

/// How peers map to roles (docs/CONFIG.md, "[access]"); the integration tests run real users.
struct AccessRuleTests {
    let stranger = Peer(uid: 54_321, gid: 54_321, pid: 1)

    @Test func withoutAccessTheDefaultsApply() {
        let authorizer = Authorizer(config: Config(path: "t.toml"))
        #expect(authorizer.role(of: Peer(uid: 0, gid: 0, pid: 1)) == .operator, "root")
        #expect(
            authorizer.role(of: Peer(uid: 54_321, gid: getgid(), pid: 1)) == .submitter,
            "the socket's group (poold's, when socket_group is unset)")
        #expect(authorizer.role(of: Peer(uid: 54_321, gid: 1, pid: 1, groups: [getgid()])) == .submitter, "a supplementary member")
        #expect(authorizer.role(of: stranger) == .observer, "anyone who can open the socket")
    }

    /// poold's own user is what its workers run as: it gets no role for being poold's user or
    /// through its groups (a worker driven by a submitter's input would act as an operator),
    /// only what [access] gives it by name, or an observer's `*`.
    @Test func pooldsOwnUserGetsNoRoleForBeingIt() {
        var defaults = Authorizer(config: Config(path: "t.toml"))
        defaults.ownUID = 4_242
        #expect(
            defaults.role(of: Peer(uid: 4_242, gid: getgid(), pid: 1)) == .observer,
            "not operator, not submitter through the socket's group")
        var listed = Authorizer(config: Config(path: "t.toml", access: AccessSettings(submitters: ["@root"], observers: ["*"])))
        listed.ownUID = 4_242
        #expect(listed.role(of: Peer(uid: 4_242, gid: 0, pid: 1, groups: [0])) == .observer, "not through @group")
        listed.submitters.uids = [4_242]
        #expect(listed.role(of: Peer(uid: 4_242, gid: 0, pid: 1)) == .submitter, "named explicitly")
        #expect(listed.role(of: Peer(uid: 0, gid: 0, pid: 1)) == .operator, "root still is")
    }

    @Test func withAccessOnlyTheListsCountAndRootStaysOperator() {
        let authorizer = Authorizer(
            config: Config(
                path: "t.toml",
                access: AccessSettings(
                    operators: ["root"], submitters: ["@root"], observers: ["no-such-user-here", "@no-such-group-here"])))
        #expect(authorizer.role(of: Peer(uid: 0, gid: 0, pid: 1)) == .operator)
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
