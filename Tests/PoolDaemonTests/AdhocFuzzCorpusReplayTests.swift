import Foundation
import SQLiteSandbox
import Testing

/// Replays the seed corpus of `Fuzz/FuzzAdhocSQL` (Tests/Fuzz/corpus/adhoc/, plus any `crash-*`
/// input saved there) through the sandbox on every `make test`: each runs to its end, leaves no
/// file beside the database; no statement of a `refused-*` input succeeds (at least one is
/// refused by the sandbox), and every statement of an `ok-*` input does.
@Suite struct AdhocFuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus/adhoc")

    @Test func everyCorpusInputRunsInTheSandboxAndLeavesNothingBehind() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
        #expect(files.count >= 5)
        #expect(SQLiteSandbox.maxValueBytes == 16 << 20, "the sandbox's value limit is the result bound")
        let cwdBefore = Set(try FileManager.default.contentsOfDirectory(atPath: FileManager.default.currentDirectoryPath))
        for file in files {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("poold-adhoc-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let statements = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
            let outcome = SandboxProbe.run(statements, databaseAt: directory + "/main.db")
            let name = file.lastPathComponent
            #expect(outcome.succeeded + outcome.refused + outcome.failed == statements.count, "\(name): \(outcome)")
            if name.hasPrefix("refused-") {
                #expect(outcome.succeeded == 0 && outcome.refused >= 1, "\(name): \(outcome)")
            }
            if name.hasPrefix("ok-") {
                #expect(outcome.refused == 0 && outcome.failed == 0, "\(name): \(outcome)")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix("main.db") }
            #expect(left.isEmpty, "\(name) left \(left)")
        }
        let cwdAfter = Set(try FileManager.default.contentsOfDirectory(atPath: FileManager.default.currentDirectoryPath))
        #expect(
            cwdAfter.subtracting(cwdBefore).filter { $0.hasSuffix(".db") }.isEmpty, "a corpus input created a file in the working directory"
        )
    }
}
