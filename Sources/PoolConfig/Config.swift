/// A validated poold configuration: what one config file says, with every default filled in.
///
/// Equality compares the effective settings only (`daemon`, `access`, `pools`, `jobs`), not
/// `path` or `warnings`, so a reload can ask "did anything change?" without a moved comment
/// or a renamed file counting as a change.
public struct Config: Sendable, Equatable {
    /// The file it came from, as given to the loader.
    public var path: String
    public var daemon: DaemonSettings
    /// nil when the file has no `[access]` table (DESIGN §2 gives the default roles).
    public var access: AccessSettings?
    /// In file order.
    public var pools: [PoolSettings]
    /// In file order.
    public var jobs: [JobSettings]
    /// Things that are allowed but unwise, as `file:line: context: message` lines to log.
    public internal(set) var warnings: [String]

    public init(
        path: String,
        daemon: DaemonSettings = DaemonSettings(),
        access: AccessSettings? = nil,
        pools: [PoolSettings] = [],
        jobs: [JobSettings] = [],
        warnings: [String] = []
    ) {
        self.path = path
        self.daemon = daemon
        self.access = access
        self.pools = pools
        self.jobs = jobs
        self.warnings = warnings
    }

    public func pool(named name: String) -> PoolSettings? {
        pools.first { $0.name == name }
    }

    public func job(named name: String) -> JobSettings? {
        jobs.first { $0.name == name }
    }

    public static func == (lhs: Config, rhs: Config) -> Bool {
        lhs.daemon == rhs.daemon && lhs.access == rhs.access && lhs.pools == rhs.pools && lhs.jobs == rhs.jobs
    }
}

/// `[daemon]`: the control socket and daemon-wide bounds.
public struct DaemonSettings: Sendable, Equatable {
    public static let defaultControlSocket = "/run/poold/control.sock"

    /// Ignored when systemd passes a socket. At most 107 bytes (the AF_UNIX path limit).
    public var controlSocket: String
    /// Permission bits for the socket file, at most 0o777; written `"0660"` in the file.
    public var socketMode: UInt32
    public var socketGroup: String?
    /// How long running jobs may finish after SIGTERM; zero cancels them at once.
    public var shutdownGrace: Duration
    /// Connections at once; one more is answered `overloaded` and closed. At least 1.
    public var maxConnections: Int
    /// Requests in flight per connection before poold stops reading it. At least 1.
    public var maxInflightPerConnection: Int

    public init(
        controlSocket: String = DaemonSettings.defaultControlSocket,
        socketMode: UInt32 = 0o660,
        socketGroup: String? = nil,
        shutdownGrace: Duration = .seconds(30),
        maxConnections: Int = 1024,
        maxInflightPerConnection: Int = 128
    ) {
        self.controlSocket = controlSocket
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.shutdownGrace = shutdownGrace
        self.maxConnections = maxConnections
        self.maxInflightPerConnection = maxInflightPerConnection
    }
}

/// `[access]`: who may do what. Each entry is a user name, `@group`, or `*` (anyone).
/// A list missing from the file is empty; root is always an operator regardless.
public struct AccessSettings: Sendable, Equatable {
    public var operators: [String]
    public var submitters: [String]
    public var observers: [String]

    public init(operators: [String] = [], submitters: [String] = [], observers: [String] = []) {
        self.operators = operators
        self.submitters = submitters
        self.observers = observers
    }
}
