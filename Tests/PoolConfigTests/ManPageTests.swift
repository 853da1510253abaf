import Foundation
import Testing

@testable import PoolConfig

/// man/poold.toml.5 documents every key the config accepts: a key added to the validation
/// without a line in the man page fails here.
struct ManPageTests {
    static let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("man/poold.toml.5")

    @Test func everyConfigKeyHasAnEntry() throws {
        let text = try String(contentsOf: Self.page, encoding: .utf8)
        // Each key is the tag of a .TP paragraph: ".TP" then ".B key".
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var documented = Set<String>()
        for (index, line) in lines.enumerated() where line == ".TP" && index + 1 < lines.count {
            let tag = lines[index + 1]
            if tag.hasPrefix(".B ") { documented.insert(String(tag.dropFirst(3))) }
        }
        let keys =
            Validation.daemonKeys + Validation.accessKeys + Validation.metricsKeys + Validation.commonPoolKeys
            + Validation.poolKeysByKind.values.flatMap { $0 } + Validation.jobKeys + Validation.queueKeys
        for key in Set(keys) {
            #expect(documented.contains(key), "man/poold.toml.5 does not document \(key)")
        }
        #expect(!documented.isEmpty, "no .TP/.B tags found in the page")
    }
}
