/// Reads the keys of one table, checking each key's type and range, and records problems
/// against the table's context (`pool "main"`, `[daemon]`) at the key's line.
///
/// Every reader returns nil both when the key is absent and when it is invalid (the
/// problem is then already recorded), so callers write `reader.integer("max", minimum: 1) ?? 4`.
struct TableReader {
    let validation: Validation
    let entries: [String: TOMLNode]
    /// Keys in toml++'s order (sorted), for deterministic checks.
    let keys: [String]
    let table: String
    let index: Int
    var context: String
    private let errorsAtStart: Int

    init(_ validation: Validation, _ entries: [(key: String, value: TOMLNode)], table: String, index: Int = 0, context: String) {
        self.validation = validation
        self.entries = Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        self.keys = entries.map(\.key)
        self.table = table
        self.index = index
        self.context = context
        self.errorsAtStart = validation.errors.count
    }

    /// Whether any problem has been recorded since this reader was made.
    var hasErrors: Bool { validation.errors.count > errorsAtStart }

    func value(_ key: String) -> TOMLNode? { entries[key] }

    func has(_ key: String) -> Bool { entries[key] != nil }

    /// The key's line, or the table header's when the key is absent or was not found.
    func line(_ key: String?) -> Int? {
        validation.map.line(of: key.flatMap { entries[$0] != nil ? $0 : nil }, in: table, index: index)
    }

    var headerLine: Int? { validation.map.headerLine(table, index: index) }

    /// Reads the table's `name` (pools and jobs): when valid, later problems are reported
    /// against `<table> "name"`, and the name comes back with its line; nil when absent or
    /// invalid (then already reported).
    mutating func name() -> (name: String, line: Int?)? {
        guard let node = value("name") else { return nil }
        guard case .string(let s) = node, isValidName(s) else {
            fail("name", "name must be \(nameRule) (got \(node.display))")
            return nil
        }
        context = "\(table) \(tomlString(s))"
        return (s, line("name"))
    }

    func fail(_ key: String?, _ message: String) {
        validation.error(line: line(key), context: context, message)
    }

    /// A problem between keys is reported at the later of those present in the file.
    func fail(between keys: [String], _ message: String) {
        let lines = keys.filter(has).compactMap(line)
        validation.error(line: lines.max() ?? headerLine, context: context, message)
    }

    /// Reports keys that are neither `known` nor `foreign` (keys of another pool kind, with
    /// the sentence that says so), suggesting a known key when one is close.
    /// Returns how many keys were refused.
    @discardableResult
    func rejectUnknownKeys(known: [String], foreign: [String: String] = [:]) -> Int {
        var refused = 0
        for key in keys where !known.contains(key) {
            refused += 1
            if let sentence = foreign[key] {
                fail(key, sentence)
                continue
            }
            let suggestion = suggest(key, among: known).map { " (did you mean \(tomlString($0))?)" } ?? ""
            fail(key, "unknown key \(tomlString(shorten(key)))\(suggestion)")
        }
        return refused
    }

    // MARK: - Typed values

    /// A string; `expected` completes "KEY …" (e.g. `must be a non-empty string (a file path)`).
    /// A `sensitive` key never shows what was written, only its type.
    func string(_ key: String, expected: String, allowEmpty: Bool = false, sensitive: Bool = false) -> String? {
        guard let node = entries[key] else { return nil }
        if case .string(let s) = node, allowEmpty || !s.isEmpty { return s }
        fail(key, "\(key) \(expected) (got \(sensitive ? node.kindDescription : node.display))")
        return nil
    }

    func integer(_ key: String, minimum: Int) -> Int? {
        guard let node = entries[key] else { return nil }
        if case .integer(let n) = node, n >= minimum { return n }
        let what = minimum == 1 ? "a positive integer" : minimum == 0 ? "a non-negative integer" : "an integer of at least \(minimum)"
        fail(key, "\(key) must be \(what) (got \(node.display))")
        return nil
    }

    func bool(_ key: String) -> Bool? {
        guard let node = entries[key] else { return nil }
        if case .boolean(let b) = node { return b }
        fail(key, "\(key) must be true or false (got \(node.display))")
        return nil
    }

    /// A duration string; zero only when `allowZero`, never negative.
    func duration(_ key: String, example: String, allowZero: Bool) -> Duration? {
        switch durationValue(key, example: example, allowZero: allowZero, allowNever: false) {
        case .some(.some(let d)): d
        default: nil
        }
    }

    /// A positive duration string or `"never"` (nil inside). Outer nil: absent or invalid.
    func durationOrNever(_ key: String, example: String) -> Duration?? {
        durationValue(key, example: example, allowZero: false, allowNever: true)
    }

    private func durationValue(_ key: String, example: String, allowZero: Bool, allowNever: Bool) -> Duration?? {
        guard let node = entries[key] else { return nil }
        if allowNever, case .string("never") = node { return .some(nil) }
        guard case .string(let s) = node, let d = parseDuration(s) else {
            let examples = example == "250ms" ? "\"5s\" or \"250ms\"" : "\"\(example)\" or \"250ms\""
            let never = allowNever ? ", or \"never\"" : ""
            fail(key, "\(key) must be a duration string like \(examples)\(never) (got \(node.display))")
            return nil
        }
        if d == .zero && !allowZero {
            fail(key, "\(key) must be longer than zero (got \(node.display))")
            return nil
        }
        return .some(d)
    }
}

/// The candidate closest to `word`, if close enough to be a likely typo: an edit distance
/// (insertions, deletions, substitutions, swaps of neighbours) of at most 2, and at most 1
/// for words of up to five characters, so `sql` does not suggest `url`.
func suggest(_ word: String, among candidates: [String]) -> String? {
    var best: (String, Int)?
    for candidate in candidates {
        let limit = min(2, max(1, candidate.count / 3))
        let d = editDistance(word, candidate)
        if d <= limit, d < (best?.1 ?? Int.max) { best = (candidate, d) }
    }
    return best?.0
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars)
    let b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    // Long inputs cannot be close to a short key; do not spend quadratic time on them.
    if abs(a.count - b.count) > 2 { return abs(a.count - b.count) }
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}

/// Long keys or names shortened for a message.
func shorten(_ s: String) -> String {
    s.count > 64 ? String(s.prefix(61)) + "…" : s
}
