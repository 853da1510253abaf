// swift-tools-version: 6.1
import PackageDescription

/// Every target is built in the Swift 6 language mode (complete strict concurrency)
/// with the upcoming features the style guide asks for.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "poold",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "poold", targets: ["poold"]),
        .executable(name: "poolctl", targets: ["poolctl"]),
        .library(name: "PoolCore", targets: ["PoolCore"]),
        .library(name: "PoolKit", targets: ["PoolKit"]),
        .library(name: "PoolTestSupport", targets: ["PoolTestSupport"]),
        .library(name: "ControlProtocol", targets: ["ControlProtocol"]),
        .library(name: "PoolConfig", targets: ["PoolConfig"]),
        .library(name: "SQLiteSandbox", targets: ["SQLiteSandbox"]),
        .library(name: "PostgresWire", targets: ["PostgresWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", exact: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
    ],
    targets: [
        // Durable queues on PostgreSQL (issue 18, docs/QUEUES.md): so far the store's schema.
        .target(name: "DurableQueues", dependencies: ["PostgresWire", .product(name: "NIOCore", package: "swift-nio")], swiftSettings: strict),
        // The version and the git commit, embedded at build time (Plugins/BuildInfoPlugin).
        .target(name: "BuildInfo", swiftSettings: strict, plugins: ["BuildInfoPlugin"]),
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),
        // Pure rules: pool state machine, limits, durations, error codes. No I/O, no clock reads.
        .target(
            name: "PoolCore",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The shell that performs PoolCore's decisions, and the scopes jobs run in.
        .target(
            name: "PoolKit",
            dependencies: [
                "PoolCore",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Control protocol v1, pure: JSON, line framing, request decoding, reply encoding.
        .target(
            name: "ControlProtocol",
            dependencies: ["PoolCore"],
            swiftSettings: strict
        ),
        // The config file: TOML in, a validated model out, errors as file:line: message.
        .target(
            name: "PoolConfig",
            dependencies: ["PoolCore", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict
        ),
        // SQLite's C API from the system library: sqlite-nio hides the handle (no
        // sqlite3_interrupt) and installs a busy handler that retries forever.
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // What ad-hoc SQL may do on SQLite: an authorizer and connection limits (a module of its
        // own so that the fuzz package can drive it).
        .target(name: "SQLiteSandbox", dependencies: ["CSQLite"], swiftSettings: strict),
        // libsystemd (sd_notify, sd_journal_sendv, sd_listen_fds) and its Swift face.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // glibc's GNU spawn extensions (closefrom, chdir), for starting exec pools' workers.
        .target(name: "CSpawn"),
        .target(
            name: "SystemdKit",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // What the daemon's modules share: executors (a thread, an event loop), the one stop
        // signal a job can be stopped by, the batch runner both SQL backends use, log budgets.
        .target(
            name: "DaemonRuntime",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // SQLite pools: a connection per thread, the sandbox for ad-hoc SQL.
        .target(
            name: "SQLitePools",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol", "DaemonRuntime", "CSQLite", "SQLiteSandbox",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // PostgreSQL's protocol 3.0, our own (issue 16): messages both ways, the framing of the
        // server's stream, SCRAM-SHA-256 and MD5 authentication. Not used by the pools yet.
        .target(
            name: "PostgresWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // PostgreSQL pools: connections, credentials, TLS, the statement cache.
        .target(
            name: "PostgresPools",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol", "PoolConfig", "DaemonRuntime", "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Exec pools: long-running worker processes, their pipes, their reaping.
        .target(
            name: "ExecPools",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol", "PoolConfig", "DaemonRuntime", "CSpawn",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Jobs: the configured pools, the router (one request in, one reply out), the runner,
        // the registry of running jobs, access control, metrics, the daemon's lifecycle.
        .target(
            name: "Jobs",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol", "PoolConfig", "DaemonRuntime",
                "SQLitePools", "PostgresPools", "PostgresWire", "DurableQueues", "ExecPools", "SystemdKit", "BuildInfo",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // The control socket: the listener, one connection per client, framing, reply bytes,
        // and closing every connection without losing a request when poold stops.
        .target(
            name: "ControlSocket",
            dependencies: [
                "PoolCore", "PoolKit", "ControlProtocol", "PoolConfig", "DaemonRuntime", "Jobs", "SystemdKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The Prometheus scrape endpoint over HTTP (`[metrics] listen`): /metrics and /healthz, bounded.
        .target(
            name: "MetricsHTTP",
            dependencies: [
                "PoolCore", "PoolKit", "PoolConfig", "Jobs", "ControlSocket",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The services around the jobs: signals, systemd status and watchdog, pool supervision,
        // job deadlines.
        .target(
            name: "DaemonServices",
            dependencies: [
                "PoolCore", "PoolConfig", "Jobs", "SystemdKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The composition root: builds the pools and services, runs them, reloads, stops.
        .target(
            name: "PoolDaemon",
            dependencies: [
                "PoolCore", "PoolKit", "PoolConfig", "SystemdKit", "CSpawn",
                "DaemonRuntime", "Jobs", "ExecPools", "ControlSocket", "DaemonServices", "MetricsHTTP", "DurableQueues", "PostgresPools",
                "PostgresWire",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "poold",
            dependencies: [
                "PoolDaemon", "PoolConfig", "PoolCore", "SystemdKit", "ExecPools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // A blocking client of the control socket, for poolctl and the integration tests.
        .target(
            name: "ControlClient",
            dependencies: ["ControlProtocol", "PoolCore"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "poolctl",
            dependencies: [
                "ControlClient", "ControlProtocol", "PoolCore", "BuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Mock clock and mock backend shared by tests and benchmarks.
        .target(
            name: "PoolTestSupport",
            dependencies: ["PoolCore", "PoolKit", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolCoreTests",
            dependencies: ["PoolCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolKitTests",
            dependencies: ["PoolCore", "PoolKit", "PoolTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ControlProtocolTests",
            dependencies: ["ControlProtocol", "PoolCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolConfigTests",
            dependencies: ["PoolConfig", "PoolCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolDaemonTests",
            dependencies: [
                "PoolCore", "PoolKit", "PoolTestSupport", "ControlProtocol", "PoolConfig", "SQLiteSandbox",
                "DaemonRuntime", "Jobs", "ControlSocket", "PostgresPools", "PostgresWire", "ExecPools", "MetricsHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PostgresWireTests",
            dependencies: [
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SystemdKitTests",
            dependencies: ["SystemdKit", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // poolctl's pure parts (the metrics text, interval percentiles, top's layout), from the
        // executable's module.
        .testTarget(
            name: "PoolctlTests",
            dependencies: ["poolctl", "ControlProtocol"],
            swiftSettings: strict
        ),
        // Starts the real poold binary and drives it over its socket and with signals.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "ControlClient", "ControlProtocol", "PostgresWire", "DurableQueues",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
