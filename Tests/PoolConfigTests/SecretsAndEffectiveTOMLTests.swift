import PoolConfig
import PoolCore
import Testing

@Suite struct SecretsAndEffectiveTOMLTests {
    static let withPassword = """
        [daemon]
        socket_group = "poold"

        [[pool]]
        name = "pg"
        kind = "postgres"
        url = "postgres://app:s3cr3t-pw@db.internal:6432/app?sslmode=verify-full"
        application_name = "billing"
        """

    @Test func aPasswordInTheURLIsAcceptedWithAWarning() throws {
        let config = try ConfigLoader.parse(Self.withPassword, path: "poold.toml")
        #expect(config.warnings == ["poold.toml:7: pool \"pg\": the url contains a password; prefer password_file or credential"])
        guard case .postgres(let pg) = config.pools.first?.backend else {
            Issue.record("expected a postgres pool")
            return
        }
        #expect(pg.url == "postgres://app:s3cr3t-pw@db.internal:6432/app?sslmode=verify-full")
        #expect(pg.redactedURL == "postgres://app:***@db.internal:6432/app?sslmode=verify-full")
        #expect(pg.components?.password == "s3cr3t-pw")
        #expect(pg.components?.port == 6432)
    }

    @Test func noWarningWithoutAPassword() throws {
        let config = try ConfigLoader.parse(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://app@h/app\"\npassword_file = \"/etc/pw\"\n",
            path: "poold.toml")
        #expect(config.warnings.isEmpty)
    }

    @Test func effectiveTOMLRedactsThePasswordAndShowsWhereSecretsLive() throws {
        let config = try ConfigLoader.parse(Self.withPassword, path: "poold.toml")
        let text = config.effectiveTOML()
        #expect(!text.contains("s3cr3t"))
        #expect(text.contains("url = \"postgres://app:***@db.internal:6432/app?sslmode=verify-full\"\n"))

        let other = try ConfigLoader.parse(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://app@h/app\"\ncredential = \"pg-password\"\n",
            path: "poold.toml")
        #expect(other.effectiveTOML().contains("credential = \"pg-password\"\n"))
    }

    @Test(arguments: [
        // A bad scheme, a bad port, an unsupported parameter: the url is quoted, redacted.
        "mysql://app:s3cr3t@h/db",
        "postgres://app:s3cr3t@h:0/db",
        "postgres://app:s3cr3t@h/db?connect_timeout=5",
        // Unescaped characters in the password must not make it look like a host or path.
        "postgres://app:s3/cr3t@h:99999/db",
        "postgres://app:s3@cr3t@h:99999/db",
        "postgres://app@h/db?password=s3cr3t",
        "app:s3cr3t@h/db",
    ])
    func errorsNeverContainAPassword(url: String) throws {
        let error = try #require(configError("[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"\(url)\"\n"))
        #expect(error.line == 4)
        #expect(!error.description.contains("s3cr3t"))
        #expect(!error.description.contains("cr3t"))
    }

    /// A worker's environment may hold tokens: a wrong value is described by its kind, never
    /// shown (the error reaches --check-config, the log and status.last_reload, which observers
    /// read).
    @Test(arguments: ["123456789", "[\"tok-987654321\"]", "{ nested = 555444333 }", "123456.789"])
    func aWrongEnvironmentValueIsNotEchoed(value: String) {
        let text = "[[pool]]\nname = \"w\"\nkind = \"exec\"\ncommand = [\"/bin/cat\"]\nenvironment = { TOKEN = \(value) }\n"
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text, path: "poold.toml") }
        do {
            _ = try ConfigLoader.parse(text, path: "poold.toml")
        } catch {
            let message = "\(error)"
            for secret in ["123456789", "987654321", "555444333", "123456.789"] {
                #expect(!message.contains(secret), "the error shows the value: \(message)")
            }
            #expect(message.contains("environment.TOKEN must be a string"), "\(message)")
        }
    }

    @Test func aPasswordInTheURLAndAPasswordFileConflictWithoutShowingIt() {
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://app:s3cr3t@h/app\"\npassword_file = \"/etc/pw\"\n",
            "poold.toml:5: pool \"pg\": the url contains a password and password_file is set; remove the password from the url"
        )
    }

    @Test func wrongTypesOfSecretKeysShowOnlyTheType() {
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://app@h/app\"\npassword_file = 123456\n",
            "poold.toml:5: pool \"pg\": password_file must be a non-empty string (a file path) (got an integer)"
        )
    }

    static let everything = """
        [daemon]
        control_socket = "/tmp/p.sock"
        socket_mode = "0600"
        socket_group = "poold"
        shutdown_grace = "1m30s"
        max_connections = 10
        max_inflight_per_connection = 2

        [access]
        operators = ["root"]
        observers = ["*", "@adm"]

        [metrics]
        listen = "[::1]:9187"

        [[pool]]
        name = "main"
        path = "/var/lib/poold/main.db"
        busy_timeout = "1.5ms"
        min = 0
        max = 8
        max_waiters = 7
        acquire_timeout = "250ms"
        idle_timeout = "never"
        max_lifetime = "1h1ns"
        health_check_after = "0s"
        job_timeout = "10s"
        max_job_timeout = "2m"
        allow_adhoc = true

        [[pool]]
        name = "pg"
        kind = "postgres"
        url = "postgres://app:pa%20ss@%2Frun%2Fpostgresql/app"
        application_name = "x"
        connect_timeout = "3s"

        [[pool]]
        name = "workers"
        kind = "exec"
        command = ["/usr/bin/python3", "-c", "print(\\"hi\\")\\n\\ttab"]
        max_jobs_per_worker = 5
        kill_grace = "0s"

        [[job]]
        name = "batch"
        pool = "main"
        sql = ['''SELECT 1
        -- "quoted" \\ backslash''', "SELECT 2"]
        transaction = true
        timeout = "5s"

        [[job]]
        name = "w"
        pool = "workers"
        timeout = "1m"
        """

    @Test(arguments: [everything, withPassword, "", "[access]\n"])
    func effectiveTOMLParsesBackToTheSameConfig(text: String) throws {
        let original = try ConfigLoader.parse(text, path: "poold.toml")
        let effective = original.effectiveTOML()
        let reparsed: Config
        do {
            reparsed = try ConfigLoader.parse(effective, path: "effective.toml")
        } catch {
            Issue.record("effective TOML does not parse: \(error)\n\(effective)")
            return
        }
        var expected = original
        for i in expected.pools.indices {
            if case .postgres(var pg) = expected.pools[i].backend {
                pg.url = pg.redactedURL
                expected.pools[i].backend = .postgres(pg)
            }
        }
        #expect(reparsed == expected)
        #expect(reparsed.metrics.listen == expected.metrics.listen)
        #expect(reparsed.pools.map(\.limits) == expected.pools.map(\.limits))
        // And the output is stable: printing it again gives the same text (but for the path).
        #expect(
            reparsed.effectiveTOML().replacingOccurrences("effective.toml", with: "poold.toml") == effective)
    }

    @Test func effectiveTOMLWritesEveryDefault() throws {
        let text = try ConfigLoader.parse("[[pool]]\nname = \"m\"\npath = \"m.db\"\n", path: "poold.toml").effectiveTOML()
        for line in [
            "control_socket = \"/run/poold/control.sock\"", "socket_mode = \"0660\"", "shutdown_grace = \"30s\"",
            "max_connections = 1024", "max_inflight_per_connection = 128", "kind = \"sqlite\"", "min = 1", "max = 4",
            "max_waiters = 1024", "acquire_timeout = \"5s\"", "idle_timeout = \"5m\"", "max_lifetime = \"1h\"",
            "job_timeout = \"30s\"", "max_job_timeout = \"5m\"", "allow_adhoc = false", "busy_timeout = \"5s\"",
        ] {
            #expect(text.contains("\n" + line + "\n"), "missing \(line)")
        }
    }
}

extension String {
    /// Foundation-free replace, so the test target needs no Foundation.
    fileprivate func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

@Suite struct RedactionTests {
    @Test(arguments: [
        ("postgres://app:secret@h:5432/db?sslmode=require", "postgres://app:***@h:5432/db?sslmode=require"),
        ("postgres://app@h/db", "postgres://app@h/db"),
        ("postgres://app:@h/db", "postgres://app:@h/db"),
        ("postgres://app:se/cr@et@h/db", "postgres://app:***@h/db"),
        ("postgres://app:secretXh:5432/db", "postgres://app:***"),
        ("postgres://h/db?sslmode=disable&password=secret", "postgres://h/db?sslmode=disable&password=***"),
    ])
    func urlsAreRedactedForDisplay(url: String, shown: String) {
        #expect(PostgresSettings(url: url).redactedURL == shown)
    }
}
