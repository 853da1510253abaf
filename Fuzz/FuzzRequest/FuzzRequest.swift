import CLibFuzzer
import ControlProtocol
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libFuzzer entry point: one control-protocol request line. The decoder must return
/// (a request or an error) for any bytes; a crash, trap or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let line = UnsafeRawBufferPointer(start: start, count: count)
    switch RequestDecoder.decode(line) {
    case .success:
        break
    case .failure(let error):
        precondition(!error.message.isEmpty, "RequestError with an empty message")
    }
    return 0
}

/// SwiftPM links an executable's `main` to its own entry point (MODULE_main), so libFuzzer's
/// `main` never runs; this one hands control to libFuzzer's driver with the same arguments.
@main enum FuzzRequestMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            guard let data else { return 0 }
            return fuzz(UnsafeRawPointer(data), size)
        })
    }
}
