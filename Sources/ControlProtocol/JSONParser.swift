/// A recursive-descent parser over borrowed bytes. Recursion is bounded by
/// `JSON.maxDepth`; every loop advances `position`, so time is linear in the input
/// (duplicate-key checks switch to hashing for large objects).
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        if position >= bytes.count {
            throw JSONParseError(message: bytes.isEmpty ? "empty input" : "no value, only whitespace", offset: position)
        }
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if position < bytes.count {
            throw error("unexpected \(describeByte(at: position)) after the value")
        }
        return value
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard position < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw error("unexpected \(describeByte(at: position)), expected a value")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let start = position
        let count = literal.utf8CodeUnitCount
        let matches = literal.withUTF8Buffer { expected -> Bool in
            guard bytes.count - start >= count else { return false }
            for i in 0..<count where bytes[start + i] != expected[i] { return false }
            return true
        }
        guard matches else {
            throw JSONParseError(message: "invalid literal, expected '\(literal)'", offset: start)
        }
        position += count
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > JSON.maxDepth {
            throw error("nesting deeper than \(JSON.maxDepth) levels")
        }
        position += 1  // {
        skipWhitespace()
        var entries: [JSONObject.Entry] = []
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(JSONObject(entries))
        }
        entries.reserveCapacity(4)
        // Beyond a handful of keys a linear duplicate scan would make a hostile object
        // quadratic, so the keys move into a set.
        var seen: Set<String>? = nil
        while true {
            guard position < bytes.count else { throw error("unexpected end of input, expected a string key") }
            guard bytes[position] == UInt8(ascii: "\"") else {
                throw error("unexpected \(describeByte(at: position)), expected a string key")
            }
            let keyOffset = position
            let key = try parseString()
            if var keys = seen {
                seen = nil  // keeps `keys` uniquely referenced while inserting
                let inserted = keys.insert(key).inserted
                seen = keys
                if !inserted { throw duplicateKey(key, at: keyOffset) }
            } else {
                for entry in entries where entry.key == key { throw duplicateKey(key, at: keyOffset) }
                if entries.count >= 16 {
                    var keys = Set<String>(minimumCapacity: 64)
                    for entry in entries { keys.insert(entry.key) }
                    keys.insert(key)
                    seen = keys
                }
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw error(position < bytes.count ? "expected ':' after key" : "unexpected end of input, expected ':' after key")
            }
            position += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            entries.append(JSONObject.Entry(key: key, value: value))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input, expected ',' or '}'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                position += 1
                return .object(JSONObject(entries))
            default:
                throw error("unexpected \(describeByte(at: position)), expected ',' or '}' after an object member")
            }
        }
    }

    private func duplicateKey(_ key: String, at offset: Int) -> JSONParseError {
        JSONParseError(message: "duplicate key \(JSONValue.string(key).shortDescription)", offset: offset)
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > JSON.maxDepth {
            throw error("nesting deeper than \(JSON.maxDepth) levels")
        }
        position += 1  // [
        skipWhitespace()
        var elements: [JSONValue] = []
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            let value = try parseValue(depth: depth)
            elements.append(value)
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input, expected ',' or ']'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                position += 1
                return .array(elements)
            default:
                throw error("unexpected \(describeByte(at: position)), expected ',' or ']' after an array element")
            }
        }
    }

    // MARK: Strings

    /// Parses the string starting at the opening quote. Unescaped strings (the common
    /// case) are validated in one pass and decoded from the input slice at once.
    private mutating func parseString() throws(JSONParseError) -> String {
        let start = position + 1
        var i = start
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                position = i + 1
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw controlCharacter(byte, at: i) }
            if byte < 0x80 {
                i += 1
            } else {
                i = try validateUTF8Sequence(at: i)
            }
        }
        guard i < bytes.count else {
            throw JSONParseError(message: "unterminated string", offset: position)
        }
        return try parseEscapedString(from: start, firstEscape: i)
    }

    /// The slow path, entered at the first backslash: runs of plain bytes are copied
    /// whole, escapes are decoded into UTF-8.
    private mutating func parseEscapedString(from start: Int, firstEscape: Int) throws(JSONParseError) -> String {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(firstEscape - start + 16)
        decoded.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<firstEscape]))
        var i = firstEscape
        var runStart = i
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                decoded.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
                position = i + 1
                return String(decoding: decoded, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") {
                decoded.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
                i = try decodeEscape(at: i, into: &decoded)
                runStart = i
            } else if byte < 0x20 {
                throw controlCharacter(byte, at: i)
            } else if byte < 0x80 {
                i += 1
            } else {
                i = try validateUTF8Sequence(at: i)
            }
        }
        throw JSONParseError(message: "unterminated string", offset: start - 1)
    }

    /// Decodes the escape at `i` (a backslash) into `out`; returns the index after it.
    private func decodeEscape(at i: Int, into out: inout [UInt8]) throws(JSONParseError) -> Int {
        guard i + 1 < bytes.count else {
            throw JSONParseError(message: "unterminated string", offset: i)
        }
        let simple: UInt8
        switch bytes[i + 1] {
        case UInt8(ascii: "\""): simple = UInt8(ascii: "\"")
        case UInt8(ascii: "\\"): simple = UInt8(ascii: "\\")
        case UInt8(ascii: "/"): simple = UInt8(ascii: "/")
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"):
            let unit = try hex4(at: i + 2, escapeAt: i)
            var scalarValue = UInt32(unit)
            var next = i + 6
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard next + 1 < bytes.count, bytes[next] == UInt8(ascii: "\\"), bytes[next + 1] == UInt8(ascii: "u"),
                    let low = try? hex4(at: next + 2, escapeAt: next), low >= 0xDC00 && low <= 0xDFFF
                else {
                    throw JSONParseError(
                        message: "lone surrogate \\u\(hexString(unit)) (a high surrogate must be followed by a low one: not valid Unicode)",
                        offset: i)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                next += 6
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw JSONParseError(
                    message: "lone surrogate \\u\(hexString(unit)) (a low surrogate without a high one: not valid Unicode)",
                    offset: i)
            }
            appendUTF8(scalarValue, to: &out)
            return next
        default:
            throw JSONParseError(message: "invalid escape \(describeByte(at: i + 1)) after '\\'", offset: i)
        }
        out.append(simple)
        return i + 2
    }

    private func hex4(at i: Int, escapeAt escape: Int) throws(JSONParseError) -> UInt16 {
        guard i + 4 <= bytes.count else {
            throw JSONParseError(message: "incomplete \\u escape (needs 4 hex digits)", offset: escape)
        }
        var value: UInt16 = 0
        for k in i..<(i + 4) {
            let byte = bytes[k]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte &- UInt8(ascii: "A") &+ 10
            default:
                throw JSONParseError(message: "invalid \\u escape (needs 4 hex digits)", offset: escape)
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    private func hexString(_ unit: UInt16) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = ""
        for shift in stride(from: 12, through: 0, by: -4) {
            text.unicodeScalars.append(Unicode.Scalar(digits[Int((unit >> UInt16(shift)) & 0xF)]))
        }
        return text
    }

    private func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(truncatingIfNeeded: scalar))
        case 0x80..<0x800:
            out.append(0xC0 | UInt8(truncatingIfNeeded: scalar >> 6))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(0xE0 | UInt8(truncatingIfNeeded: scalar >> 12))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 6) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        default:
            out.append(0xF0 | UInt8(truncatingIfNeeded: scalar >> 18))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 12) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 6) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        }
    }

    /// Checks the multi-byte sequence starting at `i` and returns the index after it.
    private func validateUTF8Sequence(at i: Int) throws(JSONParseError) -> Int {
        switch UTF8Validation.sequenceLength(bytes, at: i) {
        case .valid(let length): return i + length
        case .invalid(let offset, let reason):
            throw JSONParseError(message: "invalid UTF-8 (\(reason))", offset: offset)
        }
    }

    private func controlCharacter(_ byte: UInt8, at offset: Int) -> JSONParseError {
        JSONParseError(
            message: "raw control character U+00\(hexString(UInt16(byte)).suffix(2).uppercased()) in string (escape it)",
            offset: offset)
    }

    // MARK: Numbers

    /// RFC 8259: `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`
    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
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

    // MARK: Helpers

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                position += 1
            default:
                return
            }
        }
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(message: message, offset: position)
    }

    private func describeByte(at i: Int) -> String {
        guard i < bytes.count else { return "end of input" }
        let byte = bytes[i]
        if byte >= 0x21 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte 0x\(hexString(UInt16(byte)).suffix(2).uppercased())"
    }
}
