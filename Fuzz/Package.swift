// swift-tools-version: 6.1
import PackageDescription

/// SwiftPM names a path dependency after its folder, and a clone may live in any folder.
let root = Context.packageDirectory.split(separator: "/").dropLast().last.map(String.init) ?? "poold"

// libFuzzer harnesses live in their own package so that `make test` never builds them.
// `make fuzz` builds them with `-sanitize=fuzzer,address` and runs them on Tests/Fuzz/corpus/.
// By hand: cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzRequest
let package = Package(
    name: "poold-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        // Declares libFuzzer's LLVMFuzzerRunDriver, which each harness's @main hands control to.
        .target(name: "CLibFuzzer", path: "CLibFuzzer"),
        // RequestDecoder.decode on arbitrary bytes: one control-protocol request line.
        .executableTarget(
            name: "FuzzRequest",
            dependencies: ["CLibFuzzer", .product(name: "ControlProtocol", package: root)],
            path: "FuzzRequest"
        ),
        // Ad-hoc SQL in the SQLite sandbox (SandboxProbe): one statement a line.
        .executableTarget(
            name: "FuzzAdhocSQL",
            dependencies: ["CLibFuzzer", .product(name: "SQLiteSandbox", package: root)],
            path: "FuzzAdhocSQL"
        ),
        // A PostgreSQL server's stream, arbitrary bytes: framing, messages, the query state
        // machine, SCRAM (PostgresWire's WireFuzzing).
        .executableTarget(
            name: "FuzzPostgresMessages",
            dependencies: ["CLibFuzzer", .product(name: "PostgresWire", package: root)],
            path: "FuzzPostgresMessages"
        ),
        // ConfigLoader.parse on arbitrary text: one TOML config file.
        .executableTarget(
            name: "FuzzConfig",
            dependencies: ["CLibFuzzer", .product(name: "PoolConfig", package: root)],
            path: "FuzzConfig"
        ),
    ],
    swiftLanguageModes: [.v6]
)
