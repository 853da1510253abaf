import PoolCore

/// Why a request line was refused. `message` says what is wrong and what would be valid.
public struct RequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// nil when the id could not be read (bad type, unparseable line) or was absent.
    public var id: RequestID?
    /// `.badRequest` or `.unknownOp`.
    public var code: ErrorCode
    public var message: String

    public init(id: RequestID?, code: ErrorCode, message: String) {
        self.id = id
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
