import PoolConfig
import PoolCore
import Testing

/// What a reload does, decided without a daemon: which pools start, update live, are replaced or
/// drained, and what the reply says.
struct ConfigDiffTests {
    static let base = """
        [daemon]
        control_socket = "/run/poold/control.sock"

        [[pool]]
        name = "main"
        kind = "sqlite"
        path = "/var/lib/poold/main.db"
        min = 1
        max = 4

        [[pool]]
        name = "workers"
        kind = "exec"
        command = ["/usr/bin/python3", "/opt/worker.py"]
        max = 2

        [[job]]
        name = "count"
        pool = "main"
        sql = "SELECT count(*) FROM kv"
        """

    func diff(_ new: String) throws -> ConfigDiff {
        let running = try #require(config(Self.base))
        let next = try #require(config(new))
        return ConfigDiff(running: running, new: next)
    }

    @Test func sameFileChangesNothing() throws {
        let d = try diff(Self.base)
        #expect(d.pools.isEmpty)
        #expect(d.otherChanges.isEmpty)
        #expect(d.applied == (try #require(config(Self.base))))
    }

    @Test func limitsApplyLiveAndSayWhetherTheyResized() throws {
        let resized = try diff(Self.base.replacing("max = 4", with: "max = 6"))
        #expect(resized.pools.count == 1)
        guard case .update(let settings, resized: true)? = resized.pools.first else {
            Issue.record("expected a live resize, got \(resized.pools)")
            return
        }
        #expect(settings.limits.maxResources == 6)
        #expect(ConfigDiff.describe(resized.pools[0]) == "pool main resized to 1..6")

        let timeout = try diff(Self.base.replacing("max = 4", with: "max = 4\njob_timeout = \"9s\""))
        guard case .update(_, resized: false)? = timeout.pools.first else {
            Issue.record("expected a live update, got \(timeout.pools)")
            return
        }
        #expect(ConfigDiff.describe(timeout.pools[0]) == "pool main updated")
    }

    @Test func aNewTargetReplacesThePool() throws {
        let d = try diff(Self.base.replacing("/var/lib/poold/main.db", with: "/var/lib/poold/other.db"))
        guard case .replace(let settings)? = d.pools.first, d.pools.count == 1 else {
            Issue.record("expected a replacement, got \(d.pools)")
            return
        }
        #expect(settings.name == "main")
        #expect(ConfigDiff.describe(d.pools[0]) == "pool main replaced")
    }

    @Test func poolsComeAndGo() throws {
        let added =
            Self.base + """

                [[pool]]
                name = "extra"
                kind = "sqlite"
                path = "/var/lib/poold/extra.db"
                """
        let d = try diff(added)
        #expect(d.pools.map(ConfigDiff.describe) == ["pool extra added"])

        let removed = Self.base.replacing(
            "[[pool]]\nname = \"workers\"\nkind = \"exec\"\ncommand = [\"/usr/bin/python3\", \"/opt/worker.py\"]\nmax = 2\n",
            with: "")
        let r = try diff(removed)
        #expect(r.pools == [.remove(name: "workers")])
        #expect(r.pools.map(ConfigDiff.describe) == ["pool workers removed (draining)"])
    }

    @Test func aPoolThatIsNotRunningIsAddedAgain() throws {
        // A pool that failed to start is in the config but not running: the daemon passes only the
        // running pools, and the next reload tries it again.
        var running = try #require(config(Self.base))
        running.pools.removeAll { $0.name == "workers" }
        let d = ConfigDiff(running: running, new: try #require(config(Self.base)))
        #expect(d.pools.map(ConfigDiff.describe) == ["pool workers added"])
    }

    @Test func jobsAccessAndTheSocket() throws {
        let changed =
            Self.base
            .replacing("SELECT count(*) FROM kv", with: "SELECT 1")
            .replacing("/run/poold/control.sock", with: "/run/poold/other.sock")
            + "\n[access]\noperators = [\"root\"]\n"
        let d = try diff(changed)
        #expect(d.pools.isEmpty)
        #expect(d.jobsChanged && d.accessChanged && d.controlSocketChanged)
        #expect(
            d.otherChanges == [
                "named jobs updated (1)", "control_socket change takes effect after a restart", "[access] updated",
            ])
        #expect(d.applied.daemon.controlSocket == "/run/poold/control.sock", "the bound socket stays until a restart")
        #expect(d.applied.jobs.first?.sql == ["SELECT 1"])
    }
}
