import ControlClient
import ControlProtocol
import Foundation
import Synchronization
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
    static func poolctl(_ user: String, _ poolctl: String, _ socket: String, _ arguments: [String]) throws -> (status: Int32, reply: String)
    {
        var attempts = 0
        while true {
            let result = try Program.run(
                "/usr/bin/setpriv",
                ["--reuid=\(user)", "--regid=\(user)", "--init-groups", "--", poolctl, "--socket", socket, "--json"] + arguments)
            // The copy of poolctl was just written: a child another test forked at that moment
            // may still hold it open for writing, and exec then fails with ETXTBSY until it execs.
            if result.err.contains("Text file busy") && attempts < 20 {
                attempts += 1
                usleep(50_000)
                continue
            }
            return (result.status, result.out + result.err)
        }
    }

    @Test func everyRoleAgainstEveryOp() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                operators = ["poold-t-op"]
                submitters = ["@\(Self.submitterGroup)"]
                observers = ["poold-t-obs"]
                """)
        // Other users must reach the socket and run poolctl: a copy they may execute.
        let poolctl = try Self.installPoolctl(for: daemon)
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
                let needed =
                    switch needs {
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
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0660"
                socket_group = "\(Self.submitterGroup)"
                """)
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660, "mode \(String(info.st_mode & 0o777, radix: 8))")
        #expect(info.st_gid == getgrnam(Self.submitterGroup)?.pointee.gr_gid, "group \(info.st_gid)")
        // Bound in a private directory, given its mode and group, then moved into place: no
        // umask change, and nothing left behind.
        let left = try FileManager.default.contentsOfDirectory(atPath: daemon.directory).filter { $0.hasPrefix(".poold-") }
        #expect(left.isEmpty, "\(left)")
        #expect(try daemon.request(["op": .string("ping")]).ok)
    }

    /// Setting up the control socket changes nothing process-wide: database files the pools
    /// create while poold starts, and workers, keep poold's umask whatever socket_mode is (it
    /// was set through the umask around bind(), which pools and workers starting at that moment
    /// inherited).
    @Test func socketModeDoesNotLeakIntoFilesAndWorkers() throws {
        let pools =
            (0..<6).map { n in
                """
                [[pool]]
                name = "p\(n)"
                kind = "sqlite"
                path = "@DIR@/p\(n).db"
                min = 2
                max = 2

                """
            }.joined() + """
                [[pool]]
                name = "workers"
                kind = "exec"
                command = ["/usr/bin/python3", "\(Exec.worker("echo"))"]
                min = 2
                max = 2
                """
        let previous = umask(0o022)
        defer { umask(previous) }
        let daemon = try DaemonProcess(extra: #"socket_mode = "0600""#, pools: pools)
        let workers = WorkerWatch(daemon)
        defer { workers.expectNoneLeft() }
        for n in 0..<6 {
            let path = daemon.directory + "/p\(n).db"
            #expect(waitUntil(.seconds(5)) { FileManager.default.fileExists(atPath: path) })
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o644, "p\(n).db was created \(String(info.st_mode & 0o777, radix: 8))")
        }
        var socket = stat()
        #expect(stat(daemon.socket, &socket) == 0 && socket.st_mode & 0o777 == 0o600)
        #expect(waitUntil(.seconds(5)) { workers.current("echo.py").count == 2 })
        for pid in workers.current("echo.py") {
            let umaskLine = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8))?.split(separator: "\n").first {
                $0.hasPrefix("Umask:")
            }
            #expect(umaskLine?.hasSuffix("0022") == true, "worker \(pid): \(String(describing: umaskLine))")
        }
    }

    @Test func aSubmitterCannotCancelAnotherUsersJob() throws {
        try Self.ensureUsers()
        let daemon = try Self.submittersDaemon()
        let poolctl = try Self.installPoolctl(for: daemon)
        // root's job, running.
        let client = try daemon.client()
        try client.send(
            line: JSON.encode(
                .object(["id": .int(1), "op": .string("run"), "pool": .string("main"), "sql": .string(busySQL(millions: 10))])))
        guard let job = Self.runningJob(in: daemon, of: 0) else {
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

extension AccessTests {
    @Test func aSubmitterMayCancelItsOwnJob() throws {
        try Self.ensureUsers()
        let daemon = try Self.submittersDaemon()
        let poolctl = try Self.installPoolctl(for: daemon)
        guard let uid = getpwnam("poold-t-sub")?.pointee.pw_uid else { throw TestFailure("no poold-t-sub") }
        // The submitter's own job, from its own poolctl, still running.
        let outcome = Mutex<(status: Int32, reply: String)?>(nil)
        let socket = daemon.socket
        let running = Background {
            let result = try? Self.poolctl("poold-t-sub", poolctl, socket, ["run", "main", busySQL(millions: 10)])
            outcome.withLock { $0 = result ?? (-1, "poolctl did not run") }
        }
        guard let job = Self.runningJob(in: daemon, of: uid) else {
            Issue.record("the submitter's job never showed in jobs")
            return
        }
        let (status, reply) = try Self.poolctl("poold-t-sub", poolctl, daemon.socket, ["cancel", "\(job)"])
        #expect(status == 0 && !reply.contains("unauthorized"), "a submitter may cancel its own job: \(reply)")
        #expect(running.wait(.seconds(10)), "the cancelled job's poolctl returned")
        let answer = outcome.withLock { $0 }
        #expect(answer?.reply.contains("\"cancelled\"") == true, "its client was told: \(String(describing: answer))")
    }

    @Test func deniedRequestsAreLoggedWithinABudget() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                observers = ["poold-t-obs"]
                """)
        chmod(daemon.directory, 0o755)
        // 200 forbidden requests on one connection, as fast as the observer can send them.
        let flood = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
            s.sendall(b''.join(b'{"id":%d,"op":"pause"}\\n' % i for i in range(200)))
            s.shutdown(socket.SHUT_WR)
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            print(data.count(b'"unauthorized"'))
            """
        let result = try Program.run(
            "/usr/bin/setpriv",
            ["--reuid=poold-t-obs", "--regid=poold-t-obs", "--init-groups", "--", "/usr/bin/python3", "-c", flood, daemon.socket])
        #expect(
            result.out.trimmingCharacters(in: .whitespacesAndNewlines) == "200",
            "every request answered unauthorized: \(result.out) \(result.err)")
        let logged = daemon.log.split(separator: "\n").filter { $0.contains("denied") }.count
        #expect(logged >= 20 && logged <= 25, "\(logged) denials logged of 200 (burst 20, then 2/s)")
        // Once the budget refills, the next denial is logged and says how many were not.
        usleep(1_100_000)
        let (_, reply) = try Self.poolctl("poold-t-obs", Self.installPoolctl(for: daemon), daemon.socket, ["pause"])
        #expect(reply.contains("unauthorized"))
        #expect(daemon.log.contains("denials before it not logged"), "the suppressed count is reported")
    }

    /// A daemon whose socket anyone may open, with the test group as its submitters.
    static func submittersDaemon() throws -> DaemonProcess {
        try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                submitters = ["@\(submitterGroup)"]
                """)
    }

    /// The id of a job of `uid` once `jobs` lists it (within 10 s), or nil.
    static func runningJob(in daemon: DaemonProcess, of uid: uid_t) -> Int64? {
        var job: Int64?
        _ = waitUntil(.seconds(10)) {
            guard case .array(let list)? = try? daemon.request(["op": .string("jobs")])["jobs"] else { return false }
            for case .object(let entry) in list {
                if case .object(let peer)? = entry["peer"], peer["uid"] == .int(Int64(uid)), case .int(let id)? = entry["job"] { job = id }
            }
            return job != nil
        }
        return job
    }

    /// A copy of poolctl the test users may run, in the daemon's directory (made reachable).
    static func installPoolctl(for daemon: DaemonProcess) throws -> String {
        chmod(daemon.directory, 0o755)
        let poolctl = daemon.directory + "/poolctl"
        if !FileManager.default.fileExists(atPath: poolctl) {
            try FileManager.default.copyItem(
                atPath: URL(fileURLWithPath: DaemonProcess.binary).deletingLastPathComponent().appendingPathComponent("poolctl").path,
                toPath: poolctl)
        }
        chmod(poolctl, 0o755)
        return poolctl
    }
}

extension AccessTests {
    /// Authorization comes before every other check (docs/PROTOCOL.md, "Order of checks"): a line that names an op the
    /// peer may not use is `unauthorized`, whatever else is wrong with it; a peer that may use
    /// the op is told what is wrong.
    @Test func authorizationComesBeforeEveryOtherCheck() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                submitters = ["@\(Self.submitterGroup)"]
                observers = ["poold-t-obs"]
                """)
        chmod(daemon.directory, 0o755)
        let lines = [
            #"{"id":1,"op":"run","pool":"main","sql":"SELECT 1","bogus":1}"#,
            #"{"id":2,"op":"drain","pool":7}"#,
            #"{"id":3,"op":"cancel","job":"x"}"#,
            #"{"id":4,"op":"stats","pool":7}"#,
            #"{"id":5,"op":"run","job":"count","params":[[1]]}"#,
        ]
        #expect(
            try Self.codes(as: "poold-t-obs", lines, socket: daemon.socket) == [
                "unauthorized", "unauthorized", "unauthorized", "bad_request", "unauthorized",
            ])
        #expect(
            try Self.codes(as: "poold-t-sub", lines, socket: daemon.socket) == [
                "bad_request", "unauthorized", "bad_request", "bad_request", "bad_request",
            ])
        #expect(try Self.codes(as: "poold-t-none", [#"{"id":1,"op":"ping","extra":true}"#], socket: daemon.socket) == ["unauthorized"])
    }

    /// An exec pool's input is its job: submitters may send it without allow_adhoc, which is
    /// about ad-hoc SQL (docs/CONFIG.md, "[pool]": allow_adhoc); observers still may not.
    @Test func anExecPoolsInputNeedsNoAllowAdhoc() throws {
        try Self.ensureUsers()
        let daemon = try DaemonProcess(
            extra: """
                socket_mode = "0666"

                [access]
                submitters = ["@\(Self.submitterGroup)"]
                observers = ["poold-t-obs"]
                """,
            pools: """
                [[pool]]
                name = "workers"
                kind = "exec"
                command = ["/usr/bin/python3", "\(Exec.worker("echo"))"]
                max = 1
                """)
        let poolctl = try Self.installPoolctl(for: daemon)
        let (status, reply) = try Self.poolctl("poold-t-sub", poolctl, daemon.socket, ["run", "workers", "--input", #"{"n": 7}"#])
        #expect(status == 0 && reply.contains(#""n":7"#), "a submitter runs an exec job on a pool without allow_adhoc: \(reply)")
        let (_, denied) = try Self.poolctl("poold-t-obs", poolctl, daemon.socket, ["run", "workers", "--input", "1"])
        #expect(denied.contains("\"unauthorized\""), "\(denied)")
        #expect(try daemon.request(["op": .string("run"), "pool": .string("workers"), "input": .int(3)])["output"] == .int(3))
    }

    /// The error code of each reply to `lines`, sent on one connection as `user`, by id.
    static func codes(as user: String, _ lines: [String], socket: String) throws -> [String] {
        let client = """
            import json, socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
            lines = sys.argv[2:]
            s.sendall(''.join(l + '\\n' for l in lines).encode()); s.shutdown(socket.SHUT_WR)
            f = s.makefile()
            replies = [json.loads(f.readline()) for _ in lines]
            codes = {r['id']: (r.get('error') or {}).get('code', 'ok') for r in replies}
            print(' '.join(codes[json.loads(l)['id']] for l in lines))
            """
        let result = try Program.run(
            "/usr/bin/setpriv",
            ["--reuid=\(user)", "--regid=\(user)", "--init-groups", "--", "/usr/bin/python3", "-c", client, socket] + lines)
        guard result.status == 0 else { throw TestFailure("client as \(user) failed: \(result.err)") }
        return result.out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }
}
