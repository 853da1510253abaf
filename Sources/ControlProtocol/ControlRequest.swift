/// A decoded request line.
public struct ControlRequest: Sendable, Hashable {
    public var id: RequestID?
    public var command: Command
    public var op: Op { command.op }

    public init(id: RequestID?, command: Command) {
        self.id = id
        self.command = command
    }
}

/// A request id: echoed in the reply with its type, so clients can match answers to
/// pipelined requests. A string id is at most `RequestID.maxStringBytes` bytes of UTF-8.
public enum RequestID: Sendable, Hashable {
    case int(Int64)
    case string(String)

    public static let maxStringBytes = 256

    /// The id as it appears in a reply.
    public var jsonValue: JSONValue {
        switch self {
        case .int(let i): .int(i)
        case .string(let s): .string(s)
        }
    }
}
