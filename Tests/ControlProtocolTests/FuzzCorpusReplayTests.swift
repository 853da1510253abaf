import ControlProtocol
import Foundation
import Testing

/// Replays the libFuzzer seed corpus of `Fuzz/FuzzRequest` (Tests/Fuzz/corpus/request/, plus
/// any `crash-*` input saved there) through the decoder on every `make test`, so an input
/// that once crashed it stays covered without the fuzz build. File names say what to expect:
/// `ok-*` must decode, `bad-*` must be refused; every refusal must say why.
@Suite struct FuzzCorpusReplayTests {
    /// Tests/Fuzz/corpus/request/, found from this file (Tests/ControlProtocolTests/…).
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus/request")

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

    @Test func everyCorpusInputDecodesOrIsRefusedWithAMessage() throws {
        for file in try Self.files() {
            let name = file.lastPathComponent
            let bytes = [UInt8](try Data(contentsOf: file))
            let result = bytes.withUnsafeBytes { RequestDecoder.decode($0) }
            switch result {
            case .success(let request):
                #expect(!name.hasPrefix("bad-"), "\(name) decoded to \(request)")
            case .failure(let error):
                #expect(!name.hasPrefix("ok-"), "\(name) was refused: \(error)")
                #expect(!error.message.isEmpty, "\(name): refused with an empty message (\(error.code))")
            }
        }
    }
}
