import PoolCore

/// Parses a configured duration: one or more `NUMBER UNIT` parts with no spaces, units in
/// decreasing order and each at most once (`250ms`, `30s`, `1m30s`, `1h30m`, `1.5s`).
///
/// Units: `h`, `m`, `s`, `ms`, `us` (also `µs`/`μs`) and `ns`. A number may have a decimal
/// fraction (`1.5s`); precision below a nanosecond is dropped. Bare numbers (`30`),
/// signs (`-5s`, `+5s`), spaces, empty text, unknown units (`5d`, `5min`) and values
/// beyond Int64 nanoseconds (about 292 years) give nil. `0s` is a valid parse: whether
/// zero is allowed is up to the key that uses it.
public func parseDuration(_ text: String) -> Duration? {
    let scalars = Array(text.unicodeScalars)
    guard !scalars.isEmpty else { return nil }
    var i = 0
    var total: Int128 = 0
    var lastUnitRank = Int.max
    while i < scalars.count {
        // The number: digits, optionally `.` and more digits.
        var whole: Int128 = 0
        var wholeDigits = 0
        while i < scalars.count, let d = digitValue(scalars[i]) {
            guard wholeDigits < 20 else { return nil }
            whole = whole * 10 + Int128(d)
            wholeDigits += 1
            i += 1
        }
        guard wholeDigits > 0 else { return nil }
        var fraction: Int128 = 0
        var fractionScale: Int128 = 1
        if i < scalars.count, scalars[i] == "." {
            i += 1
            var fractionDigits = 0
            while i < scalars.count, let d = digitValue(scalars[i]) {
                // Digits past the eighteenth cannot matter at nanosecond precision.
                if fractionDigits < 18 {
                    fraction = fraction * 10 + Int128(d)
                    fractionScale *= 10
                }
                fractionDigits += 1
                i += 1
            }
            guard fractionDigits > 0 else { return nil }
        }
        // The unit: letters up to the next digit.
        var unit = ""
        while i < scalars.count, digitValue(scalars[i]) == nil {
            unit.unicodeScalars.append(scalars[i])
            i += 1
        }
        guard let (nanos, rank) = durationUnits[unit], rank < lastUnitRank else { return nil }
        lastUnitRank = rank
        total += whole * nanos + fraction * nanos / fractionScale
        guard total <= Int128(Int64.max) else { return nil }
    }
    return .nanoseconds(Int64(total))
}

/// Nanoseconds per unit, and the unit's rank (larger units rank higher; parts must descend).
private let durationUnits: [String: (Int128, Int)] = [
    "h": (3_600_000_000_000, 6),
    "m": (60_000_000_000, 5),
    "s": (1_000_000_000, 4),
    "ms": (1_000_000, 3),
    "us": (1_000, 2),
    "\u{00B5}s": (1_000, 2),  // MICRO SIGN
    "\u{03BC}s": (1_000, 2),  // GREEK SMALL LETTER MU
    "ns": (1, 1),
]

private func digitValue(_ scalar: Unicode.Scalar) -> Int? {
    guard scalar.value >= 0x30, scalar.value <= 0x39 else { return nil }
    return Int(scalar.value - 0x30)
}

extension Duration {
    /// The duration as a config file would write it, such that `parseDuration` gives it back
    /// exactly: `limitDescription` (`250ms`, `1m30s`) when that is exact, otherwise a
    /// compound down to nanoseconds (`1s500us7ns`).
    var configDescription: String {
        let description = limitDescription
        if parseDuration(description) == self { return description }
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return description }
        var text = ""
        var s = seconds
        if s >= 3600 {
            text += "\(s / 3600)h"
            s %= 3600
        }
        if s >= 60 {
            text += "\(s / 60)m"
            s %= 60
        }
        if s > 0 { text += "\(s)s" }
        var ns = attoseconds / 1_000_000_000
        if ns >= 1_000_000 {
            text += "\(ns / 1_000_000)ms"
            ns %= 1_000_000
        }
        if ns >= 1000 {
            text += "\(ns / 1000)us"
            ns %= 1000
        }
        if ns > 0 || text.isEmpty { text += "\(ns)ns" }
        return text
    }
}
