import CLibFuzzer
import PostgresWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// libFuzzer entry point: arbitrary bytes as a PostgreSQL server's stream (`WireFuzzing`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    WireFuzzing.run(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}

/// SwiftPM links an executable's `main` to its own entry point (MODULE_main), so libFuzzer's
/// `main` never runs; this one hands control to libFuzzer's driver with the same arguments.
@main enum FuzzPostgresMessagesMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(
            LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                guard let data else { return 0 }
                return fuzz(UnsafeRawPointer(data), size)
            })
    }
}
