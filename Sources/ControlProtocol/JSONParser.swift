/// A recursive-descent parser over borrowed bytes. Recursion is bounded by
/// `JSON.maxDepth`; every loop advances `position`, so time is linear in the input
/// (duplicate-key checks switch to hashing for large objects).
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

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
