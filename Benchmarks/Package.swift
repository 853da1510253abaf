// swift-tools-version: 6.1
import PackageDescription

/// SwiftPM names a path dependency after its folder, and a clone may live in any folder.
let root = Context.packageDirectory.split(separator: "/").dropLast().last.map(String.init) ?? "poold"

// Benchmarks live in their own package so that `make test` never builds them.
// `make bench` runs `swift package benchmark` here.
let package = Package(
    name: "poold-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/vapor/postgres-nio", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "PoolBenchmarks",
            dependencies: [
                .product(name: "PoolKit", package: root),
                .product(name: "PoolTestSupport", package: root),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "_ConnectionPoolTestUtils", package: "postgres-nio"),
            ],
            path: "Benchmarks/PoolBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // PostgresNIO with no daemon in front, beside the throwaway cluster: the ceiling for a
        // pool built on its PostgresConnection (see the file's header).
        .executableTarget(
            name: "PostgresDirect",
            dependencies: [
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/PostgresDirect"
        ),
        // Issue 16, step 1: the hot path of a protocol 3.0 client of our own on SwiftNIO
        // (trust auth, Parse once, Bind/Execute/Sync in one write), for its CPU per query.
        .executableTarget(
            name: "WireSpike",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/WireSpike"
        ),
        // Issue 16: PostgresWire's real client, as poold runs it (see the file's header).
        .executableTarget(
            name: "WireClientBench",
            dependencies: [.product(name: "PostgresWire", package: root)],
            path: "Benchmarks/WireClientBench"
        ),
    ],
    swiftLanguageModes: [.v6]
)
