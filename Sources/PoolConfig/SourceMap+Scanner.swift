// The scan behind SourceMap: TOML's byte classes, and a line-counting cursor that skips values and notes hazards.

extension UInt8 {
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let cr = UInt8(ascii: "\r")
    static let newline = UInt8(ascii: "\n")
    static let hash = UInt8(ascii: "#")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let equals = UInt8(ascii: "=")
    static let dot = UInt8(ascii: ".")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let backslash = UInt8(ascii: "\\")
    static let comma = UInt8(ascii: ",")

    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }

    /// toml++'s ASCII value terminators: whitespace (with vertical tab and form feed),
    /// `]`, `}`, `,` and `#`.
    var endsValue: Bool {
        self == .space || self == .tab || self == .newline || self == .cr || self == 0x0B || self == 0x0C
            || self == .closeBracket || self == .closeBrace || self == .comma || self == .hash
    }

    /// toml++'s ASCII bare-key characters: letters, digits, `_` and `-`.
    var isBareKeyByte: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z"))
            || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z")) || self == UInt8(ascii: "_")
            || self == UInt8(ascii: "-")
    }
}

/// A cursor over UTF-8 bytes that counts lines. Every method advances or stops at the end,
/// so no input can make the scan loop forever.
struct Scanner {
    let bytes: [UInt8]
    var position = 0
    var line = 1

    init(bytes: [UInt8]) { self.bytes = bytes }

    func peek(_ offset: Int = 0) -> UInt8? {
        let i = position + offset
        return i < bytes.count ? bytes[i] : nil
    }

    mutating func advance() {
        guard position < bytes.count else { return }
        if bytes[position] == .newline { line += 1 }
        position += 1
    }

    /// Moves to the newline ending this line (not past it).
    mutating func skipToEndOfLine() {
        while let c = peek(), c != .newline { advance() }
    }

    mutating func skipBlanks() {
        while let c = peek(), c == .space || c == .tab { advance() }
    }

    /// Reads `a.b."c d"` up to `terminator` (left unconsumed) or the end of the line.
    mutating func readKeyPath(until terminator: UInt8) -> [String] {
        var parts: [String] = []
        var current: [UInt8] = []
        while let c = peek(), c != terminator, c != .newline {
            switch c {
            case .space, .tab:
                advance()
            case .dot:
                parts.append(String(decoding: current, as: UTF8.self))
                current = []
                advance()
            case .quote, .apostrophe:
                advance()
                while let d = peek(), d != c, d != .newline {
                    if c == .quote, d == .backslash, peek(1) != nil, peek(1) != .newline {
                        current.append(d)
                        advance()
                    }
                    if let e = peek() { current.append(e) }
                    advance()
                }
                if peek() == c { advance() }
            default:
                current.append(c)
                advance()
            }
        }
        parts.append(String(decoding: current, as: UTF8.self))
        return parts
    }

    /// Skips one value, which may span lines, noting date hazards in its unquoted parts.
    mutating func skipValue() {
        skipBlanks()
        guard let c = peek() else { return }
        switch c {
        case .quote, .apostrophe:
            skipString()
        case .openBracket, .openBrace:
            var open: [UInt8] = []
            // Inside an inline table, between `{`/`,` and `=`: a key, which may look like a date.
            var atKey = false
            // Inside an array, after `[` or `,`: where a value (or `]`) must come.
            var atArrayValue = false
            // Inside an unquoted value such as a number or date. As for toml++, only
            // whitespace, `]`, `}`, `,` and `#` end it: a quote or bracket inside it is
            // part of it, not the start of a string or array.
            var inToken = false
            while let d = peek() {
                if atArrayValue {
                    if d == .space || d == .tab || d == .newline || d == .cr {
                        advance()
                        continue
                    }
                    if d == .hash {
                        skipToEndOfLine()
                        continue
                    }
                    atArrayValue = false
                    if d == .closeBrace {
                        valueHazards.append(
                            SourceMap.Hazard(
                                line: line, offset: position, length: 1,
                                message: "Error while parsing array: expected a value or closing ']', saw '}'"
                            ))
                    } else if let length = unicodeLineBreakLength() {
                        valueHazards.append(
                            SourceMap.Hazard(
                                line: line, offset: position, length: length,
                                message: "Error while parsing array: expected a value or closing ']', saw a Unicode line break"
                            ))
                    }
                }
                let endsToken = inToken && d.endsValue
                if inToken && !endsToken {
                    noteValueHazards(afterValue: true)
                    advance()
                    continue
                }
                inToken = false
                switch d {
                case .openBracket, .openBrace:
                    open.append(d)
                    atKey = d == .openBrace
                    atArrayValue = d == .openBracket
                    advance()
                case .closeBracket, .closeBrace:
                    _ = open.popLast()
                    atKey = false
                    advance()
                    if open.isEmpty { return }
                case .quote, .apostrophe:
                    skipString()
                case .hash:
                    skipToEndOfLine()
                case .comma:
                    atKey = open.last == .openBrace
                    atArrayValue = open.last == .openBracket
                    advance()
                case .equals where atKey:
                    atKey = false
                    advance()
                case .space, .tab, .newline, .cr:
                    if !atKey { noteValueHazards(afterValue: endsToken) }
                    advance()
                default:
                    if !atKey {
                        inToken = true
                        noteValueHazards(afterValue: false)
                    }
                    advance()
                }
            }
        default:
            var afterValue = false
            while let d = peek(), d != .newline, d != .hash {
                noteValueHazards(afterValue: afterValue)
                afterValue = d != .space && d != .tab
                advance()
            }
        }
    }

    /// Whether the table header starting here (at `[`) names its table with a character
    /// toml++ checks for itself: a bare-key character, a quote, or `]`. Mirrors toml++'s
    /// own steps: `[`, blanks, an optional second `[` (only right after the first), blanks.
    func headerNameStartsWell() -> Bool {
        var i = position + 1
        var hadBlank = false
        while i < bytes.count, bytes[i] == .space || bytes[i] == .tab {
            i += 1
            hadBlank = true
        }
        guard i < bytes.count else { return true }
        if bytes[i] == .openBracket {
            if hadBlank { return true }  // toml++ refuses `[ [` with an error of its own
            i += 1
            while i < bytes.count, bytes[i] == .space || bytes[i] == .tab { i += 1 }
            guard i < bytes.count else { return true }
        }
        let c = bytes[i]
        return c == .closeBracket || c == .quote || c == .apostrophe || c.isBareKeyByte
    }

    /// Value hazards seen since the last call: the offset of the byte to defuse, its line,
    /// and what to say.
    private var valueHazards: [SourceMap.Hazard] = []

    mutating func takeValueHazards() -> [SourceMap.Hazard] {
        defer { valueHazards = [] }
        return valueHazards
    }

    /// The length in bytes of U+0085, U+2028 or U+2029 at the cursor; nil for anything else.
    private func unicodeLineBreakLength() -> Int? {
        if peek() == 0xC2, peek(1) == 0x85 { return 2 }
        if peek() == 0xE2, peek(1) == 0x80, let third = peek(2), third == 0xA8 || third == 0xA9 { return 3 }
        return nil
    }

    /// Checks the unquoted value byte at the cursor for the hazards toml++ cannot take.
    /// `afterValue`: the byte before the cursor belongs to an unquoted value.
    private mutating func noteValueHazards(afterValue: Bool) {
        guard let c = peek() else { return }
        if c == UInt8(ascii: "T") || c == UInt8(ascii: "t"), position >= 10, let next = peek(1), !next.isDigit {
            // `YYYY-MM-DD` then `T` without a time.
            let p = position - 10
            let shape = [true, true, true, true, false, true, true, false, true, true]
            let isDate = shape.enumerated().allSatisfy { k, digit in
                digit ? bytes[p + k].isDigit : bytes[p + k] == UInt8(ascii: "-")
            }
            if isDate {
                valueHazards.append(
                    SourceMap.Hazard(
                        line: line, offset: position, length: 1,
                        message: "Error while parsing date-time: expected a time after 'T'"
                    ))
            }
        }
        if c == .space, afterValue, let digit = peek(1), digit.isDigit, let after = peek(2), after.endsValue || after >= 0x80 {
            // A value, a space, one digit, and the end of that value.
            valueHazards.append(
                SourceMap.Hazard(
                    line: line, offset: position + 1, length: 1,
                    message:
                        "Error while parsing key-value pair: expected a comment or whitespace after the value, saw "
                        + "'\(Character(Unicode.Scalar(digit)))'"
                ))
        }
    }

    /// Skips a basic or literal string, single- or multi-line, starting at its opening quote.
    mutating func skipString() {
        guard let q = peek() else { return }
        let multiline = peek(1) == q && peek(2) == q
        let escapes = q == .quote
        if multiline {
            advance()
            advance()
            advance()
            while let c = peek() {
                if escapes, c == .backslash {
                    advance()
                    advance()
                } else if c == q, peek(1) == q, peek(2) == q {
                    advance()
                    advance()
                    advance()
                    // Up to two more quotes may close the string as part of its content.
                    if peek() == q { advance() }
                    if peek() == q { advance() }
                    return
                } else {
                    advance()
                }
            }
        } else {
            advance()
            while let c = peek(), c != .newline {
                if escapes, c == .backslash {
                    advance()
                    if peek() != .newline { advance() }
                } else if c == q {
                    advance()
                    return
                } else {
                    advance()
                }
            }
        }
    }
}
