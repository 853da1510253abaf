import Foundation
import PostgresWire
import Testing

/// Replays the seed corpus of `Fuzz/FuzzPostgresMessages` (Tests/Fuzz/corpus/postgres/, plus any
/// `crash-*` input saved there) through `WireFuzzing` on every `make test`. File names say what
/// to expect: `ok-*` streams follow the protocol and answer at least one query; `bad-*` ones
/// break it, and must be caught as a protocol error.
@Suite struct PostgresFuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus/postgres")

    static func files() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test func everyCorpusInputEndsAsItsNameSays() throws {
        let files = try Self.files()
        #expect(files.count >= 10, "only \(files.count) files in \(Self.corpus.path)")
        for file in files {
            let name = file.lastPathComponent
            let bytes = [UInt8](try Data(contentsOf: file))
            let outcome = bytes.withUnsafeBytes { WireFuzzing.run($0) }
            if name.hasPrefix("ok-") {
                #expect(!outcome.protocolError && outcome.answered >= 1, "\(name): \(outcome)")
            } else if name.hasPrefix("bad-") {
                #expect(outcome.protocolError, "\(name): \(outcome)")
            }
        }
    }
}
