import ControlProtocol
import Testing

/// The error `JSON.parse` throws for `bytes`, or nil when they parse.
func parseError(_ bytes: [UInt8]) -> JSONParseError? {
    do {
        _ = try JSON.parse(bytes)
        return nil
    } catch {
        return error
    }
}

func parseError(_ text: String) -> JSONParseError? {
    parseError(Array(text.utf8))
}

@Suite("JSON parsing")
struct JSONParserTests {

    // MARK: Numbers

    @Test(
        "integers that fit Int64 are .int, other numbers .double",
        arguments: [
            ("0", JSONValue.int(0)),
            ("-0", .int(0)),
            ("7", .int(7)),
            ("-42", .int(-42)),
            ("9223372036854775807", .int(.max)),
            ("-9223372036854775808", .int(.min)),
            ("9223372036854775808", .double(9_223_372_036_854_775_808.0)),
            ("-9223372036854775809", .double(-9_223_372_036_854_775_809.0)),
            ("123456789012345678901234567890", .double(1.2345678901234568e29)),
            ("1.5e3", .double(1500)),
            ("1E3", .double(1000)),
            ("1e+2", .double(100)),
            ("1e-3", .double(0.001)),
            ("1.0", .double(1)),
            ("-1.25", .double(-1.25)),
            ("0.1", .double(0.1)),
            ("1e0", .double(1)),
            ("0e10", .double(0)),
            ("2.2250738585072014e-308", .double(2.2250738585072014e-308)),
            ("1.7976931348623157e308", .double(1.7976931348623157e308)),
            ("4.9406564584124654e-324", .double(Double.leastNonzeroMagnitude)),
            ("1e-400", .double(0)),
        ]
    )
    func numbers(text: String, expected: JSONValue) throws {
        #expect(try JSON.parse(text) == expected)
    }

    @Test("a negative zero float keeps its sign; an integer -0 is 0")
    func negativeZero() throws {
        guard case .double(let d) = try JSON.parse("-0.0") else {
            Issue.record("-0.0 should be a double")
            return
        }
        #expect(d == 0 && d.sign == .minus)
        #expect(try JSON.parse("-0") == .int(0))
    }

    @Test(
        "malformed numbers are refused",
        arguments: [
            "01", "-01", "00", "1.", ".5", "+1", "-", "1e", "1e+", "1E-", "1.e3", "--1", "NaN", "nan", "Infinity",
            "-Infinity", "inf", "0x10", "1_000", "1.5.2", "1e400", "-1e400", "1" + String(repeating: "0", count: 400),
        ]
    )
    func malformedNumbers(text: String) {
        #expect(parseError(text) != nil)
    }

    @Test("doubles are correctly rounded, including long inputs")
    func correctRounding() throws {
        // Halfway between 2^53 and 2^53 + 2: ties to even.
        #expect(try JSON.parse("9007199254740993.0") == .double(9_007_199_254_740_992))
        // Just above halfway, the deciding digit a thousand places in.
        let above = "9007199254740993." + String(repeating: "0", count: 1000) + "1"
        #expect(try JSON.parse(above) == .double(9_007_199_254_740_994))
        let tiny = "0." + String(repeating: "0", count: 1000) + "1"
        #expect(try JSON.parse(tiny) == .double(0))
        let longOne = "1." + String(repeating: "0", count: 5000) + "e0"
        #expect(try JSON.parse(longOne) == .double(1))
        let big = "1" + String(repeating: "0", count: 300) + ".5"
        #expect(try JSON.parse(big) == .double(1e300))
        for text in ["3.14159", "2.718281828459045", "1e22", "1e23", "123456789.123456789", "5e-324", "8.98846567431158e307"] {
            #expect(try JSON.parse(text) == .double(Double(text) ?? .nan), "\(text)")
        }
    }

    @Test("a huge exponent is out of range, not infinite")
    func hugeExponent() throws {
        #expect(parseError("1e999999999999999999999")?.message.contains("out of range") == true)
        #expect(try JSON.parse("1e-999999999999999999999") == .double(0))
    }

    // MARK: Literals and structure

    @Test("literals, arrays and objects, with whitespace between tokens")
    func structure() throws {
        #expect(try JSON.parse("true") == .bool(true))
        #expect(try JSON.parse("false") == .bool(false))
        #expect(try JSON.parse("null") == .null)
        #expect(try JSON.parse(" \t\r\n[ 1 , \"a\" , [ ] , { } ] \n") == .array([.int(1), .string("a"), .array([]), .object([:])]))
        let object = try JSON.parse(#"{"b": 1, "a": {"c": [true, null]}}"#)
        guard case .object(let o) = object else {
            Issue.record("not an object")
            return
        }
        #expect(o.keys == ["b", "a"])
        #expect(o["a"] == .object(["c": [true, nil]]))
    }

    @Test(
        "malformed structure is refused",
        arguments: [
            "", "   ", "tru", "nul", "True", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{'a':1}",
            "[", "{", "]", "}", "{\"a\" 1}", "{} x", "1 2", "[]]", "nulll", "truex", "\u{0C}1", "\u{A0}1", "[1]\u{0}",
        ]
    )
    func malformedStructure(text: String) {
        #expect(parseError(text) != nil)
    }

    @Test("errors name the problem and its 0-based byte offset")
    func errorOffsets() {
        let error = parseError(#"{"id":1, "op" "ping"}"#)
        #expect(error == JSONParseError(message: "expected ':' after key", offset: 14))
        #expect(error?.description == "expected ':' after key at byte 14")
        #expect(parseError("") == JSONParseError(message: "empty input", offset: 0))
        #expect(parseError("[1] x")?.offset == 4)
        #expect(parseError("[1,]")?.offset == 3)
    }

    @Test("every entry point agrees, and an empty buffer without a base address is an error")
    func entryPoints() throws {
        let text = #"{"a":[1,2.5,"x"]}"#
        let bytes = Array(text.utf8)
        let fromString = try JSON.parse(text)
        let fromArray = try JSON.parse(bytes)
        let fromRaw = try bytes.withUnsafeBytes { raw throws(JSONParseError) in try JSON.parse(raw) }
        #expect(fromString == fromArray && fromArray == fromRaw)
        #expect(throws: JSONParseError.self) { try JSON.parse(UnsafeRawBufferPointer(start: nil, count: 0)) }
    }

    // MARK: Strings

    @Test("every escape decodes, surrogate pairs combine")
    func escapes() throws {
        let text = #""\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00\u0000x""#
        #expect(try JSON.parse(text) == .string("\"\\/\u{8}\u{C}\n\r\tAé€😀\u{0}x"))
        #expect(try JSON.parse(#""plain""#) == .string("plain"))
        #expect(try JSON.parse(#""""#) == .string(""))
        #expect(try JSON.parse(#""a\nb""#) == .string("a\nb"))
        #expect(try JSON.parse(#""\uD83D\uDE00 and \u00E9""#) == .string("😀 and é"))
    }

    @Test("raw UTF-8 of every length is accepted")
    func rawUTF8() throws {
        #expect(try JSON.parse("\"aé€😀\u{10FFFF}\u{2028}\"") == .string("aé€😀\u{10FFFF}\u{2028}"))
        let long = String(repeating: "é😀x", count: 10_000)
        #expect(try JSON.parse("\"" + long + "\"") == .string(long))
        #expect(try JSON.parse("\"\\n" + long + "\"") == .string("\n" + long))
    }

    @Test(
        "lone surrogates are refused",
        arguments: [
            #""\ud800""#, #""\udc00""#, #""\udfff""#, #""\ud800\u0041""#, #""\ud800x""#, #""\ud800\ud800""#,
            #""a\uDBFF""#, #""\ude00\ud83d""#, #""\ud800\""#,
        ]
    )
    func loneSurrogates(text: String) {
        let error = parseError(text)
        #expect(error?.message.contains("lone surrogate") == true, "\(String(describing: error))")
    }

    @Test(
        "invalid escapes are refused",
        arguments: [#""\x""#, #""\'""#, #""\u12""#, #""\u12G4""#, #""\U0041""#, #""\"#, #""abc"#, #""abc\""#]
    )
    func invalidEscapes(text: String) {
        #expect(parseError(text) != nil)
    }

    @Test("raw control characters in strings are refused", arguments: 0..<0x20)
    func controlCharacters(code: Int) {
        let bytes: [UInt8] = [UInt8(ascii: "\""), UInt8(code), UInt8(ascii: "\"")]
        #expect(parseError(bytes)?.message.contains("control character") == true)
        #expect(parseError([UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "n"), UInt8(code), UInt8(ascii: "\"")]) != nil)
    }

    @Test(
        "invalid UTF-8 is refused: stray, overlong, surrogate, too large, truncated",
        arguments: [
            [0xFF], [0xFE], [0x80], [0xBF], [0xC0, 0xAF], [0xC1, 0xBF], [0xE0, 0x80, 0xAF], [0xE0, 0x9F, 0xBF],
            [0xF0, 0x80, 0x80, 0xAF], [0xF0, 0x8F, 0xBF, 0xBF], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0xC3], [0xF0, 0x9F, 0x98],
            [0xC3, 0x41], [0xE2, 0x41, 0x82],
        ] as [[UInt8]]
    )
    func invalidUTF8(sequence: [UInt8]) {
        let inString = [UInt8(ascii: "\"")] + sequence + [UInt8(ascii: "\"")]
        #expect(parseError(inString)?.message.contains("UTF-8") == true)
        let afterEscape = [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "t")] + sequence + [UInt8(ascii: "\"")]
        #expect(parseError(afterEscape)?.message.contains("UTF-8") == true)
        #expect(parseError(sequence) != nil)
    }

    @Test("the boundaries of each UTF-8 length are accepted")
    func utf8Boundaries() throws {
        let sequences: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for sequence in sequences {
            let value = try JSON.parse([UInt8(ascii: "\"")] + sequence + [UInt8(ascii: "\"")])
            #expect(value == .string(String(decoding: sequence, as: UTF8.self)))
        }
    }

    // MARK: Objects and depth

    @Test("duplicate keys are refused, in small and large objects and through escapes")
    func duplicateKeys() throws {
        #expect(parseError(#"{"id":1,"id":2}"#)?.message == #"duplicate key "id""#)
        #expect(parseError(#"{"a":1,"\u0061":2}"#)?.message == #"duplicate key "a""#)
        #expect(parseError(#"{"a":{"b":1,"b":1}}"#) != nil)
        let many = (0..<1000).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let parsed = try JSON.parse("{" + many + "}")
        guard case .object(let object) = parsed else {
            Issue.record("not an object")
            return
        }
        #expect(object.count == 1000 && object["k999"] == .int(999))
        #expect(parseError("{" + many + #","k17":0}"#)?.message == #"duplicate key "k17""#)
        #expect(parseError("{" + many + #","k999":0}"#) != nil)
        // The same key in sibling objects is fine.
        #expect(try JSON.parse(#"[{"a":1},{"a":2}]"#) == [["a": 1], ["a": 2]])
    }

    @Test("nesting up to 64 levels parses, 65 does not")
    func depthLimit() throws {
        func arrays(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        func objects(_ n: Int) -> String { String(repeating: #"{"a":"#, count: n) + "1" + String(repeating: "}", count: n) }
        #expect(JSON.maxDepth == 64)
        _ = try JSON.parse(arrays(64))
        _ = try JSON.parse(objects(64))
        _ = try JSON.parse(String(repeating: #"[{"a":"#, count: 32) + "1" + String(repeating: "}]", count: 32))
        #expect(parseError(arrays(65))?.message.contains("nesting") == true)
        #expect(parseError(objects(65))?.message.contains("nesting") == true)
        #expect(parseError(String(repeating: "[", count: 200_000))?.message.contains("nesting") == true)
        #expect(parseError(String(repeating: #"{"a":"#, count: 200_000)) != nil)
    }

    @Test("large flat inputs parse in linear time")
    func largeInputs() throws {
        let count = 100_000
        let array = "[" + Array(repeating: "1.5", count: count).joined(separator: ",") + "]"
        guard case .array(let elements) = try JSON.parse(array) else {
            Issue.record("not an array")
            return
        }
        #expect(elements.count == count)
        let digits = String(repeating: "7", count: 1 << 20)
        #expect(parseError(digits)?.message.contains("out of range") == true)
        #expect(try JSON.parse("0." + digits) == .double(0.7777777777777778))
    }
}
