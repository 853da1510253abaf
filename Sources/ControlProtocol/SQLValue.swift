/// A statement parameter. On the wire a blob is `{"base64": "…"}`: standard base64 with
/// padding required (see `Base64`).
public enum SQLValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
    /// A JSON document from the database (PostgreSQL json/jsonb, arrays), written into a
    /// reply as JSON rather than as a string. Never decoded from a request.
    case json(JSONValue)

    /// The value as the protocol writes it in a reply (a blob as `{"base64": "…"}`).
    public var jsonValue: JSONValue {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .text(let s): .string(s)
        case .blob(let bytes): .object(["base64": .string(Base64.encode(bytes))])
        case .json(let value): value
        }
    }

    /// About how many bytes the value takes in a reply (escapes not counted): enough to keep
    /// a result within a bound without writing it first.
    public var replyBytes: Int {
        switch self {
        case .null, .bool: 5
        case .int, .double: 20
        case .text(let s): s.utf8.count + 3
        case .blob(let bytes): (bytes.count + 2) / 3 * 4 + 16
        case .json(let value): JSON.encode(value).count + 1
        }
    }

    /// The most one statement's result may take in a reply (`replyBytes` of every value);
    /// more is refused with `bad_request` rather than held in memory.
    public static let maxResultBytes = 16 << 20

    /// The refusal of a result over `maxResultBytes`.
    public static var resultTooLargeMessage: String {
        "the result is over \(maxResultBytes >> 20) MiB; select fewer rows or columns, or page through it"
    }
}

/// One SQL statement and its positional parameters.
public struct SQLStatement: Sendable, Hashable {
    public var sql: String
    public var params: [SQLValue]

    public init(sql: String, params: [SQLValue] = []) {
        self.sql = sql
        self.params = params
    }
}

/// The rows one statement produced, in the protocol's terms.
public struct StatementResult: Sendable, Hashable {
    public var columns: [String]
    public var rows: [[SQLValue]]
    /// Rows changed by an INSERT/UPDATE/DELETE; nil for anything else.
    public var affected: Int64?

    public init(columns: [String], rows: [[SQLValue]], affected: Int64?) {
        self.columns = columns
        self.rows = rows
        self.affected = affected
    }
}
