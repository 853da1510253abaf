import Foundation
import PoolConfig
import Testing

/// Replays the libFuzzer seed corpus of `Fuzz/FuzzConfig` (Tests/Fuzz/corpus/config/, plus
/// any `crash-*` input saved there) through the loader on every `make test`, decoding bytes
/// as the fuzzer does. File names say what to expect: `ok-*` must load, `bad-*` must be
/// refused; every refusal must be a `file…: message` naming the path it was given.
@Suite struct FuzzCorpusReplayTests {
    /// Tests/Fuzz/corpus/config/, found from this file (Tests/PoolConfigTests/…).
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus/config")

    static func files() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test func corpusIsNotEmpty() throws {
        let files = try Self.files()
        #expect(files.count >= 20, "only \(files.count) files in \(Self.corpus.path)")
        #expect(files.contains { $0.lastPathComponent.hasPrefix("ok-") })
        #expect(files.contains { $0.lastPathComponent.hasPrefix("bad-") })
    }

    @Test func everyCorpusInputLoadsOrIsRefusedWithAMessage() throws {
        for file in try Self.files() {
            let name = file.lastPathComponent
            let bytes = try Data(contentsOf: file)
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let config = try ConfigLoader.parse(text, path: "fuzz.toml")
                #expect(!name.hasPrefix("bad-"), "\(name) loaded (\(config.pools.count) pools)")
            } catch {
                #expect(!name.hasPrefix("ok-"), "\(name) was refused: \(error)")
                #expect(!error.message.isEmpty, "\(name): refused with an empty message")
                #expect(error.description.hasPrefix("fuzz.toml"), "\(name): \(error.description)")
            }
        }
    }
}
