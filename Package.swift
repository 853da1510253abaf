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
        .library(name: "PoolCore", targets: ["PoolCore"]),
        .library(name: "PoolKit", targets: ["PoolKit"]),
        .library(name: "PoolTestSupport", targets: ["PoolTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
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
        // Mock clock and mock backend shared by tests and benchmarks.
        .target(
            name: "PoolTestSupport",
            dependencies: ["PoolCore", "PoolKit", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolCoreTests",
            dependencies: ["PoolCore", "PoolTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PoolKitTests",
            dependencies: ["PoolCore", "PoolKit", "PoolTestSupport"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
