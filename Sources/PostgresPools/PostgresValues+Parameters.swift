import ControlProtocol
import NIOCore
import PostgresWire

// A job's params for PostgreSQL: a prepared statement's binary format, or the values' own types.

extension PostgresValues {
    /// Params in the binary format of the types the server inferred when it prepared the
    /// statement; nil when a value does not fit its type exactly (a string for an int4, a
    /// type not encoded here), so that the caller runs the statement with `typedParameters`
    /// instead, where the server converts text itself. The same values give the same results
    /// either way.
    static func binaryParameters(_ params: [SQLValue], types: [UInt32]) -> [Frontend.Parameter]? {
        guard params.count == types.count else { return nil }
        var out: [Frontend.Parameter] = []
        out.reserveCapacity(params.count)
        for (value, oid) in zip(params, types) {
            guard let bytes = binary(value, oid: oid) else { return nil }
            out.append(Frontend.Parameter(bytes: bytes.map { Array($0.readableBytesView) }, binary: true))
        }
        return out
    }

    /// The types to declare for `typedParameters`: bool, int8, float8 and bytea for those
    /// values; 0 (the server infers it from the statement) for strings, JSON and NULL, so that
    /// `WHERE created_at > $1` takes an RFC 3339 string, as libpq's text params do.
    static func declaredTypes(_ params: [SQLValue]) -> [UInt32] {
        params.map { param in
            switch param {
            case .bool: 16
            case .int: 20
            case .double: 701
            case .blob: 17
            case .null, .text, .json: 0
            }
        }
    }

    /// Params for a statement parsed with `declaredTypes`: the typed ones in binary, strings and
    /// JSON as text.
    static func typedParameters(_ params: [SQLValue]) -> [Frontend.Parameter] {
        params.map { param in
            switch param {
            case .null: Frontend.Parameter(bytes: nil, binary: false)
            case .bool(let b): Frontend.Parameter(bytes: [b ? 1 : 0], binary: true)
            case .int(let i): Frontend.Parameter(bytes: bigEndian(UInt64(bitPattern: i)), binary: true)
            case .double(let d): Frontend.Parameter(bytes: bigEndian(d.bitPattern), binary: true)
            case .blob(let bytes): Frontend.Parameter(bytes: bytes, binary: true)
            case .text(let s): Frontend.Parameter(bytes: Array(s.utf8), binary: false)
            case .json(let value): Frontend.Parameter(bytes: Array(JSON.encode(value).utf8), binary: false)
            }
        }
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    /// nil inside the optional: SQL NULL.
    private static func binary(_ value: SQLValue, oid: UInt32) -> ByteBuffer?? {
        var buffer = ByteBuffer()
        switch (value, oid) {
        case (.null, _):
            return .some(nil)
        case (.bool(let b), 16):
            buffer.writeInteger(UInt8(b ? 1 : 0))
        case (.int(let i), 21):
            guard let v = Int16(exactly: i) else { return nil }
            buffer.writeInteger(v)
        case (.int(let i), 23):
            guard let v = Int32(exactly: i) else { return nil }
            buffer.writeInteger(v)
        case (.int(let i), 20):
            buffer.writeInteger(i)
        case (.int(let i), 26):
            guard let v = UInt32(exactly: i) else { return nil }
            buffer.writeInteger(v)
        case (.double(let d), 701):
            buffer.writeInteger(d.bitPattern)
        case (.int(let i), 701):
            guard let d = Double(exactly: i) else { return nil }
            buffer.writeInteger(d.bitPattern)
        case (.double(let d), 700):
            guard let f = Float(exactly: d) else { return nil }
            buffer.writeInteger(f.bitPattern)
        case (.int(let i), 700):
            guard let f = Float(exactly: i) else { return nil }
            buffer.writeInteger(f.bitPattern)
        case (.int(let i), 1700):
            guard let numeric = numericBinary(String(i)) else { return nil }
            buffer = numeric
        case (.text(let s), 1700):
            guard let numeric = numericBinary(s) else { return nil }
            buffer = numeric
        case (.text(let s), 25), (.text(let s), 1043), (.text(let s), 1042), (.text(let s), 19), (.text(let s), 705), (.text(let s), 114):
            buffer.writeString(s)
        case (.text(let s), 3802):
            buffer.writeInteger(UInt8(1))
            buffer.writeString(s)
        case (.json(let json), 114):
            buffer.writeString(JSON.encode(json))
        case (.json(let json), 3802):
            buffer.writeInteger(UInt8(1))
            buffer.writeString(JSON.encode(json))
        case (.blob(let bytes), 17):
            buffer.writeBytes(bytes)
        case (.text(let s), 2950):
            guard let bytes = uuidBytes(s) else { return nil }
            buffer.writeBytes(bytes)
        default:
            return nil
        }
        return .some(buffer)
    }

    /// `-123.4500` as PostgreSQL's binary numeric; nil for anything but plain decimal digits
    /// with an optional sign and fraction (exponents, NaN and such go unprepared).
    static func numericBinary(_ text: String) -> ByteBuffer? {
        var chars = Substring(text)
        var negative = false
        if chars.first == "-" || chars.first == "+" {
            negative = chars.first == "-"
            chars = chars.dropFirst()
        }
        let parts = chars.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, parts.count <= 2, !(whole.isEmpty && (parts.count == 1 || parts[1].isEmpty)),
            whole.allSatisfy({ $0.isASCII && $0.isNumber }), parts.count == 1 || parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
            chars.count <= 1000
        else { return nil }
        let fraction = parts.count == 2 ? parts[1] : ""
        let integerDigits = whole.drop(while: { $0 == "0" })
        // Group into base-10000 digits around the decimal point.
        let padLeft = (4 - integerDigits.count % 4) % 4
        let padRight = (4 - fraction.count % 4) % 4
        let all = String(repeating: "0", count: padLeft) + integerDigits + fraction + String(repeating: "0", count: padRight)
        var groups: [Int16] = []
        var index = all.startIndex
        while index < all.endIndex {
            let next = all.index(index, offsetBy: 4)
            groups.append(Int16(all[index..<next]) ?? 0)
            index = next
        }
        var weight = (padLeft + integerDigits.count) / 4 - 1
        // Strip leading and trailing zero groups (weight follows the first kept group).
        while let first = groups.first, first == 0 {
            groups.removeFirst()
            weight -= 1
        }
        while let last = groups.last, last == 0 { groups.removeLast() }
        if groups.isEmpty { weight = 0 }
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(
            Int16(groups.count), Int16(weight), UInt16(negative && !groups.isEmpty ? 0x4000 : 0), Int16(fraction.count))
        for group in groups { buffer.writeInteger(group) }
        return buffer
    }

    private static func uuidBytes(_ text: String) -> [UInt8]? {
        let hex = text.utf8.filter { $0 != UInt8(ascii: "-") }
        guard hex.count == 32, text.utf8.count == 32 || text.utf8.count == 36 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        var index = 0
        while index < 32 {
            guard let hi = hexDigit(hex[index]), let lo = hexDigit(hex[index + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            index += 2
        }
        return bytes
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
