// MARK: - Suggestions

/// "Did you mean": the candidate closest to a mistyped name.
public enum Suggestion {
    /// The first candidate within edit distance 2 of `name` (ASCII case ignored, an
    /// adjacent swap counting as one edit), and closer than its own length so that
    /// short names are not matched by everything; nil when none is close.
    public static func closest(to name: String, among candidates: [String]) -> String? {
        var best: (candidate: String, distance: Int)? = nil
        let typed = Array(name.utf8.prefix(64))
        if name.utf8.count > 64 { return nil }
        for candidate in candidates {
            let target = Array(candidate.utf8)
            guard abs(typed.count - target.count) <= 2 else { continue }
            let distance = editDistance(typed, target)
            if distance <= 2, distance < target.count, distance < (best?.distance ?? .max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        func fold(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
        let width = b.count + 1
        var previous2 = [Int](repeating: 0, count: width)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: width)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1
                var value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, fold(a[i - 1]) == fold(b[j - 2]), fold(a[i - 2]) == fold(b[j - 1]) {
                    value = min(value, previous2[j - 2] + 1)
                }
                current[j] = value
            }
            swap(&previous2, &previous)
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
