/// A validated poold configuration: what one config file says, with every default filled in.
///
/// Equality compares the effective settings only (`daemon`, `access`, `metrics`, `pools`, `jobs`, `queues`), not
/// `path` or `warnings`, so a reload can ask "did anything change?" without a moved comment
/// or a renamed file counting as a change.
public struct Config: Sendable, Equatable {
    /// The file it came from, as given to the loader.
    public var path: String
    public var daemon: DaemonSettings
    /// nil when the file has no `[access]` table (docs/CONFIG.md, "[access]", gives the default roles).
    public var access: AccessSettings?
    /// `[metrics]`: the HTTP scrape endpoint; off when the file has no `listen`.
    public var metrics: MetricsSettings
    /// In file order.
    public var pools: [PoolSettings]
    /// In file order.
    public var jobs: [JobSettings]
    /// In file order.
    public var queues: [QueueSettings]
    /// Things that are allowed but unwise, as `file:line: context: message` lines to log.
    public internal(set) var warnings: [String]

    public init(
        path: String,
        daemon: DaemonSettings = DaemonSettings(),
        access: AccessSettings? = nil,
        metrics: MetricsSettings = MetricsSettings(),
        pools: [PoolSettings] = [],
        jobs: [JobSettings] = [],
        queues: [QueueSettings] = [],
        warnings: [String] = []
    ) {
        self.path = path
        self.daemon = daemon
        self.access = access
        self.metrics = metrics
        self.pools = pools
        self.jobs = jobs
        self.queues = queues
        self.warnings = warnings
    }

    public func pool(named name: String) -> PoolSettings? {
        pools.first { $0.name == name }
    }

    public func job(named name: String) -> JobSettings? {
        jobs.first { $0.name == name }
    }

    public func queue(named name: String) -> QueueSettings? {
        queues.first { $0.name == name }
    }

    public static func == (lhs: Config, rhs: Config) -> Bool {
        lhs.daemon == rhs.daemon && lhs.access == rhs.access && lhs.metrics == rhs.metrics && lhs.pools == rhs.pools && lhs.jobs == rhs.jobs
            && lhs.queues == rhs.queues
    }
}
