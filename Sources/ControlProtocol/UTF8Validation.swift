/// Strict UTF-8 per Unicode Table 3-7: no overlong forms, no encoded surrogates,
/// nothing above U+10FFFF.
enum UTF8Validation {
    enum Outcome {
        case valid(length: Int)
        case invalid(offset: Int, reason: String)
    }

    /// The length of the well-formed sequence starting at `i` (whose lead byte is ≥ 0x80).
    static func sequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Outcome {
        let lead = bytes[i]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        case 0x80...0xBF:
            return .invalid(offset: i, reason: "unexpected continuation byte \(hex(lead))")
        case 0xC0, 0xC1:
            return .invalid(offset: i, reason: "overlong encoding starting with \(hex(lead))")
        default:
            return .invalid(offset: i, reason: "byte \(hex(lead)) never appears in UTF-8")
        }
        guard i + 1 < bytes.count else {
            return .invalid(offset: i, reason: "truncated sequence starting with \(hex(lead))")
        }
        let second = bytes[i + 1]
        guard second >= low && second <= high else {
            let reason: String
            if second < 0x80 || second > 0xBF {
                reason = "\(hex(lead)) is not followed by a continuation byte"
            } else if lead == 0xED {
                reason = "an encoded surrogate"
            } else if lead == 0xF4 {
                reason = "a code point above U+10FFFF"
            } else {
                reason = "overlong encoding starting with \(hex(lead)) \(hex(second))"
            }
            return .invalid(offset: i, reason: reason)
        }
        for k in 2..<length {
            guard i + k < bytes.count else {
                return .invalid(offset: i, reason: "truncated sequence starting with \(hex(lead))")
            }
            let byte = bytes[i + k]
            guard byte >= 0x80 && byte <= 0xBF else {
                return .invalid(offset: i, reason: "\(hex(lead)) is not followed by enough continuation bytes")
            }
        }
        return .valid(length: length)
    }

    /// The first ill-formed position in `bytes`, or nil when all of it is valid UTF-8.
    static func firstError(in bytes: UnsafeBufferPointer<UInt8>) -> (offset: Int, reason: String)? {
        var i = 0
        while i < bytes.count {
            if bytes[i] < 0x80 {
                i += 1
                continue
            }
            switch sequenceLength(bytes, at: i) {
            case .valid(let length): i += length
            case .invalid(let offset, let reason): return (offset, reason)
            }
        }
        return nil
    }

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF".unicodeScalars)
        return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
    }
}
