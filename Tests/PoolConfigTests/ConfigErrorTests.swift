import PoolConfig
import Testing

/// Every rule of docs/CONFIG.md, each with the exact `file:line: context: message` it produces.
@Suite struct ConfigErrorTests {
    // MARK: - Structure

    @Test func unknownTopLevelTableIsNamedWithTheValidOnes() {
        expectError(
            "[daemon]\n\n[pools]\nname = \"x\"\n",
            "poold.toml:3: unknown table [pools] (did you mean [[pool]]?); "
                + "valid tables are [daemon], [access], [metrics], [[pool]], [[job]] and [[queue]]"
        )
        expectError(
            "[[jobz]]\nname = \"x\"\n",
            "poold.toml:1: unknown table [[jobz]] (did you mean [[job]]?); "
                + "valid tables are [daemon], [access], [metrics], [[pool]], [[job]] and [[queue]]"
        )
        expectError(
            "[logging]\nlevel = \"debug\"\n",
            "poold.toml:1: unknown table [logging]; "
                + "valid tables are [daemon], [access], [metrics], [[pool]], [[job]] and [[queue]]"
        )
    }

    @Test func topLevelKeysAreRefused() {
        expectError(
            "# settings\ncontrol_socket = \"/x\"\n",
            "poold.toml:2: unknown top-level key \"control_socket\"; settings belong in "
                + "[daemon], [access], [metrics], [[pool]], [[job]] and [[queue]]"
        )
    }

    @Test func poolAndJobMustBeArraysOfTables() {
        expectError(
            "[pool]\nname = \"x\"\n",
            "poold.toml:1: pool must be an array of tables: write [[pool]], once per pool (got a table)"
        )
        expectError("daemon = 5\n", "poold.toml:1: daemon must be a table: write [daemon] (got 5)")
    }

    @Test func tomlSyntaxErrorsCarryTheirLine() throws {
        let error = try #require(configError("[daemon]\nshutdown_grace = \"5s\"\nmax_connections = = 3\n"))
        #expect(error.file == "poold.toml")
        #expect(error.line == 3)
        #expect(error.description.hasPrefix("poold.toml:3: "))
        #expect(!error.message.isEmpty)
    }

    @Test func duplicateTomlKeysAreSyntaxErrors() throws {
        let error = try #require(configError("[[pool]]\nname = \"a\"\nname = \"b\"\n"))
        #expect(error.line == 3)
    }

    @Test func nulCharactersAreRefused() {
        expectError("[daemon]\n\n# \u{0}\n", "poold.toml:3: the file contains a NUL character")
    }

    // MARK: - Unknown keys

    @Test func unknownKeysSuggestTheClosestValidKey() {
        expectError(
            """
            [[pool]]
            name = "main"
            path = "m.db"
            max_waiter = 10
            """,
            "poold.toml:4: pool \"main\": unknown key \"max_waiter\" (did you mean \"max_waiters\"?)"
        )
        expectError(
            "[daemon]\nshutdown_grase = \"5s\"\n",
            "poold.toml:2: [daemon]: unknown key \"shutdown_grase\" (did you mean \"shutdown_grace\"?)"
        )
        expectError(
            "[access]\noperator = [\"root\"]\n",
            "poold.toml:2: [access]: unknown key \"operator\" (did you mean \"operators\"?)"
        )
        expectError(
            "[[pool]]\nname = \"p\"\nkind = \"exec\"\ncommand = [\"w\"]\n[[job]]\nname = \"j\"\npool = \"p\"\ntimeuot = \"1s\"\n",
            "poold.toml:8: job \"j\": unknown key \"timeuot\" (did you mean \"timeout\"?)"
        )
    }

    @Test func unknownKeysFarFromAnyValidKeyGetNoSuggestion() {
        expectError(
            "[[pool]]\nname = \"main\"\npath = \"m.db\"\ncolour = \"blue\"\n",
            "poold.toml:4: pool \"main\": unknown key \"colour\""
        )
        // Short keys need a close match: `sql` is not a typo of `url`.
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://a@h/d\"\nsql = \"x\"\n",
            "poold.toml:5: pool \"pg\": unknown key \"sql\""
        )
    }

    @Test func aTypoOfARequiredKeyIsReportedAsTheTypo() {
        // Not "path is required", which would be at the header line.
        expectError(
            "[[pool]]\nname = \"main\"\npth = \"m.db\"\n",
            "poold.toml:3: pool \"main\": unknown key \"pth\" (did you mean \"path\"?)"
        )
        expectError(
            "[[pool]]\nnmae = \"main\"\npath = \"m.db\"\n",
            "poold.toml:2: pool #1: unknown key \"nmae\" (did you mean \"name\"?)"
        )
    }

    @Test(arguments: [
        ("sqlite", "command = [\"w\"]", "\"command\" applies to exec pools only (this pool's kind is \"sqlite\")"),
        ("sqlite", "url = \"postgres://a@h/d\"", "\"url\" applies to postgres pools only (this pool's kind is \"sqlite\")"),
        ("exec", "busy_timeout = \"1s\"", "\"busy_timeout\" applies to sqlite pools only (this pool's kind is \"exec\")"),
        ("postgres", "kill_grace = \"1s\"", "\"kill_grace\" applies to exec pools only (this pool's kind is \"postgres\")"),
    ])
    func keysOfAnotherKindNameTheKindTheyBelongTo(kind: String, line: String, message: String) {
        let backend = ["sqlite": "path = \"m.db\"", "exec": "command = [\"w\"]", "postgres": "url = \"postgres://a@h/d\""][kind] ?? ""
        expectError(
            "[[pool]]\nname = \"main\"\nkind = \"\(kind)\"\n\(backend)\n\(line)\n",
            "poold.toml:5: pool \"main\": \(message)"
        )
    }

    @Test func keysOfAnotherKindStandInForTheMissingKeyOfThisKind() {
        // The pool forgot kind = "exec": the message must point at command, not demand path.
        expectError(
            "[[pool]]\nname = \"main\"\n\ncommand = [\"w\"]\n",
            "poold.toml:4: pool \"main\": \"command\" applies to exec pools only (this pool's kind is \"sqlite\")"
        )
    }

    // MARK: - Types and values

    @Test(arguments: [
        ("max_waiters = \"lots\"", "max_waiters must be a positive integer (got \"lots\")"),
        ("max_waiters = 0", "max_waiters must be a positive integer (got 0)"),
        ("max = 0", "max must be a positive integer (got 0)"),
        ("max = 2.5", "max must be a positive integer (got 2.5)"),
        ("min = -1", "min must be a non-negative integer (got -1)"),
        ("min = \"1\"", "min must be a non-negative integer (got \"1\")"),
        ("acquire_timeout = 5", "acquire_timeout must be a duration string like \"5s\" or \"250ms\" (got 5)"),
        ("acquire_timeout = \"5\"", "acquire_timeout must be a duration string like \"5s\" or \"250ms\" (got \"5\")"),
        ("acquire_timeout = \"-5s\"", "acquire_timeout must be a duration string like \"5s\" or \"250ms\" (got \"-5s\")"),
        ("acquire_timeout = \"0s\"", "acquire_timeout must be longer than zero (got \"0s\")"),
        ("job_timeout = \"5 days\"", "job_timeout must be a duration string like \"30s\" or \"250ms\" (got \"5 days\")"),
        ("idle_timeout = 300", "idle_timeout must be a duration string like \"5m\" or \"250ms\", or \"never\" (got 300)"),
        ("health_check_after = \"-1s\"", "health_check_after must be a duration string like \"30s\" or \"250ms\" (got \"-1s\")"),
        ("allow_adhoc = \"yes\"", "allow_adhoc must be true or false (got \"yes\")"),
        ("kind = \"mysql\"", "kind must be one of \"sqlite\", \"postgres\", \"exec\" (got \"mysql\")"),
        ("busy_timeout = [1]", "busy_timeout must be a duration string like \"5s\" or \"250ms\" (got [1])"),
        ("path = \"\"", "path must be a non-empty string (the database file) (got \"\")"),
        ("max_waiters = 1979-05-27", "max_waiters must be a positive integer (got 1979-05-27)"),
        ("max_waiters = { n = 1 }", "max_waiters must be a positive integer (got { n = 1 })"),
    ])
    func wrongTypesAndValuesNameTheKeyAndWhatIsValid(line: String, message: String) throws {
        let text = "[[pool]]\nname = \"main\"\n" + (line.hasPrefix("path") ? "" : "path = \"m.db\"\n") + line + "\n"
        let error = try #require(configError(text))
        #expect(error.description == "poold.toml:\(line.hasPrefix("path") ? 3 : 4): pool \"main\": \(message)")
    }

    @Test(arguments: [
        ("control_socket = \"\"", "control_socket must be a non-empty string (the socket's path) (got \"\")"),
        ("socket_mode = 660", "socket_mode must be an octal string of 3 or 4 digits like \"0660\", at most \"0777\" (got 660)"),
        ("socket_mode = \"0999\"", "socket_mode must be an octal string of 3 or 4 digits like \"0660\", at most \"0777\" (got \"0999\")"),
        ("socket_mode = \"4755\"", "socket_mode must be an octal string of 3 or 4 digits like \"0660\", at most \"0777\" (got \"4755\")"),
        ("socket_mode = \"66\"", "socket_mode must be an octal string of 3 or 4 digits like \"0660\", at most \"0777\" (got \"66\")"),
        ("socket_group = \"@poold\"", "socket_group must be a group name (without \"@\") (got \"@poold\")"),
        ("shutdown_grace = 30", "shutdown_grace must be a duration string like \"30s\" or \"250ms\" (got 30)"),
        ("max_connections = 0", "max_connections must be a positive integer (got 0)"),
        ("max_inflight_per_connection = true", "max_inflight_per_connection must be a positive integer (got true)"),
    ])
    func daemonValues(line: String, message: String) {
        expectError("[daemon]\n" + line + "\n", "poold.toml:2: [daemon]: \(message)")
    }

    @Test func controlSocketMustFitInSunPath() {
        let long = "/run/" + String(repeating: "x", count: 103)
        expectError(
            "[daemon]\ncontrol_socket = \"\(long)\"\n",
            "poold.toml:2: [daemon]: control_socket must be at most 107 bytes long, the limit of a Unix socket path (it is 108)"
        )
    }

    @Test func accessEntriesMustBeUsersGroupsOrStar() {
        expectError(
            "[access]\nobservers = [\"*\"]\noperators = [\"root\", \"@\"]\n",
            "poold.toml:3: [access]: operators[1] must be a user name, \"@group\" or \"*\" (got \"@\")"
        )
        expectError(
            "[access]\nsubmitters = \"@poold\"\n",
            "poold.toml:2: [access]: submitters must be an array of entries, each a user name, \"@group\" or \"*\", like [\"root\", "
                + "\"@poold\"] (got \"@poold\")"
        )
        expectError(
            "[access]\nsubmitters = [\"bad user\"]\n",
            "poold.toml:2: [access]: submitters[0] must be a user name, \"@group\" or \"*\" (got \"bad user\")"
        )
    }

    @Test func execCommandMustBeANonEmptyArrayOfStrings() {
        for bad in ["\"python3 worker.py\"", "[]", "[\"a\", 1]", "[\"\"]"] {
            guard let error = configError("[[pool]]\nname = \"w\"\nkind = \"exec\"\ncommand = \(bad)\n") else { continue }
            #expect(error.line == 4)
            #expect(error.message.hasPrefix("pool \"w\": command must be a non-empty array of non-empty strings"))
        }
        expectError(
            "[[pool]]\nname = \"w\"\nkind = \"exec\"\ncommand = [\"w\"]\nmax_jobs_per_worker = 0\n",
            "poold.toml:5: pool \"w\": max_jobs_per_worker must be a positive integer (got 0)"
        )
    }

    // MARK: - Required keys and names

    @Test func aPoolWithoutANameIsAnErrorAtItsHeader() {
        expectError(
            "[[pool]]\nname = \"a\"\npath = \"a.db\"\n\n[[pool]]\n# no name\npath = \"b.db\"\n",
            "poold.toml:5: pool #2: name is required: every pool needs a unique name = \"…\" (1 to 64 letters, digits, '_' or '-')"
        )
    }

    @Test(arguments: ["\"my pool\"", "\"\"", "\"a/b\"", "5", "\"\(String(repeating: "x", count: 65))\""])
    func poolNamesAreLettersDigitsUnderscoresAndDashes(name: String) throws {
        let error = try #require(configError("[[pool]]\npath = \"m.db\"\nname = \(name)\n"))
        #expect(error.line == 3)
        #expect(error.message.hasPrefix("pool #1: name must be 1 to 64 letters, digits, '_' or '-' (got "))
    }

    @Test func backendKeysAreRequired() {
        expectError(
            "[[pool]]\nname = \"m\"\n",
            "poold.toml:1: pool \"m\": path is required for a sqlite pool: the database file, e.g. path = \"/var/lib/poold/main.db\""
        )
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\n",
            "poold.toml:1: pool \"pg\": url is required for a postgres pool, e.g. url = \"postgres://app@127.0.0.1:5432/app\""
        )
        expectError(
            "[[pool]]\nname = \"w\"\nkind = \"exec\"\n",
            "poold.toml:1: pool \"w\": command is required for an exec pool, e.g. command = [\"/usr/bin/python3\", \"/opt/app/worker.py\"]"
        )
    }

    @Test func jobsNeedANameAndAPool() {
        expectError(
            "[[pool]]\nname = \"m\"\npath = \"m.db\"\n[[job]]\npool = \"m\"\nsql = \"SELECT 1\"\n",
            "poold.toml:4: job #1: name is required: every job needs a unique name = \"…\" (1 to 64 letters, digits, '_' or '-')"
        )
        expectError(
            "[[job]]\nname = \"j\"\nsql = \"SELECT 1\"\n",
            "poold.toml:1: job \"j\": pool is required: the name of the pool the job runs on"
        )
    }

    // MARK: - Errors between two keys: the later key's line

    @Test func minAboveMaxIsReportedAtTheLaterKey() {
        expectError(
            "[[pool]]\nname = \"main\"\npath = \"m.db\"\nmin = 5\nmax = 2\n",
            "poold.toml:5: pool \"main\": min (5) must not exceed max (2)"
        )
        expectError(
            "[[pool]]\nname = \"main\"\nmax = 2\npath = \"m.db\"\nmin = 5\n",
            "poold.toml:5: pool \"main\": min (5) must not exceed max (2)"
        )
        // max left at its default of 4: the only key involved is min.
        expectError(
            "[[pool]]\nname = \"main\"\nmin = 5\npath = \"m.db\"\n",
            "poold.toml:3: pool \"main\": min (5) must not exceed max (4)"
        )
    }

    @Test func jobTimeoutAboveMaxJobTimeoutIsReportedAtTheLaterKey() {
        expectError(
            "[[pool]]\nname = \"main\"\njob_timeout = \"10m\"\npath = \"m.db\"\nmax_job_timeout = \"1m\"\n",
            "poold.toml:5: pool \"main\": job_timeout (10m) must not exceed max_job_timeout (1m)"
        )
        expectError(
            "[[pool]]\nname = \"main\"\nmax_job_timeout = \"1m\"\npath = \"m.db\"\njob_timeout = \"90s\"\n",
            "poold.toml:5: pool \"main\": job_timeout (1m30s) must not exceed max_job_timeout (1m)"
        )
        expectError(
            "[[pool]]\nname = \"main\"\npath = \"m.db\"\njob_timeout = \"6m\"\n",
            "poold.toml:4: pool \"main\": job_timeout (6m) must not exceed max_job_timeout (5m)"
        )
    }

    @Test func duplicatePoolNamesAreReportedAtTheLaterOne() {
        expectError(
            """
            [[pool]]
            name = "main"
            path = "a.db"

            [[pool]]
            path = "b.db"
            name = "main"
            """,
            "poold.toml:7: pool \"main\": duplicate pool name (first declared at line 2); pool names must be unique"
        )
    }

    @Test func duplicateJobNamesAreReportedAtTheLaterOne() {
        expectError(
            """
            [[pool]]
            name = "main"
            path = "a.db"
            [[job]]
            name = "j"
            pool = "main"
            sql = "SELECT 1"
            [[job]]
            name = "j"
            pool = "main"
            sql = "SELECT 2"
            """,
            "poold.toml:9: job \"j\": duplicate job name (first declared at line 5); job names must be unique"
        )
    }

    @Test func aJobNamingAMissingPoolNamesThePoolsThatExist() {
        let pools = "[[pool]]\nname = \"main\"\npath = \"a.db\"\n[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://a@h/d\"\n"
        expectError(
            pools + "[[job]]\nname = \"j\"\npool = \"mian\"\nsql = \"SELECT 1\"\n",
            "poold.toml:10: job \"j\": pool \"mian\" does not exist (did you mean \"main\"?); configured pools: \"main\", \"pg\""
        )
        expectError(
            "[[job]]\nname = \"j\"\npool = \"main\"\nsql = \"SELECT 1\"\n",
            "poold.toml:3: job \"j\": pool \"main\" does not exist; no pools are configured"
        )
    }

    @Test func aJobOnAPoolWithProblemsIsNotAlsoToldThePoolIsMissing() throws {
        let error = try #require(
            configError(
                "[[job]]\nname = \"j\"\npool = \"main\"\nsql = \"SELECT 1\"\n[[pool]]\nname = \"main\"\npath = \"a.db\"\nmax = 0\n"))
        #expect(error.description == "poold.toml:8: pool \"main\": max must be a positive integer (got 0)")
        // Nor checked against a max_job_timeout that did not parse.
        expectError(
            "[[job]]\nname = \"j\"\npool = \"main\"\nsql = \"SELECT 1\"\ntimeout = \"10m\"\n[[pool]]\nname = \"main\"\npath = "
                + "\"a.db\"\nmax_job_timeout = 600\n",
            "poold.toml:9: pool \"main\": max_job_timeout must be a duration string like \"5m\" or \"250ms\" (got 600)"
        )
    }

    @Test func jobTimeoutMustNotExceedThePoolsMaxJobTimeout() {
        expectError(
            "[[pool]]\nname = \"main\"\npath = \"a.db\"\nmax_job_timeout = \"1m\"\n[[job]]\nname = \"j\"\npool = \"main\"\nsql = \"SELECT "
                + "1\"\ntimeout = \"2m\"\n",
            "poold.toml:9: job \"j\": timeout (2m) must not exceed max_job_timeout (1m) of pool \"main\""
        )
        // The job comes first in the file: the pool's max_job_timeout is the later key.
        expectError(
            "[[job]]\nname = \"j\"\npool = \"main\"\nsql = \"SELECT 1\"\ntimeout = \"2m\"\n[[pool]]\nname = \"main\"\npath = "
                + "\"a.db\"\nmax_job_timeout = \"1m\"\n",
            "poold.toml:9: job \"j\": timeout (2m) must not exceed max_job_timeout (1m) of pool \"main\""
        )
    }

    // MARK: - Jobs and pool kinds

    @Test func sqlIsRequiredOnSQLPoolsAndRefusedOnExecPools() {
        expectError(
            "[[pool]]\nname = \"main\"\npath = \"a.db\"\n[[job]]\nname = \"j\"\npool = \"main\"\n",
            "poold.toml:4: job \"j\": sql is required for a job on a sqlite pool (pool \"main\")"
        )
        expectError(
            "[[pool]]\nname = \"w\"\nkind = \"exec\"\ncommand = [\"w\"]\n[[job]]\nname = \"j\"\npool = \"w\"\nsql = \"SELECT 1\"\n",
            "poold.toml:8: job \"j\": \"sql\" applies to jobs on sqlite and postgres pools only (pool \"w\" is an exec pool)"
        )
        expectError(
            "[[pool]]\nname = \"w\"\nkind = \"exec\"\ncommand = [\"w\"]\n[[job]]\nname = \"j\"\npool = \"w\"\ntransaction = true\n",
            "poold.toml:8: job \"j\": \"transaction\" applies to jobs on sqlite and postgres pools only (pool \"w\" is an exec pool)"
        )
    }

    @Test(arguments: ["5", "\"\"", "\"  \"", "[]", "[\"SELECT 1\", 2]", "[\"SELECT 1\", \"\"]"])
    func sqlMustBeAStatementOrABatchOfThem(sql: String) throws {
        let error = try #require(
            configError(
                "[[pool]]\nname = \"main\"\npath = \"a.db\"\n[[job]]\nname = \"j\"\npool = \"main\"\nsql = \(sql)\n"))
        #expect(error.line == 7)
        #expect(
            error.message.hasPrefix(
                "job \"j\": sql must be a non-empty string (one statement) or a non-empty array of them (a batch) (got "))
    }

    // MARK: - Postgres

    @Test func passwordFileAndCredentialAreMutuallyExclusive() {
        expectError(
            """
            [[pool]]
            name = "pg"
            kind = "postgres"
            credential = "pg-password"
            url = "postgres://app@h/app"
            password_file = "/etc/poold/pg.password"
            """,
            "poold.toml:6: pool \"pg\": password_file and credential are mutually exclusive; set one"
        )
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://app@h/app\"\ncredential = \"../pw\"\n",
            "poold.toml:5: pool \"pg\": credential must be a name under $CREDENTIALS_DIRECTORY, not a path (got \"../pw\")"
        )
    }

    @Test(arguments: [
        ("mysql://app@h/db", "url must start with postgres:// or postgresql:// (got \"mysql://app@h/db\")"),
        ("postgres://h/db", "url must name a user: postgres://USER@HOST:PORT/DATABASE (got \"postgres://h/db\")"),
        ("postgres://app@/db", "url must name a host: postgres://USER@HOST:PORT/DATABASE (got \"postgres://app@/db\")"),
        ("postgres://app@h:99999/db", "url has a bad port (it must be a number from 1 to 65535) (got \"postgres://app@h:99999/db\")"),
        (
            "postgres://app@h/db?sslmode=always",
            "url has sslmode=always; valid: disable, allow, prefer, require, verify-ca, verify-full (got "
                + "\"postgres://app@h/db?sslmode=always\")"
        ),
        (
            "postgres://app@h/db?timeout=5",
            "url has an unsupported parameter \"timeout\"; supported: sslmode, sslrootcert (got \"postgres://app@h/db?timeout=5\")"
        ),
    ])
    func urlsAreValidated(url: String, message: String) {
        expectError(
            "[[pool]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"\(url)\"\n",
            "poold.toml:4: pool \"pg\": \(message)"
        )
    }
}
