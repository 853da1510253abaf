import CSystemd
public import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler that writes native journal entries through `sd_journal_sendv`, so
/// that `journalctl -u poold POOLD_POOL=main` and `-o json` see structured fields.
///
/// Each entry: `MESSAGE`, `PRIORITY` (from the level), `SYSLOG_IDENTIFIER`, a stable
/// `MESSAGE_ID` for lifecycle events (metadata `event`), the code location, and every other
/// metadata key as `POOLD_<KEY>` (upper-cased, anything not A-Z0-9 as `_`: `job.id` →
/// `POOLD_JOB_ID`). Callers never put secrets in metadata; this handler adds none.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public let identifier: String

    public init(label: String, identifier: String = "poold") {
        self.identifier = identifier
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Stable 128-bit ids for lifecycle events, so operators can match them across versions
    /// (`journalctl MESSAGE_ID=…`).
    public static let messageIDs: [String: String] = [
        "started": "84085cb1f1b340799be65e0e099f0369",
        "ready": "44a6edeb636e4471bc56918dad862c90",
        "reloading": "c002de94beac44bc8f101f0e5d161f7b",
        "reloaded": "8da966e700f7460891e1bccf3d9ca843",
        "reload_failed": "54914102a4d64095a57b7d267c7701cc",
        "stopping": "66f35502d1c54e4e937f3e4027e087bc",
        "stopped": "8557e4ebbd174c7390a5f909af451fd2",
        "pool_degraded": "04c31d33afb44ff8882c6fc1e710ae6d",
        "pool_recovered": "75a2ddb560a84a39b3d214845ce52f12",
        "queue_store_down": "490bbe454b4c4f518620818a5e33c1fa",
        "queue_store_recovered": "f0b46b67f33f42a9a9ec0b73febba273",
        "queue_lease_lost": "0687025c967742679650bd1060db5584",
        "queue_rescued": "17fb3ef817094200b5592deed74aba5b",
        "durable_job_discarded": "54fea21fc7454e9b9ec060860ef8fad0",
    ]

    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `job.id` → `POOLD_JOB_ID`.
    public static func fieldName(_ key: String) -> String {
        var name = "POOLD_"
        for scalar in key.unicodeScalars {
            switch scalar {
            case "a"..."z": name.unicodeScalars.append(Unicode.Scalar(scalar.value - 32) ?? "_")
            case "A"..."Z", "0"..."9": name.unicodeScalars.append(scalar)
            default: name.append("_")
            }
        }
        return name
    }

    /// The entry's fields, in order.
    public func fields(for event: LogEvent) -> [String] {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
        ]
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        if case .string(let name)? = all["event"], let id = Self.messageIDs[name] {
            fields.append("MESSAGE_ID=\(id)")
        }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            fields.append("\(Self.fieldName(key))=\(value)")
        }
        return fields
    }

    public func log(event: LogEvent) {
        var buffer: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields(for: event) {
            let start = buffer.count
            buffer.append(contentsOf: field.utf8)
            ranges.append(start..<buffer.count)
        }
        buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var vectors = ranges.map { iovec(iov_base: base + $0.lowerBound, iov_len: $0.count) }
            _ = sd_journal_sendv(&vectors, Int32(vectors.count))
        }
    }
}
