import PoolConfig
import Testing

/// `[[queue]]`: defaults, the rules between a queue, its store and its work, and what a reload
/// does with queues.
struct QueueConfigTests {
    static let base = """
        [[pool]]
        name = "pg"
        kind = "postgres"
        url = "postgres://app@127.0.0.1/app"

        [[pool]]
        name = "lite"
        path = "/tmp/x.db"

        [[pool]]
        name = "workers"
        kind = "exec"
        command = ["/bin/cat"]

        [[job]]
        name = "send"
        pool = "pg"
        sql = "INSERT INTO outbox VALUES ($1)"

        [[job]]
        name = "local"
        pool = "lite"
        sql = "INSERT INTO t VALUES (?1)"

        """

    @Test func defaultsAreFilledIn() throws {
        let parsed = try #require(config(Self.base + "[[queue]]\nname = \"emails\"\nstore = \"pg\"\njob = \"send\"\n"))
        let queue = try #require(parsed.queue(named: "emails"))
        #expect(queue.work == .job("send"))
        #expect(queue.concurrency == 8 && queue.maxAttempts == 20 && queue.schema == "poold")
        #expect(queue.timeout == .seconds(300) && queue.retention == .seconds(86_400))
        #expect(parsed.effectiveTOML().contains("[[queue]]\nname = \"emails\"\nstore = \"pg\"\njob = \"send\""))
        let exec = try #require(
            config(Self.base + "[[queue]]\nname = \"e\"\nstore = \"pg\"\npool = \"workers\"\nconcurrency = 2\nschema = \"jobs_2\"\n"))
        #expect(exec.queues.first?.work == .pool("workers") && exec.queues.first?.concurrency == 2)
    }

    @Test func storeAndWorkAreChecked() {
        // The base is 23 lines: the queue's header is line 24, its store line 26.
        expectError(
            Self.base + "[[queue]]\nname = \"q\"\nstore = \"lite\"\njob = \"send\"\n",
            "poold.toml:26: queue \"q\": store must be a postgres pool; pool \"lite\" is a sqlite pool")
        expectError(
            Self.base + "[[queue]]\nname = \"q\"\nstore = \"pgg\"\njob = \"send\"\n",
            "poold.toml:26: queue \"q\": pool \"pgg\" does not exist (did you mean \"pg\"?); postgres pools: \"pg\"")
        guard let other = configError(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\njob = \"local\"\n") else { return }
        #expect(other.description.contains("must run on its store"), "\(other)")
        guard let both = configError(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\njob = \"send\"\npool = \"workers\"\n")
        else { return }
        #expect(both.description.contains("not both"), "\(both)")
        guard let neither = configError(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\n") else { return }
        #expect(neither.description.contains("job or pool is required"), "\(neither)")
        guard let sqlPool = configError(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\npool = \"lite\"\n") else { return }
        #expect(sqlPool.description.contains("must be an exec pool"), "\(sqlPool)")
    }

    @Test func valuesAreChecked() {
        let queue = "[[queue]]\nname = \"q\"\nstore = \"pg\"\njob = \"send\"\n"
        expectError(
            Self.base + queue + "backoff = \"linear\"\n",
            "poold.toml:28: queue \"q\": backoff must be \"exponential\" "
                + "(attempt^4 seconds, at most an hour, ±10%; the only one there is) (got \"linear\")")
        expectError(Self.base + queue + "concurrency = 0\n", "poold.toml:28: queue \"q\": concurrency must be a positive integer (got 0)")
        guard let schema = configError(Self.base + queue + "schema = \"Bad Name\"\n") else { return }
        #expect(schema.description.contains("schema must be"), "\(schema)")
        guard let pgSchema = configError(Self.base + queue + "schema = \"pg_catalog\"\n") else { return }
        #expect(pgSchema.description.contains("schema must be"), "\(pgSchema)")
        guard let twice = configError(Self.base + queue + queue) else { return }
        #expect(twice.description.contains("duplicate queue name"), "\(twice)")
        guard let typo = configError(Self.base + queue + "concurency = 2\n") else { return }
        #expect(typo.description.contains("did you mean \"concurrency\""), "\(typo)")
    }

    @Test func aReloadKeepsTheRunningQueues() throws {
        let before = try #require(config(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\njob = \"send\"\n"))
        let after = try #require(config(Self.base + "[[queue]]\nname = \"q\"\nstore = \"pg\"\njob = \"send\"\nconcurrency = 3\n"))
        let diff = ConfigDiff(running: before, new: after)
        #expect(diff.queuesChanged)
        #expect(diff.applied.queues == before.queues)
        #expect(diff.otherChanges.contains("[[queue]] changes take effect after a restart"))
        #expect(!ConfigDiff(running: before, new: before).queuesChanged)
    }
}
