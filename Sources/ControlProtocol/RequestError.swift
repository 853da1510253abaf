import PoolCore

/// Why a request line was refused. `message` says what is wrong and what would be valid.
public struct RequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// nil when the id could not be read (bad type, unparseable line) or was absent.
    public var id: RequestID?
    /// `.badRequest` or `.unknownOp`.
    public var code: ErrorCode
    public var message: String
    /// The op, when it was read before the error was found: authorization comes before every
    /// other check (docs/PROTOCOL.md, "Order of checks"), so a peer whose role may not use the op is told that, not
    /// what else is wrong with its request.
    public var op: Op?

    public init(id: RequestID?, code: ErrorCode, message: String, op: Op? = nil) {
        self.id = id
        self.code = code
        self.message = message
        self.op = op
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
