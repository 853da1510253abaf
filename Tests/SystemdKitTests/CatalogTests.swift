import Foundation
import Testing

@testable import SystemdKit

/// deploy/poold.catalog explains every MESSAGE_ID poold emits, and nothing else: a new event
/// with an id but no entry fails here.
struct CatalogTests {
    static let catalog = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/poold.catalog")

    /// Each entry: its id, and its header and body lines.
    static func entries() throws -> [String: [String]] {
        let text = try String(contentsOf: catalog, encoding: .utf8)
        var entries: [String: [String]] = [:]
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("-- ") {
                let id = String(line.dropFirst(3).split(separator: " ").first ?? "")
                #expect(entries[id] == nil, "\(id) has two entries")
                entries[id] = []
                current = id
            } else if let id = current {
                entries[id, default: []].append(String(line))
            }
        }
        return entries
    }

    @Test func everyMessageIDHasAnEntryWithASubjectAndText() throws {
        let entries = try Self.entries()
        for (event, id) in JournalLogHandler.messageIDs {
            guard let lines = entries[id] else {
                Issue.record("MESSAGE_ID \(id) (event \(event)) has no entry in deploy/poold.catalog")
                continue
            }
            #expect(lines.contains { $0.hasPrefix("Subject: ") }, "\(event): no Subject")
            #expect(lines.contains { $0.hasPrefix("Defined-By: poold") }, "\(event): no Defined-By")
            let body = lines.drop { !$0.isEmpty }.filter { !$0.isEmpty }
            #expect(body.count >= 2, "\(event): the entry says too little")
        }
    }

    @Test func everyEntryIsAMessageIDPooldEmits() throws {
        let known = Set(JournalLogHandler.messageIDs.values)
        for id in try Self.entries().keys {
            #expect(known.contains(id), "deploy/poold.catalog explains \(id), which poold never emits")
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(id) is not a 128-bit id in hex")
        }
    }
}
