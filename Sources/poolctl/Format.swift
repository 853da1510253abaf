import ControlProtocol

/// Human output: aligned tables, humanised durations.
enum Format {
    static func text(_ value: JSONValue) -> String {
        switch value {
        case .null: "-"
        case .bool(let b): b ? "true" : "false"
        case .int(let i): String(i)
        case .double(let d): String(d)
        case .string(let s): s
        default: JSON.encode(value)
        }
    }

    /// `850µs`, `12.3ms`, `1.20s`, `3m05s`, `2h10m`.
    static func duration(micros: Int64) -> String {
        if micros < 1000 { return "\(micros)µs" }
        if micros < 1_000_000 { return one(Double(micros) / 1000) + "ms" }
        let seconds = micros / 1_000_000
        if seconds < 60 { return two(Double(micros) / 1e6) + "s" }
        if seconds < 3600 { return "\(seconds / 60)m\(pad(seconds % 60))s" }
        return "\(seconds / 3600)h\(pad((seconds % 3600) / 60))m"
    }

    static func table(_ rows: [[String]], header: [String]?) -> String {
        let all = (header.map { [$0] } ?? []) + rows
        let columns = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in all {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var out = ""
        for row in all {
            var line = ""
            for (i, cell) in row.enumerated() {
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
            }
            out += line + "\n"
        }
        return out
    }

    private static func one(_ x: Double) -> String {
        let tenths = Int64((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    private static func two(_ x: Double) -> String {
        let hundredths = Int64((x * 100).rounded())
        return "\(hundredths / 100).\(pad(hundredths % 100))"
    }

    private static func pad(_ n: Int64) -> String {
        n < 10 ? "0\(n)" : "\(n)"
    }
}

extension String {
    func replacingOccurrences(_ target: Character, _ replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
