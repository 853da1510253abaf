import CLibFuzzer
import PoolConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libFuzzer entry point: one TOML config file. The loader must return a Config or throw
/// a ConfigError for any text; a crash, trap or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    // Config files are small; huge inputs only slow the fuzzer down.
    guard count <= 64 * 1024 else { return 0 }
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    do {
        _ = try ConfigLoader.parse(text, path: "fuzz.toml")
    } catch {
        precondition(!error.description.isEmpty, "ConfigError with an empty description")
    }
    return 0
}

/// SwiftPM links an executable's `main` to its own entry point (MODULE_main), so libFuzzer's
/// `main` never runs; this one hands control to libFuzzer's driver with the same arguments.
@main enum FuzzConfigMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            guard let data else { return 0 }
            return fuzz(UnsafeRawPointer(data), size)
        })
    }
}
