/// Where table headers and keys sit in the raw text of a config file.
///
/// TOMLKit does not expose toml++'s source positions, so this scans the text itself,
/// understanding just enough TOML to stay in step: comments, table headers (`[daemon]`,
/// `[[pool]]`, counted per name so the n-th `[[pool]]` is index n), `key = value` lines,
/// and values that span lines (multi-line strings, arrays, inline tables), whose insides
/// are skipped. The same pass looks for the `Hazard`s below, so it runs before toml++;
/// its line lookups are used only once toml++ has accepted the text. On text toml++
/// refuses, the scan may lose step after the first error, which is harmless: toml++ stops
/// there too.
///
/// Limits: a dotted key (`a.b = 1`) is recorded under its first part (`a`) in the current
/// table; keys inside inline tables and inline arrays of tables (`pool = [{ name = "x" }]`)
/// are not recorded, so lookups for them fall back to the line of the enclosing key or
/// header. Quoted keys are matched on their raw text between the quotes (escapes are not
/// decoded). A lookup that finds nothing returns nil, and errors then carry no line.
struct SourceMap {
    /// A table by its dotted header path (`""` for the root, `"pool"`) and, for arrays of
    /// tables, which element (0-based; 0 for plain tables).
    struct TableID: Hashable {
        var path: String
        var index: Int
    }

    /// Input that makes toml++ 3.4.0 (inside TOMLKit 0.6.0) fail an internal assertion —
    /// an abort in debug builds, undefined behaviour in release ones — instead of raising a
    /// parse error. The loader never hands such text to toml++ as is; see `defused`.
    /// Found by fuzzing toml++ directly (libFuzzer, ~2M inputs from the example configs):
    /// - a table header whose name starts with anything but a bare-key character, a quote
    ///   or `]` (`[#]`, `[=]`, `[.a]`, `[` at the end of a line);
    /// - a date followed by `T`/`t` and no time (`1980-05-27T:`), outside strings;
    /// - a value followed by a space, one digit and the end of the value (`1980-05-27 7`):
    ///   toml++ takes it for a date-time with a space and reads past the end. The check
    ///   covers any value followed by ` D` (never valid TOML), not only dates;
    /// - where an array expects a value: `}` (`[1, }]`) or a Unicode line break (U+0085,
    ///   U+2028, U+2029).
    struct Hazard {
        var line: Int
        /// The bytes `defused` replaces.
        var offset: Int
        var length: Int
        var message: String
    }

    private var headers: [TableID: Int] = [:]
    private var keys: [TableID: [String: Int]] = [:]
    private(set) var hazards: [Hazard] = []

    /// `text` with each hazard's trigger replaced by `=` (same length, same lines), which
    /// toml++ reports as an ordinary syntax error on the hazard's line.
    static func defused(_ text: String, hazards: [Hazard]) -> String {
        guard !hazards.isEmpty else { return text }
        var bytes = Array(text.utf8)
        for hazard in hazards {
            for i in hazard.offset..<min(hazard.offset + hazard.length, bytes.count) {
                bytes[i] = UInt8(ascii: "=")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The line of `key` in the table, else the line of the table's header (or of the key
    /// that defines the table inline).
    func line(of key: String?, in table: String, index: Int = 0) -> Int? {
        let id = TableID(path: table, index: index)
        if let key, let line = keys[id]?[key] { return line }
        return headerLine(table, index: index)
    }

    /// The line of a table's header; for a table written inline, the line of its key.
    func headerLine(_ table: String, index: Int = 0) -> Int? {
        if let line = headers[TableID(path: table, index: index)] { return line }
        guard !table.isEmpty else { return nil }
        let (parent, last) = splitLast(table)
        return line(of: last, in: parent, index: 0)
    }

    private mutating func record(_ key: String, in table: TableID, line: Int) {
        if keys[table]?[key] == nil { keys[table, default: [:]][key] = line }
    }

    private func splitLast(_ path: String) -> (String, String) {
        guard let dot = path.lastIndex(of: ".") else { return ("", path) }
        return (String(path[..<dot]), String(path[path.index(after: dot)...]))
    }

    init(scanning text: String) {
        var scanner = Scanner(bytes: Array(text.utf8))
        if scanner.peek() == 0xEF, scanner.peek(1) == 0xBB, scanner.peek(2) == 0xBF {
            scanner.advance()
            scanner.advance()
            scanner.advance()
        }
        var current = TableID(path: "", index: 0)
        var arrayCounts: [String: Int] = [:]
        while let c = scanner.peek() {
            switch c {
            case .space, .tab, .cr:
                scanner.advance()
            case .newline:
                scanner.advance()
            case .hash:
                scanner.skipToEndOfLine()
            case .openBracket:
                let line = scanner.line
                if !scanner.headerNameStartsWell() {
                    hazards.append(
                        Hazard(
                            line: line, offset: scanner.position, length: 1,
                            message: "Error while parsing table header: expected a table name after '['"
                        ))
                }
                scanner.advance()
                let isArray = scanner.peek() == .openBracket
                if isArray { scanner.advance() }
                let parts = scanner.readKeyPath(until: .closeBracket)
                let path = parts.joined(separator: ".")
                var index = 0
                if isArray {
                    index = (arrayCounts[path] ?? -1) + 1
                    arrayCounts[path] = index
                }
                current = TableID(path: path, index: index)
                if headers[current] == nil { headers[current] = line }
                if let last = parts.last {
                    let parent = parts.dropLast().joined(separator: ".")
                    record(last, in: TableID(path: parent, index: arrayCounts[parent] ?? 0), line: line)
                }
                scanner.skipToEndOfLine()
            default:
                let line = scanner.line
                let parts = scanner.readKeyPath(until: .equals)
                if scanner.peek() == .equals {
                    scanner.advance()
                    if let first = parts.first { record(first, in: current, line: line) }
                    scanner.skipValue()
                }
                scanner.skipToEndOfLine()
                hazards += scanner.takeValueHazards()
            }
        }
    }
}
