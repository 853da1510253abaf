import ControlClient
import ControlProtocol
import Foundation
import Testing

/// Roles from peer credentials (issue 8): real clients run as different users through the
/// whole role × op matrix. Needs root, to create the test users and to switch to them.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct AccessTests {
    static let users = ["poold-t-op", "poold-t-sub", "poold-t-obs", "poold-t-none"]
    static let submitterGroup = "poold-t-subs"

    /// Creates the test users (once; they are system users without a home or a shell).
    static func ensureUsers() throws {
        guard getuid() == 0 else { throw TestFailure("the access tests create users and switch to them: run them as root (CI does)") }
        if getgrnam(submitterGroup) == nil {
            _ = try Program.run("/usr/sbin/groupadd", ["--system", submitterGroup])
        }
        for user in users where getpwnam(user) == nil {
            var arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if user == "poold-t-sub" { arguments += ["--groups", submitterGroup] }
            let result = try Program.run("/usr/sbin/useradd", arguments + [user])
            guard result.status == 0 else { throw TestFailure("useradd \(user) failed: \(result.err)") }
        }
    }

    /// poolctl as `user` (its own uid, primary and supplementary groups): status and JSON.
    static func poolctl(_ user: String, _ poolctl: String, _ socket: String, _ arguments: [String]) throws -> (status: Int32, reply: String) {
        let result = try Program.run("/usr/bin/setpriv", ["--reuid=\(user)", "--regid=\(user)", "--init-groups", "--", poolctl, "--socket", socket, "--json"] + arguments)
        return (result.status, result.out + result.err)
    }

    @Test func everyRoleAgainstEveryOp() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(extra: """
            socket_mode = "0666"

            [access]
            operators = ["poold-t-op"]
            submitters = ["@\(Self.submitterGroup)"]
            observers = ["poold-t-obs"]
            """)
        // Other users must reach the socket and run poolctl: a copy they may execute.
        chmod(daemon.directory, 0o755)
        let poolctl = daemon.directory + "/poolctl"
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl").path, toPath: poolctl)
        chmod(poolctl, 0o755)
        _ = try daemon.sqlite("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)")

        enum Needs { case observer, submitter, `operator` }
        let ops: [(String, [String], Needs)] = [
            ("ping", ["ping"], .observer),
            ("status", ["status"], .observer),
            ("pools", ["pools"], .observer),
            ("jobs", ["jobs"], .observer),
            ("stats", ["stats"], .observer),
            ("metrics", ["metrics"], .observer),
            ("run sql", ["run", "main", "SELECT 1"], .submitter),
            ("run job", ["run", "--job", "count"], .submitter),
            ("cancel", ["cancel", "999999"], .submitter),
            ("pause", ["pause", "main"], .operator),
            ("resume", ["resume", "main"], .operator),
            ("resize", ["resize", "main", "--min", "1", "--max", "4"], .operator),
            ("reload", ["reload"], .operator),
            ("drain", ["drain", "main"], .operator),
        ]
        let roles: [(String, Int)] = [("poold-t-op", 3), ("poold-t-sub", 2), ("poold-t-obs", 1), ("poold-t-none", 0)]
        for (user, level) in roles {
            // The operator's drain leaves the pool draining: undo it for the next user.
            #expect(try daemon.request(["op": .string("resume"), "pool": .string("main")]).ok)
            for (name, arguments, needs) in ops {
                let needed = switch needs {
                case .observer: 1
                case .submitter: 2
                case .operator: 3
                }
                let (status, reply) = try Self.poolctl(user, poolctl, daemon.socket, arguments)
                let denied = reply.contains("\"unauthorized\"")
                if level >= needed {
                    #expect(!denied, "\(user) may \(name): \(reply)")
                    if name == "cancel" {
                        #expect(reply.contains("no_such_job"), "\(user) cancel of an unknown job: \(reply)")
                    } else {
                        #expect(status == 0, "\(user) \(name) exited \(status): \(reply)")
                    }
                } else {
                    #expect(denied, "\(user) may not \(name): \(reply)")
                    #expect(status == 1, "\(user) \(name) exited \(status)")
                    #expect(reply.contains("needs the"), "the denial names the role needed: \(reply)")
                }
            }
        }
        // A denial is logged with the peer's uid and pid.
        guard let uid = getpwnam("poold-t-obs")?.pointee.pw_uid else { throw TestFailure("no poold-t-obs") }
        #expect(daemon.log.contains("denied") && daemon.log.contains("uid=\(uid)"), "denials are not logged with the uid")
    }

    @Test func theSocketHasTheConfiguredModeAndGroup() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(extra: """
            socket_mode = "0660"
            socket_group = "\(Self.submitterGroup)"
            """)
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660, "mode \(String(info.st_mode & 0o777, radix: 8))")
        #expect(info.st_gid == getgrnam(Self.submitterGroup)?.pointee.gr_gid, "group \(info.st_gid)")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    @Test func aSubmitterCannotCancelAnotherUsersJob() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(extra: """
            socket_mode = "0666"

            [access]
            submitters = ["@\(Self.submitterGroup)"]
            """)
        chmod(daemon.directory, 0o755)
        let poolctl = daemon.directory + "/poolctl"
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl").path, toPath: poolctl)
        chmod(poolctl, 0o755)
        // root's job, running.
        let client = try daemon.client()
        try client.send(line: JSON.encode(.object(["id": .int(1), "op": .string("run"), "pool": .string("main"), "sql": .string(busySQL(millions: 10))])))
        var job: Int64?
        _ = waitUntil(.seconds(5)) {
            if case .array(let list)? = try? daemon.request(["op": .string("jobs")])["jobs"], case .object(let first)? = list.first,
                case .int(let id)? = first["job"]
            {
                job = id
            }
            return job != nil
        }
        guard let job else {
            Issue.record("root's job never showed in jobs")
            return
        }
        let (_, reply) = try Self.poolctl("poold-t-sub", poolctl, daemon.socket, ["cancel", "\(job)"])
        #expect(reply.contains("\"unauthorized\""), "a submitter cancelled root's job: \(reply)")
        #expect(reply.contains("another user"), "\(reply)")
        // root (always an operator) may.
        #expect(try daemon.request(["op": .string("cancel"), "job": .int(job)]).ok)
        #expect(try client.readReply(timeout: .seconds(10))?.errorCode == "cancelled")
    }
}
