/// RFC 3339 date-times (`2026-12-07T18:00:00Z`, `2026-12-07T19:00:00.25+01:00`): checked here so
/// that a wrong `run_at` is the client's `bad_request`, not a server error; PostgreSQL reads it.
public enum RFC3339 {
    /// `full-date "T" full-time` with a `Z` or `±hh:mm` offset; `t`, `z` and a space for `T` are
    /// accepted as RFC 3339 allows. Ranges are checked field by field (month 1–12, day up to the
    /// month's length, hour 0–23, minute 0–59, second 0–60).
    public static func isValid(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count >= 20, b.count <= 40 else { return false }
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var n = 0
            for i in from..<(from + count) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                n = n * 10 + Int(b[i] - 48)
            }
            return n
        }
        guard let year = number(0, 4), b[4] == 45, let month = number(5, 2), b[7] == 45, let day = number(8, 2),
            [84, 116, 32].contains(b[10]), let hour = number(11, 2), b[13] == 58, let minute = number(14, 2), b[16] == 58,
            let second = number(17, 2)
        else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard year >= 1, (1...12).contains(month), day >= 1, day <= days[month - 1], hour <= 23, minute <= 59, second <= 60 else {
            return false
        }
        var i = 19
        if b[i] == 46 {  // fraction
            i += 1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            guard i > start, i - start <= 9 else { return false }
        }
        guard i < b.count else { return false }
        if b[i] == 90 || b[i] == 122 { return i + 1 == b.count }
        guard b[i] == 43 || b[i] == 45, i + 6 == b.count, let offsetHour = number(i + 1, 2), b[i + 3] == 58,
            let offsetMinute = number(i + 4, 2)
        else { return false }
        return offsetHour <= 23 && offsetMinute <= 59
    }
}
