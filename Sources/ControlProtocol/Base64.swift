/// Base64 for blob parameters and blob columns (`{"base64": "…"}`), by hand so the pure
/// protocol target needs no Foundation.
///
/// The standard alphabet (RFC 4648 §4: `A–Z a–z 0–9 + /`) with **padding required**: the
/// text's length is a multiple of 4, and `=` appears only as one or two final characters.
/// No whitespace, no line breaks, no URL-safe alphabet. Unused bits in the last group
/// are ignored, as most decoders do. The empty string is the empty blob.
public enum Base64 {
    private static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        alphabet.withUTF8Buffer { table in
            var i = 0
            while i + 3 <= bytes.count {
                let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                out.append(table[Int(n >> 18 & 63)])
                out.append(table[Int(n >> 12 & 63)])
                out.append(table[Int(n >> 6 & 63)])
                out.append(table[Int(n & 63)])
                i += 3
            }
            let rest = bytes.count - i
            if rest == 1 {
                let n = UInt32(bytes[i]) << 16
                out.append(table[Int(n >> 18 & 63)])
                out.append(table[Int(n >> 12 & 63)])
                out.append(UInt8(ascii: "="))
                out.append(UInt8(ascii: "="))
            } else if rest == 2 {
                let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
                out.append(table[Int(n >> 18 & 63)])
                out.append(table[Int(n >> 12 & 63)])
                out.append(table[Int(n >> 6 & 63)])
                out.append(UInt8(ascii: "="))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The decoded bytes, or nil when `text` is not padded standard base64.
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode($0) }
    }

    static func decode(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        if input.isEmpty { return [] }
        var padding = 0
        if input[input.count - 1] == UInt8(ascii: "=") {
            padding = input[input.count - 2] == UInt8(ascii: "=") ? 2 : 1
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var i = 0
        while i < input.count {
            var n: UInt32 = 0
            let isLast = i + 4 == input.count
            let significant = isLast ? 4 - padding : 4
            for k in 0..<4 {
                let value: UInt8
                if k < significant {
                    guard let v = sextet(input[i + k]) else { return nil }
                    value = v
                } else {
                    value = 0
                }
                n = n << 6 | UInt32(value)
            }
            out.append(UInt8(truncatingIfNeeded: n >> 16))
            if significant >= 3 { out.append(UInt8(truncatingIfNeeded: n >> 8)) }
            if significant == 4 { out.append(UInt8(truncatingIfNeeded: n)) }
            i += 4
        }
        return out
    }

    @inline(__always)
    private static func sextet(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c &- UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c &- UInt8(ascii: "a") &+ 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c &- UInt8(ascii: "0") &+ 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
