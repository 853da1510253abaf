/// Why the bytes are not JSON, and where: `offset` is the 0-based index of the byte at
/// which the parser gave up.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var offset: Int

    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    /// `expected ':' after key at byte 12`
    public var description: String { "\(message) at byte \(offset)" }
}

/// Strict RFC 8259 JSON, written by hand because the protocol needs what general
/// parsers do not give together: the integer/float distinction (ids are echoed with their
/// type), rejection of lone surrogates and of invalid or overlong UTF-8, duplicate-key
/// detection, bounded nesting, and a fast path for the small requests that dominate.
///
/// - Numbers: an integer literal (no fraction or exponent) that fits `Int64` is `.int`
///   (`-0` is `.int(0)`); any other number is `.double`, correctly rounded. A number whose
///   magnitude overflows `Double` is an error, so a parsed value is always finite.
/// - Strings must be valid UTF-8 (no overlong forms, no encoded surrogates, nothing above
///   U+10FFFF); raw control characters (U+0000–U+001F) are errors; escapes are `\" \\ \/
///   \b \f \n \r \t \uXXXX`, with surrogate pairs combined and a lone surrogate an error.
/// - Duplicate keys in an object are an error; so is nesting deeper than `maxDepth`, and
///   anything but whitespace after the value.
public enum JSON {
    /// The deepest nesting of arrays and objects accepted: `[[…]]` 64 levels deep parses,
    /// 65 does not. It bounds the parser's recursion, so arbitrary input cannot exhaust
    /// the stack.
    public static let maxDepth = 64

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withMemoryRebound(to: UInt8.self) { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in try parser.parseDocument() }
        }
        return try result.get()
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in try parser.parseDocument() }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var text = text
        let result: Result<JSONValue, JSONParseError> = text.withUTF8 { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in try parser.parseDocument() }
        }
        return try result.get()
    }

    /// Compact JSON on one line (no insignificant whitespace), keys in their order.
    public static func encode(_ value: JSONValue) -> String {
        var writer = JSONWriter()
        writer.write(value)
        return writer.string
    }
}
