/// A JSON document as the control protocol sees it.
///
/// Integers and floats are different cases because request ids are echoed with their
/// type: an integer literal that fits `Int64` is `.int`, every other number is `.double`.
/// The parser never produces a non-finite `.double`.
///
/// Equality is Swift's: strings (and object keys) compare by Unicode canonical
/// equivalence, doubles numerically (`-0.0 == 0.0`).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

extension JSONValue {
    /// The name of this value's type with an article, for messages: "an array", "a string".
    public var typeDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a float"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// A short rendering for error messages: scalars as JSON (strings truncated to 64
    /// bytes), containers by their type, so a message never echoes a megabyte back.
    public var shortDescription: String {
        switch self {
        case .array, .object:
            return typeDescription
        case .string(let s):
            var writer = JSONWriter(capacity: 72)
            writer.writeString(Self.truncated(s, toUTF8Count: 64))
            return writer.string
        default:
            return JSON.encode(self)
        }
    }

    /// `s` cut at a scalar boundary to at most `limit` UTF-8 bytes, with "…" when cut.
    static func truncated(_ s: String, toUTF8Count limit: Int) -> String {
        if s.utf8.count <= limit { return s }
        var count = 0
        var result = String.UnicodeScalarView()
        for scalar in s.unicodeScalars {
            count += UTF8.width(scalar)
            if count > limit { break }
            result.append(scalar)
        }
        return String(result) + "…"
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

/// A JSON object that keeps its keys in the order they were written, so replies read
/// the way the protocol documents them. Lookups are linear: protocol objects are small,
/// and the parser guarantees that a parsed object has no duplicate keys. Equality is
/// order-sensitive (it compares `entries`).
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: JSONValue

        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public var entries: [Entry]

    public init(_ entries: [Entry] = []) {
        self.entries = entries
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.entries = []
        entries.reserveCapacity(elements.count)
        for (key, value) in elements { self[key] = value }
    }

    /// The value for `key`. Setting a value replaces an existing entry in place or appends
    /// a new one; setting nil removes the entry.
    public subscript(key: String) -> JSONValue? {
        get {
            for entry in entries where entry.key == key { return entry.value }
            return nil
        }
        set {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue {
                    entries[index].value = newValue
                } else {
                    entries.remove(at: index)
                }
            } else if let newValue {
                entries.append(Entry(key: key, value: newValue))
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }
    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    public func makeIterator() -> IndexingIterator<[Entry]> {
        entries.makeIterator()
    }
}
