extension Duration {
    /// Whole microseconds, saturating; what the protocol's `*_us` fields carry.
    public var microseconds: Int64 {
        let (seconds, attoseconds) = components
        let (us, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return us &+ attoseconds / 1_000_000_000_000
    }

    /// Whole milliseconds, saturating.
    public var milliseconds: Int64 { microseconds / 1000 }

    /// Seconds as a floating-point number.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// A configured limit the way an operator wrote it: `250ms`, `2s`, `1m30s`, `1h`.
    public var limitDescription: String {
        let us = microseconds
        if us < 1000 { return "\(us)µs" }
        if us % 1_000_000 != 0 {
            return us % 1000 == 0 ? "\(us / 1000)ms" : String(format2: Double(us) / 1e3) + "ms"
        }
        var s = us / 1_000_000
        var text = ""
        if s >= 3600 {
            text += "\(s / 3600)h"
            s %= 3600
        }
        if s >= 60 {
            text += "\(s / 60)m"
            s %= 60
        }
        if s > 0 || text.isEmpty { text += "\(s)s" }
        return text
    }

    /// A measured span with one decimal, as in `waited 5.0s`; under a second in ms.
    public var elapsedDescription: String {
        let us = microseconds
        if us < 1000 { return "\(us)µs" }
        if us < 1_000_000 { return String(format1: Double(us) / 1e3) + "ms" }
        if us < 60_000_000 { return String(format1: Double(us) / 1e6) + "s" }
        return limitDescription
    }
}

extension String {
    /// `x` with exactly one decimal, without Foundation's locale-dependent formatting.
    init(format1 x: Double) {
        let tenths = Int64((x * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        let magnitude = tenths.magnitude
        self = "\(sign)\(magnitude / 10).\(magnitude % 10)"
    }

    /// `x` with up to three decimals, trailing zeros dropped.
    init(format2 x: Double) {
        let thousandths = Int64((x * 1000).rounded())
        var fraction = String(thousandths.magnitude % 1000)
        while fraction.count < 3 { fraction = "0" + fraction }
        while fraction.hasSuffix("0") { fraction.removeLast() }
        let whole = "\(thousandths < 0 ? "-" : "")\(thousandths.magnitude / 1000)"
        self = fraction.isEmpty ? whole : whole + "." + fraction
    }
}
