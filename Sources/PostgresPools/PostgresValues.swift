import ControlProtocol
import NIOCore

/// PostgreSQL values in the protocol's JSON terms, both ways.
///
/// Results of the types listed in `knownTypes` arrive in the binary format (poold asks for it
/// per column), and are decoded here: integers and floats as JSON numbers, numeric as a string (no
/// precision lost), json/jsonb as JSON, timestamps as RFC 3339, bytea as `{"base64": …}`,
/// arrays as JSON arrays, and the other common types as PostgreSQL prints them. A type not
/// known here (an enum, an extension's) is asked for in text, and comes back as PostgreSQL
/// prints it.
package enum PostgresValues {
    /// The JSON value of one cell: `oid` is its type, `bytes` nil for SQL NULL.
    static func decode(oid: UInt32, bytes: ByteBuffer?) -> SQLValue {
        guard let bytes else { return .null }
        var buffer = bytes
        if let value = decode(oid: oid, buffer: &buffer) { return value }
        return fallback(bytes, known: knownTypes.contains(oid))
    }

    /// The types decoded below; bytes of these that do not fit their format come back as
    /// `{"base64": …}` rather than as text.
    static let knownTypes: Set<UInt32> = Set([
        16, 21, 23, 20, 26, 28, 29, 700, 701, 1700, 25, 1043, 1042, 19, 18, 142, 705, 114, 3802, 17,
        2950, 1082, 1083, 1266, 1114, 1184, 1186, 869, 650,
    ]).union(arrayElementTypes.keys)

    /// nil when the bytes do not have the shape the type's binary format requires.
    private static func decode(oid: UInt32, buffer: inout ByteBuffer) -> SQLValue? {
        switch oid {
        case 16:  // bool
            guard buffer.readableBytes == 1, let b = buffer.readInteger(as: UInt8.self) else { return nil }
            return .bool(b != 0)
        case 21:  // int2
            guard buffer.readableBytes == 2, let i = buffer.readInteger(as: Int16.self) else { return nil }
            return .int(Int64(i))
        case 23:  // int4
            guard buffer.readableBytes == 4, let i = buffer.readInteger(as: Int32.self) else { return nil }
            return .int(Int64(i))
        case 20:  // int8
            guard buffer.readableBytes == 8, let i = buffer.readInteger(as: Int64.self) else { return nil }
            return .int(i)
        case 26, 28, 29:  // oid, xid, cid
            guard buffer.readableBytes == 4, let i = buffer.readInteger(as: UInt32.self) else { return nil }
            return .int(Int64(i))
        case 700:  // float4
            guard buffer.readableBytes == 4, let bits = buffer.readInteger(as: UInt32.self) else { return nil }
            return float(Double(Float(bitPattern: bits)))
        case 701:  // float8
            guard buffer.readableBytes == 8, let bits = buffer.readInteger(as: UInt64.self) else { return nil }
            return float(Double(bitPattern: bits))
        case 1700:  // numeric
            return numeric(&buffer).map { .text($0) }
        case 25, 1043, 1042, 19, 18, 142, 705:  // text, varchar, bpchar, name, "char", xml, unknown
            return text(buffer)
        case 114:  // json
            return json(buffer)
        case 3802:  // jsonb: a version byte, then the text
            guard buffer.readInteger(as: UInt8.self) == 1 else { return nil }
            return json(buffer)
        case 17:  // bytea
            return .blob(buffer.readBytes(length: buffer.readableBytes) ?? [])
        case 2950:  // uuid
            return uuid(&buffer).map { .text($0) }
        case 1082:  // date
            guard buffer.readableBytes == 4, let days = buffer.readInteger(as: Int32.self) else { return nil }
            return .text(date(days: days))
        case 1083:  // time
            guard buffer.readableBytes == 8, let micros = buffer.readInteger(as: Int64.self) else { return nil }
            return .text(timeOfDay(micros))
        case 1266:  // timetz: time, then the zone's offset in seconds west of UTC
            guard buffer.readableBytes == 12, let micros = buffer.readInteger(as: Int64.self),
                let west = buffer.readInteger(as: Int32.self)
            else { return nil }
            return .text(timeOfDay(micros) + offset(east: -Int(west)))
        case 1114, 1184:  // timestamp, timestamptz
            guard buffer.readableBytes == 8, let micros = buffer.readInteger(as: Int64.self) else { return nil }
            return .text(timestamp(micros, utc: oid == 1184))
        case 1186:  // interval
            guard buffer.readableBytes == 16, let micros = buffer.readInteger(as: Int64.self),
                let days = buffer.readInteger(as: Int32.self), let months = buffer.readInteger(as: Int32.self)
            else { return nil }
            return .text(interval(months: months, days: days, micros: micros))
        case 869, 650:  // inet, cidr
            return inet(&buffer).map { .text($0) }
        default:
            if let element = arrayElementTypes[oid] {
                return array(&buffer, element: element)
            }
            return nil
        }
    }

    /// Array types and their element types, for the element types decoded above.
    static let arrayElementTypes: [UInt32: UInt32] = [
        1000: 16, 1005: 21, 1007: 23, 1016: 20, 1028: 26, 1021: 700, 1022: 701, 1231: 1700,
        1009: 25, 1015: 1043, 1014: 1042, 1003: 19, 143: 142, 199: 114, 3807: 3802, 1001: 17,
        2951: 2950, 1182: 1082, 1183: 1083, 1270: 1266, 1115: 1114, 1185: 1184, 1187: 1186,
        1041: 869, 651: 650,
    ]

    private static func fallback(_ buffer: ByteBuffer, known: Bool = false) -> SQLValue {
        let bytes = buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
        if !known, let text = String(validating: bytes, as: UTF8.self) { return .text(text) }
        return .blob(bytes)
    }

    private static func text(_ buffer: ByteBuffer) -> SQLValue? {
        buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes).map { .text($0) }
    }

    private static func json(_ buffer: ByteBuffer) -> SQLValue? {
        let parsed: JSONValue? = buffer.withUnsafeReadableBytes { raw in try? JSON.parse(raw) }
        if let parsed { return .json(parsed) }
        // Valid for PostgreSQL but not for us (a lone surrogate escape, say): keep the text.
        return text(buffer)
    }

    private static func float(_ d: Double) -> SQLValue {
        if d.isFinite { return .double(d) }
        return .text(d.isNaN ? "NaN" : d > 0 ? "Infinity" : "-Infinity")
    }

    // MARK: numeric

    /// Base-10000 digits with a weight and a display scale, printed as PostgreSQL does.
    static func numeric(_ buffer: inout ByteBuffer) -> String? {
        guard let (count, weight, sign, scale) = buffer.readMultipleIntegers(as: (Int16, Int16, UInt16, Int16).self),
            count >= 0, scale >= 0, buffer.readableBytes == Int(count) * 2
        else { return nil }
        switch sign {
        case 0xC000: return "NaN"
        case 0xD000: return "Infinity"
        case 0xF000: return "-Infinity"
        case 0x0000, 0x4000: break
        default: return nil
        }
        var digits: [Int16] = []
        digits.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let d = buffer.readInteger(as: Int16.self), (0..<10000).contains(d) else { return nil }
            digits.append(d)
        }
        var out = sign == 0x4000 ? "-" : ""
        // The integer part: groups 0...weight.
        if weight < 0 {
            out += "0"
        } else {
            for group in 0...Int(weight) {
                let d = group < digits.count ? Int(digits[group]) : 0
                out += group == 0 ? String(d) : pad(d, 4)
            }
        }
        if scale > 0 {
            var fraction = ""
            var group = Int(weight) + 1
            while fraction.count < Int(scale) {
                let d = group >= 0 && group < digits.count ? Int(digits[group]) : 0
                fraction += pad(d, 4)
                group += 1
            }
            out += "." + fraction.prefix(Int(scale))
        }
        if out == "-0" || (out.hasPrefix("-") && out.dropFirst().allSatisfy { $0 == "0" || $0 == "." }) {
            out.removeFirst()
        }
        return out
    }

    // MARK: dates and times

    /// Days from 0001-01-01 (proleptic Gregorian) to 2000-01-01, PostgreSQL's epoch.
    private static let epochJulian = 2_451_545

    private static func date(days: Int32) -> String {
        if days == Int32.max { return "infinity" }
        if days == Int32.min { return "-infinity" }
        return civil(julianDay: epochJulian + Int(days))
    }

    /// `2024-02-29` (or `0044-03-15 BC`) for a Julian day number.
    private static func civil(julianDay: Int) -> String {
        // Richards' algorithm, Gregorian calendar.
        let f = julianDay + 1401 + (((4 * julianDay + 274277) / 146097) * 3) / 4 - 38
        let e = 4 * f + 3
        let g = (e % 1461) / 4
        let h = 5 * g + 2
        let day = (h % 153) / 5 + 1
        let month = ((h / 153 + 2) % 12) + 1
        var year = e / 1461 - 4716 + (12 + 2 - month) / 12
        var suffix = ""
        if year <= 0 {
            year = 1 - year
            suffix = " BC"
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))\(suffix)"
    }

    private static func timeOfDay(_ micros: Int64) -> String {
        let seconds = micros / 1_000_000
        let fraction = micros % 1_000_000
        return "\(pad(Int(seconds / 3600), 2)):\(pad(Int(seconds / 60 % 60), 2)):\(pad(Int(seconds % 60), 2))" + fractionText(fraction)
    }

    /// `.5`, `.123456`: microseconds without trailing zeros; empty for zero.
    private static func fractionText(_ micros: Int64) -> String {
        guard micros != 0 else { return "" }
        var digits = pad(Int(micros), 6)
        while digits.hasSuffix("0") { digits.removeLast() }
        return "." + digits
    }

    /// RFC 3339: `2024-01-02T03:04:05.5Z` for timestamptz (UTC), no offset for timestamp.
    private static func timestamp(_ micros: Int64, utc: Bool) -> String {
        if micros == Int64.max { return "infinity" }
        if micros == Int64.min { return "-infinity" }
        let perDay: Int64 = 86_400_000_000
        var days = micros / perDay
        var rest = micros % perDay
        if rest < 0 {
            rest += perDay
            days -= 1
        }
        return civil(julianDay: epochJulian + Int(days)) + "T" + timeOfDay(rest) + (utc ? "Z" : "")
    }

    private static func offset(east seconds: Int) -> String {
        let sign = seconds < 0 ? "-" : "+"
        let s = abs(seconds)
        var text = "\(sign)\(pad(s / 3600, 2)):\(pad(s / 60 % 60, 2))"
        if s % 60 != 0 { text += ":\(pad(s % 60, 2))" }
        return text
    }

    /// PostgreSQL's default style: `1 year 2 mons 3 days 04:05:06.5`.
    private static func interval(months: Int32, days: Int32, micros: Int64) -> String {
        var parts: [String] = []
        let years = months / 12
        let mons = months % 12
        // As PostgreSQL: singular for exactly 1, plural otherwise (also for -1).
        if years != 0 { parts.append("\(years) year\(years == 1 ? "" : "s")") }
        if mons != 0 { parts.append("\(mons) mon\(mons == 1 ? "" : "s")") }
        if days != 0 { parts.append("\(days) day\(days == 1 ? "" : "s")") }
        if micros != 0 || parts.isEmpty {
            let negative = micros < 0
            let m = micros.magnitude
            let seconds = m / 1_000_000
            let time =
                "\(pad(Int(seconds / 3600), 2)):\(pad(Int(seconds / 60 % 60), 2)):\(pad(Int(seconds % 60), 2))"
                + fractionText(Int64(m % 1_000_000))
            parts.append((negative ? "-" : "") + time)
        }
        return parts.joined(separator: " ")
    }

    // MARK: other types

    private static func uuid(_ buffer: inout ByteBuffer) -> String? {
        guard buffer.readableBytes == 16, let bytes = buffer.readBytes(length: 16) else { return nil }
        var out = ""
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { out += "-" }
            out += hex(byte)
        }
        return out
    }

    private static func inet(_ buffer: inout ByteBuffer) -> String? {
        guard let (family, bits, isCIDR, count) = buffer.readMultipleIntegers(as: (UInt8, UInt8, UInt8, UInt8).self),
            buffer.readableBytes == Int(count), let bytes = buffer.readBytes(length: Int(count))
        else { return nil }
        let address: String
        let full: Int
        switch (family, count) {
        case (2, 4):
            address = bytes.map(String.init).joined(separator: ".")
            full = 32
        case (3, 16):
            address = ipv6(bytes)
            full = 128
        default:
            return nil
        }
        return isCIDR != 0 || Int(bits) != full ? "\(address)/\(bits)" : address
    }

    /// RFC 5952 text: lower case, the longest run of zero groups (two or more) as `::`.
    private static func ipv6(_ bytes: [UInt8]) -> String {
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            if groups[index] == 0 {
                var end = index
                while end < 8, groups[end] == 0 { end += 1 }
                if end - index > best.length { best = (index, end - index) }
                index = end
            } else {
                index += 1
            }
        }
        func text(_ range: Range<Int>) -> String { range.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        // An IPv4 address inside IPv6 (::a.b.c.d, ::ffff:a.b.c.d) keeps its dotted form, as
        // PostgreSQL (BIND's inet_ntop) prints it.
        if best.start == 0 && (best.length == 6 || (best.length == 5 && groups[5] == 0xFFFF)) {
            let v4 = bytes[12...].map(String.init).joined(separator: ".")
            return best.length == 6 ? "::" + v4 : "::ffff:" + v4
        }
        guard best.length >= 2 else { return text(0..<8) }
        return text(0..<best.start) + "::" + text((best.start + best.length)..<8)
    }

    /// Arrays of any dimension, as nested JSON arrays (lower bounds are not kept).
    private static func array(_ buffer: inout ByteBuffer, element: UInt32) -> SQLValue? {
        guard let (dimensions, _, elementOID) = buffer.readMultipleIntegers(as: (Int32, Int32, UInt32).self),
            (0...6).contains(dimensions), elementOID == element
        else { return nil }
        if dimensions == 0 { return .json(.array([])) }
        var sizes: [Int] = []
        for _ in 0..<dimensions {
            guard let (size, _) = buffer.readMultipleIntegers(as: (Int32, Int32).self), size >= 0 else { return nil }
            sizes.append(Int(size))
        }
        guard sizes.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) <= buffer.readableBytes / 4 else {
            return nil
        }
        func level(_ depth: Int) -> JSONValue? {
            var items: [JSONValue] = []
            items.reserveCapacity(sizes[depth])
            for _ in 0..<sizes[depth] {
                if depth + 1 < sizes.count {
                    guard let nested = level(depth + 1) else { return nil }
                    items.append(nested)
                } else {
                    guard let length = buffer.readInteger(as: Int32.self) else { return nil }
                    if length < 0 {
                        items.append(.null)
                        continue
                    }
                    guard let slice = buffer.readSlice(length: Int(length)) else { return nil }
                    items.append(decode(oid: element, bytes: slice).jsonValue)
                }
            }
            return .array(items)
        }
        guard let value = level(0), buffer.readableBytes == 0 else { return nil }
        return .json(value)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
    }
}
