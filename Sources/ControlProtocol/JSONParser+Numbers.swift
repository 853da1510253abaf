// JSONParser's numbers: RFC 8259 syntax, Int64 when the value fits, else a correctly rounded Double.

extension JSONParser {
    // MARK: Numbers

    /// RFC 8259: `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`
    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        var i = position
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < bytes.count, isDigit(bytes[i]) else {
            throw JSONParseError(message: "invalid number: '-' must be followed by a digit", offset: start)
        }
        let integerStart = i
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if i < bytes.count, isDigit(bytes[i]) {
                throw JSONParseError(message: "invalid number: leading zero", offset: start)
            }
        } else {
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        let integerEnd = i
        var fractionStart = i
        var fractionEnd = i
        var isInteger = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            fractionStart = i
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            fractionEnd = i
            if fractionEnd == fractionStart {
                throw JSONParseError(message: "invalid number: '.' must be followed by a digit", offset: start)
            }
        }
        // The explicit exponent, saturated: beyond ±1e9 the value is 0 or out of range anyway.
        var exponent = 0
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            var exponentNegative = false
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
                exponentNegative = bytes[i] == UInt8(ascii: "-")
                i += 1
            }
            let digitsStart = i
            while i < bytes.count, isDigit(bytes[i]) {
                if exponent < 1_000_000_000 { exponent = exponent * 10 + Int(bytes[i] &- UInt8(ascii: "0")) }
                i += 1
            }
            if i == digitsStart {
                throw JSONParseError(message: "invalid number: exponent must have digits", offset: start)
            }
            if exponentNegative { exponent = -exponent }
        }
        position = i

        if isInteger, let value = int64(from: integerStart, to: integerEnd, negative: negative) {
            return .int(value)
        }
        let value = makeDouble(
            negative: negative, integer: integerStart..<integerEnd, fraction: fractionStart..<fractionEnd,
            exponent: exponent)
        guard value.isFinite else {
            throw JSONParseError(message: "number out of range (beyond ±1.8e308)", offset: start)
        }
        return .double(value)
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10
    }

    /// The integer's value, or nil when it does not fit `Int64`. Accumulates negatively
    /// so that `Int64.min` fits.
    private func int64(from start: Int, to end: Int, negative: Bool) -> Int64? {
        if end - start > 19 { return nil }
        var value: Int64 = 0
        for k in start..<end {
            let digit = Int64(bytes[k] &- UInt8(ascii: "0"))
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.subtractingReportingOverflow(digit)
            if o1 || o2 { return nil }
            value = next
        }
        if negative { return value }
        let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
        return overflow ? nil : positive
    }

    /// Exact powers of ten for Clinger's fast path.
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// A correctly rounded double. Small mantissas with small exponents are exact in
    /// `Double` arithmetic (Clinger's fast path); the rest go through the standard
    /// library's correctly rounded conversion, on a normalised text of at most ~800
    /// significant digits (beyond those only "something non-zero follows" affects the
    /// rounding), so a megabyte of digits costs linear time.
    private func makeDouble(negative: Bool, integer: Range<Int>, fraction: Range<Int>, exponent: Int) -> Double {
        // The value is (significant digits as an integer) × 10^scale.
        var significantCount = 0
        var scale = exponent
        var mantissa: UInt64 = 0
        var droppedNonZero = false
        var digits: [UInt8] = []
        let maxDigits = 800
        func visit(_ byte: UInt8, isFraction: Bool) {
            if significantCount == 0 && byte == UInt8(ascii: "0") {
                if isFraction { scale -= 1 }
                return
            }
            if significantCount < maxDigits {
                significantCount += 1
                if significantCount <= 19 {
                    mantissa = mantissa &* 10 &+ UInt64(byte &- UInt8(ascii: "0"))
                }
                if isFraction { scale -= 1 }
            } else {
                if byte != UInt8(ascii: "0") { droppedNonZero = true }
                if !isFraction { scale += 1 }
            }
        }
        for k in integer { visit(bytes[k], isFraction: false) }
        for k in fraction { visit(bytes[k], isFraction: true) }
        if significantCount == 0 {
            return negative ? -0.0 : 0.0
        }
        if significantCount <= 19, mantissa <= (1 << 53), scale >= -22, scale <= 22 {
            let power = Self.exactPowersOfTen[scale < 0 ? -scale : scale]
            let value = scale < 0 ? Double(mantissa) / power : Double(mantissa) * power
            return negative ? -value : value
        }
        // Slow path: collect the kept significant digits (the first `significantCount`
        // non-leading-zero digits of integer then fraction).
        digits.reserveCapacity(significantCount + 1)
        var started = false
        collect: for range in [integer, fraction] {
            for k in range {
                let byte = bytes[k]
                if !started && byte == UInt8(ascii: "0") { continue }
                started = true
                if digits.count == significantCount { break collect }
                digits.append(byte)
            }
        }
        if droppedNonZero {
            digits.append(UInt8(ascii: "1"))
            scale -= 1
        }
        // Past these bounds the result is 0 or infinite whatever the digits; clamping
        // keeps the text short.
        let clampedScale = min(max(scale, -100_000), 100_000)
        var text = negative ? "-" : ""
        text.reserveCapacity(digits.count + 10)
        text += String(decoding: digits, as: UTF8.self)
        text += "e"
        text += String(clampedScale)
        return Double(text) ?? .nan
    }
}
