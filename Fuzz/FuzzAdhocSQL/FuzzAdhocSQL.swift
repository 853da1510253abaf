import CLibFuzzer
import SQLiteSandbox
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry point: ad-hoc SQL as a client could send it (one statement a line), run in
/// the sandbox as poold runs it, on a database in a scratch directory that is also the working
/// directory (so a relative ATTACH or VACUUM INTO would land there). A crash is a bug; so is any
/// file left in the scratch directory besides the database's own.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let statements = text.split(separator: "\n", omittingEmptySubsequences: true).prefix(32).map(String.init)
    Scratch.shared.reset()
    SandboxProbe.run(statements, databaseAt: Scratch.shared.database)
    if let stray = Scratch.shared.strayFiles().first {
        preconditionFailure("the sandbox let ad-hoc SQL create \(stray)")
    }
    return 0
}

/// The scratch directory, made once per process.
final class Scratch: @unchecked Sendable {
    static let shared = Scratch()
    let directory: String
    var database: String { directory + "/main.db" }
    static let allowed: Set<String> = ["main.db", "main.db-journal", "main.db-wal", "main.db-shm"]

    init() {
        var template = Array("/tmp/poold-fuzz-adhoc-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { preconditionFailure("mkdtemp failed") }
        directory = String(cString: made)
        chdir(directory)
    }

    func entries() -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    func reset() {
        for name in entries() { unlink(directory + "/" + name) }
    }

    func strayFiles() -> [String] {
        entries().filter { !Self.allowed.contains($0) }
    }
}

/// SwiftPM links an executable's `main` to its own entry point, so libFuzzer's never runs:
/// this one hands control to libFuzzer's driver with the same arguments.
@main enum FuzzAdhocSQLMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            guard let data else { return 0 }
            return fuzz(UnsafeRawPointer(data), size)
        })
    }
}
