import PoolConfig
import PoolCore
import Testing

@Suite struct ConfigDefaultsTests {
    @Test func emptyFileIsTheDefaultDaemonWithNothingElse() throws {
        let config = try ConfigLoader.parse("", path: "poold.toml")
        #expect(config.path == "poold.toml")
        #expect(config.daemon == DaemonSettings())
        #expect(config.daemon.controlSocket == "/run/poold/control.sock")
        #expect(config.daemon.socketMode == 0o660)
        #expect(config.daemon.socketGroup == nil)
        #expect(config.daemon.shutdownGrace == .seconds(30))
        #expect(config.daemon.maxConnections == 1024)
        #expect(config.daemon.maxInflightPerConnection == 128)
        #expect(config.access == nil)
        #expect(config.pools.isEmpty)
        #expect(config.jobs.isEmpty)
        #expect(config.warnings.isEmpty)
    }

    @Test func daemonKeysAreRead() throws {
        let config = try ConfigLoader.parse(
            """
            [daemon]
            control_socket = "./x.sock"
            socket_mode = "600"
            socket_group = "poold"
            shutdown_grace = "0s"
            max_connections = 2
            max_inflight_per_connection = 1
            """, path: "poold.toml")
        #expect(
            config.daemon
                == DaemonSettings(
                    controlSocket: "./x.sock", socketMode: 0o600, socketGroup: "poold", shutdownGrace: .zero,
                    maxConnections: 2, maxInflightPerConnection: 1))
    }

    @Test func sqlitePoolDefaults() throws {
        let config = try ConfigLoader.parse(
            """
            [[pool]]
            name = "main"
            path = "/var/lib/poold/main.db"
            """, path: "poold.toml")
        let pool = try #require(config.pool(named: "main"))
        #expect(pool.kind == .sqlite)
        #expect(pool.line == 1)
        #expect(pool.limits.minResources == 1)
        #expect(pool.limits.maxResources == 4)
        #expect(pool.limits.maxWaiters == 1024)
        #expect(pool.limits.acquireTimeout == .seconds(5))
        #expect(pool.limits.idleTimeout == .seconds(300))
        #expect(pool.limits.maxLifetime == .seconds(3600))
        #expect(pool.limits.healthCheckAfter == nil)
        #expect(pool.limits.validate() == nil)
        #expect(pool.jobTimeout == .seconds(30))
        #expect(pool.maxJobTimeout == .seconds(300))
        #expect(pool.allowAdhoc == false)
        #expect(pool.backend == .sqlite(SQLiteSettings(path: "/var/lib/poold/main.db", busyTimeout: .seconds(5))))
    }

    @Test func postgresAndExecDefaults() throws {
        let config = try ConfigLoader.parse(
            """
            [[pool]]
            name = "pg"
            kind = "postgres"
            url = "postgresql://app@db.internal/app?sslmode=require"

            [[pool]]
            name = "workers"
            kind = "exec"
            command = ["/usr/bin/worker", "--json"]
            """, path: "poold.toml")
        #expect(config.pools.map(\.name) == ["pg", "workers"])
        #expect(config.pools.map(\.line) == [1, 6])
        let pg = try #require(config.pool(named: "pg"))
        guard case .postgres(let p) = pg.backend else {
            Issue.record("pg is not a postgres pool: \(pg.backend)")
            return
        }
        #expect(p == PostgresSettings(url: "postgresql://app@db.internal/app?sslmode=require"))
        #expect(p.passwordFile == nil && p.credential == nil)
        #expect(p.applicationName == "poold")
        #expect(p.connectTimeout == .seconds(10))
        let url = try #require(p.components)
        #expect(url.user == "app" && url.password == nil && url.host == "db.internal" && url.port == 5432)
        #expect(url.database == "app" && url.sslMode == "require")
        #expect(
            config.pool(named: "workers")?.backend
                == .exec(ExecSettings(command: ["/usr/bin/worker", "--json"], maxJobsPerWorker: 1000, killGrace: .seconds(2))))
        #expect(config.pool(named: "nope") == nil)
    }

    @Test func everyPoolKeyIsRead() throws {
        let config = try ConfigLoader.parse(
            """
            [[pool]]
            name = "main-2_x"
            kind = "sqlite"
            path = "db.sqlite"
            busy_timeout = "0s"
            min = 0
            max = 9
            max_waiters = 3
            acquire_timeout = "250ms"
            idle_timeout = "never"
            max_lifetime = "2h"
            health_check_after = "10s"
            job_timeout = "1m"
            max_job_timeout = "1h"
            allow_adhoc = true
            """, path: "poold.toml")
        let pool = try #require(config.pools.first)
        var limits = PoolSettings.defaultLimits
        limits.minResources = 0
        limits.maxResources = 9
        limits.maxWaiters = 3
        limits.acquireTimeout = .milliseconds(250)
        limits.idleTimeout = nil
        limits.maxLifetime = .seconds(7200)
        limits.healthCheckAfter = .seconds(10)
        #expect(
            pool
                == PoolSettings(
                    name: "main-2_x", limits: limits, jobTimeout: .seconds(60), maxJobTimeout: .seconds(3600),
                    allowAdhoc: true, backend: .sqlite(SQLiteSettings(path: "db.sqlite", busyTimeout: .zero))))
    }

    /// `max_job_timeout = "1s"` on its own is valid: the default job_timeout (30s) shrinks to
    /// it. Only a job_timeout written above the maximum is an error.
    @Test func jobTimeoutDefaultsToAtMostMaxJobTimeout() throws {
        let config = try ConfigLoader.parse(
            """
            [[pool]]
            name = "quick"
            path = "q.db"
            max_job_timeout = "1s"

            [[pool]]
            name = "roomy"
            path = "r.db"
            max_job_timeout = "1h"
            """, path: "poold.toml")
        #expect(config.pools.map(\.jobTimeout) == [.seconds(1), .seconds(30)])
        #expect(config.pools.map(\.maxJobTimeout) == [.seconds(1), .seconds(3600)])
        #expect(throws: ConfigError.self) {
            try ConfigLoader.parse(
                "[[pool]]\nname = \"q\"\npath = \"q.db\"\nmax_job_timeout = \"1s\"\njob_timeout = \"2s\"\n", path: "poold.toml")
        }
    }

    @Test func jobsTakeSQLAsAStringOrABatch() throws {
        let config = try ConfigLoader.parse(
            """
            [[pool]]
            name = "main"
            path = "m.db"

            [[pool]]
            name = "w"
            kind = "exec"
            command = ["w"]

            [[job]]
            name = "one"
            pool = "main"
            sql = "SELECT 1"

            [[job]]
            name = "batch"
            pool = "main"
            sql = ["DELETE FROM a", "DELETE FROM b"]
            timeout = "10s"
            transaction = true

            [[job]]
            name = "work"
            pool = "w"
            """, path: "poold.toml")
        #expect(config.jobs.map(\.name) == ["one", "batch", "work"])
        #expect(config.job(named: "one") == JobSettings(name: "one", pool: "main", sql: ["SELECT 1"]))
        #expect(
            config.job(named: "batch")
                == JobSettings(
                    name: "batch", pool: "main", sql: ["DELETE FROM a", "DELETE FROM b"], timeout: .seconds(10),
                    transaction: true))
        #expect(config.job(named: "work")?.sql == [])
        #expect(config.jobs.map(\.line) == [10, 15, 22])
    }

    @Test func accessListsDefaultToEmptyWhenTheTableExists() throws {
        let config = try ConfigLoader.parse(
            """
            [access]
            operators = ["root", "@poold-admin", "svc$"]
            observers = ["*"]
            """, path: "poold.toml")
        #expect(config.access == AccessSettings(operators: ["root", "@poold-admin", "svc$"], submitters: [], observers: ["*"]))
        #expect(try ConfigLoader.parse("[access]", path: "p").access == AccessSettings())
    }

    @Test func equalityIgnoresLinesAndPath() throws {
        let a = try ConfigLoader.parse("[[pool]]\nname = \"m\"\npath = \"x\"\n", path: "a.toml")
        let b = try ConfigLoader.parse("# moved\n\n[[pool]]\npath = \"x\"\nname = \"m\"\n", path: "b.toml")
        #expect(a.pools[0].line != b.pools[0].line)
        #expect(a == b)
        let c = try ConfigLoader.parse("[[pool]]\nname = \"m\"\npath = \"y\"\n", path: "a.toml")
        #expect(a != c)
    }
}
