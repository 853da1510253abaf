/// Appends compact JSON to a byte buffer: the reply path writes straight into the bytes
/// that go to the socket, without building a `String` per value.
///
/// Output is always valid JSON on one line: strings escape `"`, `\`, every control
/// character (`\b \f \n \r \t` in their short forms, the others as `\u00XX`) and
/// U+2028/U+2029 (`\u2028`, `\u2029`, which some JavaScript parsers treat as line ends);
/// all other non-ASCII text is written as raw UTF-8. Non-finite doubles are written as
/// `null`.
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// The bytes written so far as text.
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: writeRaw("null")
        case .bool(let b): b ? writeRaw("true") : writeRaw("false")
        case .int(let i): writeInt(i)
        case .double(let d): writeDouble(d)
        case .string(let s): writeString(s)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            write(object)
        }
    }

    public mutating func write(_ object: JSONObject) {
        bytes.append(UInt8(ascii: "{"))
        var first = true
        for entry in object.entries {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            writeString(entry.key)
            bytes.append(UInt8(ascii: ":"))
            write(entry.value)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in writeEscaped(utf8) }
    }

    private mutating func writeEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        bytes.reserveCapacity(bytes.count + utf8.count + 2)
        bytes.append(UInt8(ascii: "\""))
        var runStart = 0
        var i = 0
        while i < utf8.count {
            let byte = utf8[i]
            let escape: StaticString?
            var skip = 1
            switch byte {
            case UInt8(ascii: "\""): escape = "\\\""
            case UInt8(ascii: "\\"): escape = "\\\\"
            case 0x08: escape = "\\b"
            case 0x0C: escape = "\\f"
            case 0x0A: escape = "\\n"
            case 0x0D: escape = "\\r"
            case 0x09: escape = "\\t"
            case 0x00..<0x20: escape = ""
            case 0xE2 where i + 2 < utf8.count && utf8[i + 1] == 0x80 && (utf8[i + 2] == 0xA8 || utf8[i + 2] == 0xA9):
                escape = utf8[i + 2] == 0xA8 ? "\\u2028" : "\\u2029"
                skip = 3
            default: escape = nil
            }
            guard let escape else {
                i += 1
                continue
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
            if escape.utf8CodeUnitCount == 0 {
                let hex: StaticString = "0123456789abcdef"
                writeRaw("\\u00")
                hex.withUTF8Buffer { digits in
                    bytes.append(digits[Int(byte >> 4)])
                    bytes.append(digits[Int(byte & 0xF)])
                }
            } else {
                writeRaw(escape)
            }
            i += skip
            runStart = i
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count]))
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func writeInt(_ i: Int64) {
        if i < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = i.magnitude
        if magnitude < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude))
            return
        }
        // 20 digits hold UInt64.max; filled from the right, then copied in one go.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            while magnitude > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// The shortest text that reads back as exactly `d` (Swift's `description`), which
    /// always has a `.` or an exponent, so it parses back as a `.double`, never an `.int`.
    /// NaN and the infinities have no JSON form and are written as `null`.
    public mutating func writeDouble(_ d: Double) {
        guard d.isFinite else {
            writeRaw("null")
            return
        }
        var text = d.description
        text.withUTF8 { utf8 in
            bytes.append(contentsOf: utf8)
            if !utf8.contains(UInt8(ascii: ".")) && !utf8.contains(UInt8(ascii: "e")) {
                writeRaw(".0")
            }
        }
    }

    /// Appends trusted ASCII as is, e.g. `{"id":`.
    public mutating func writeRaw(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Appends trusted text as is (it must already be valid JSON where it lands).
    public mutating func writeRaw(_ s: String) {
        bytes.append(contentsOf: s.utf8)
    }
}
