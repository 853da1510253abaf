import Foundation
import Testing

/// `--version` says what the binaries were built from: the version in VERSION and the git
/// commit, "-dirty" when tracked files had uncommitted changes.
struct VersionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func git(_ arguments: [String]) throws -> String {
        let result = try Program.run("/usr/bin/git", ["-C", root] + arguments)
        guard result.status == 0 else { throw TestFailure("git \(arguments): \(result.err)") }
        return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(arguments: ["poold", "poolctl"])
    func versionNamesTheCommit(binary: String) throws {
        let version = try String(contentsOfFile: Self.root + "/VERSION", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let commit = try Self.git(["rev-parse", "--short=12", "HEAD"])
        let dirty = !(try Self.git(["status", "--porcelain", "--untracked-files=no"])).isEmpty
        let run = try CommandLineTests.run(binary, ["--version"])
        #expect(run.status == 0)
        #expect(run.out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(version) (commit \(commit)\(dirty ? "-dirty" : ""))")
    }
}
