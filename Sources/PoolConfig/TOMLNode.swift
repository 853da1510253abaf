import TOMLKit

/// A parsed TOML value as plain Swift data.
///
/// TOMLKit's values are views into toml++'s tree that it never frees, so the loader copies
/// the document into this form once and then empties the toml++ table. It also lets the
/// validator read keys in a stable order without TOMLKit's force-unwrapping iterator.
indirect enum TOMLNode {
    case table([(key: String, value: TOMLNode)])
    case array([TOMLNode])
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    /// Dates and times, which poold never accepts; kept as written for messages.
    case other(String)

    init(_ value: any TOMLValueConvertible) {
        switch value.type {
        case .table:
            self = value.table.map(TOMLNode.init(table:)) ?? .other("a table")
        case .array:
            guard let array = value.array else {
                self = .other("an array")
                return
            }
            self = .array((0..<array.count).map { TOMLNode(array[$0]) })
        case .string:
            self = .string(value.string ?? "")
        case .int:
            self = value.int.map(TOMLNode.integer) ?? .other("an integer")
        case .double:
            self = value.double.map(TOMLNode.float) ?? .other("a float")
        case .bool:
            self = value.bool.map(TOMLNode.boolean) ?? .other("a boolean")
        case .date, .time, .dateTime:
            self = .other(value.tomlValue.debugDescription)
        }
    }

    /// Reads keys and values pairwise, in toml++'s order, without looking keys up again
    /// (a key holding an escaped NUL would not be found by name).
    init(table: TOMLTable) {
        let keys = table.keys
        let values = table.values
        self = .table(zip(keys, values).map { (key: $0, value: TOMLNode($1)) })
    }

    /// What kind of value this is, for messages: `a string`, `an integer`.
    var kindDescription: String {
        switch self {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .other: "a date or time"
        }
    }

    /// The value roughly as written in TOML (strings quoted), shortened past 80 characters,
    /// for the `(got …)` part of messages.
    var display: String {
        let full = rendered
        guard full.count > 80 else { return full }
        return String(full.prefix(77)) + "…"
    }

    private var rendered: String {
        switch self {
        case .table(let entries):
            if entries.isEmpty { return "{}" }
            return "{ " + entries.map { "\(tomlKey($0.key)) = \($0.value.rendered)" }.joined(separator: ", ") + " }"
        case .array(let items):
            return "[" + items.map(\.rendered).joined(separator: ", ") + "]"
        case .string(let s):
            return tomlString(s)
        case .integer(let i):
            return String(i)
        case .float(let d):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d < 0 ? "-inf" : "inf" }
            return String(d)
        case .boolean(let b):
            return String(b)
        case .other(let text):
            return text
        }
    }
}

/// `s` as a TOML basic string: quoted, with `"`, `\` and control characters escaped.
func tomlString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// A key bare when TOML allows it, quoted otherwise.
func tomlKey(_ key: String) -> String {
    let bare =
        !key.isEmpty
        && key.unicodeScalars.allSatisfy { s in
            (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "_" || s == "-"
        }
    return bare ? key : tomlString(key)
}
