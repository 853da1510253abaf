import PoolCore

/// Turns one request line into a `ControlRequest`, or into the error to answer with.
///
/// The order of checks is part of the contract: the line must be UTF-8 JSON holding an
/// object; then `id` is read, so every later error carries it; then `op`; then unknown
/// fields are refused (a typo such as `timout_ms` must never be silently ignored); then
/// each field's type and the rules between fields.
public enum RequestDecoder {
    public static func decode(_ line: UnsafeRawBufferPointer) -> Result<ControlRequest, RequestError> {
        let value: JSONValue
        do {
            value = try JSON.parse(line)
        } catch {
            return .failure(unreadable(line, error))
        }
        return decode(value)
    }

    public static func decode(_ line: [UInt8]) -> Result<ControlRequest, RequestError> {
        line.withUnsafeBytes { decode($0) }
    }

    /// Decodes a request that is already parsed (the rules after "is it JSON").
    public static func decode(_ value: JSONValue) -> Result<ControlRequest, RequestError> {
        guard case .object(let object) = value else {
            return .failure(
                RequestError(
                    id: nil, code: .badRequest,
                    message: "a request must be a JSON object (got \(value.typeDescription))"))
        }
        let id: RequestID?
        switch readID(object) {
        case .success(let value): id = value
        case .failure(let error): return .failure(error)
        }
        var fields = RequestFields(object: object, id: id)
        do {
            let command = try fields.command()
            return .success(ControlRequest(id: id, command: command))
        } catch {
            var error = error
            error.op = fields.knownOp
            return .failure(error)
        }
    }

    /// A `params` array (scalars and `{"base64": …}` blobs) as values, as `run` reads it: for a
    /// durable job's params, stored as JSON and read back when it runs.
    public static func params(_ value: JSONValue) -> Result<[SQLValue], RequestError> {
        let fields = RequestFields(object: JSONObject(), id: nil)
        do {
            return .success(try fields.readParams(value, path: "params") ?? [])
        } catch {
            return .failure(error)
        }
    }

    /// Names the problem: invalid UTF-8 anywhere in the line wins over a JSON error,
    /// since it is what the client has to fix first.
    private static func unreadable(_ line: UnsafeRawBufferPointer, _ error: JSONParseError) -> RequestError {
        let utf8Error = line.withMemoryRebound(to: UInt8.self) { UTF8Validation.firstError(in: $0) }
        if let utf8Error {
            return RequestError(
                id: nil, code: .badRequest,
                message: "not valid UTF-8 at byte \(utf8Error.offset) (\(utf8Error.reason))")
        }
        return RequestError(id: nil, code: .badRequest, message: "not valid JSON: \(error)")
    }

    private static func readID(_ object: JSONObject) -> Result<RequestID?, RequestError> {
        guard let value = object["id"] else { return .success(nil) }
        func expected() -> String {
            "\"id\" must be an integer or a string of at most \(RequestID.maxStringBytes) bytes"
        }
        switch value {
        case .int(let i):
            return .success(.int(i))
        case .string(let s):
            let length = s.utf8.count
            if length <= RequestID.maxStringBytes { return .success(.string(s)) }
            return .failure(
                RequestError(id: nil, code: .badRequest, message: "\(expected()) (got a string of \(length) bytes)"))
        default:
            return .failure(
                RequestError(id: nil, code: .badRequest, message: "\(expected()) (got \(value.shortDescription))"))
        }
    }
}
