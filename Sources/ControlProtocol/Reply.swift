import PoolCore

/// Reply lines, each one line of compact JSON ending in `\n`. Every reply starts with
/// `"id"` and `"ok"`, so a client can match it to its request before reading the rest.
public enum Reply {
    /// `{"id":<id or null>,"ok":true,<fields...>}\n` — fields in the given order, appended
    /// after "ok". The keys `id` and `ok` are the reply's own and must not be among them
    /// (they are skipped, so the line never has duplicate keys).
    public static func ok(id: RequestID?, _ fields: [(String, JSONValue)]) -> [UInt8] {
        var writer = start(id: id, ok: true)
        for (key, value) in fields {
            append(key, value, to: &writer)
        }
        return finish(&writer)
    }

    public static func ok(id: RequestID?, fields: JSONObject) -> [UInt8] {
        var writer = start(id: id, ok: true)
        for entry in fields.entries {
            append(entry.key, entry.value, to: &writer)
        }
        return finish(&writer)
    }

    /// `{"id":…,"ok":false,"job":N (only when job != nil),"error":{"code":"…","message":"…","detail":{…} (only when detail != nil)}}\n`
    public static func error(
        id: RequestID?, code: ErrorCode, message: String, job: Int64? = nil, detail: JSONObject? = nil
    ) -> [UInt8] {
        var writer = start(id: id, ok: false, capacity: 64 + message.utf8.count)
        if let job {
            writer.writeRaw(",\"job\":")
            writer.writeInt(job)
        }
        writer.writeRaw(",\"error\":{\"code\":")
        writer.writeString(code.rawValue)
        writer.writeRaw(",\"message\":")
        writer.writeString(message)
        if let detail {
            writer.writeRaw(",\"detail\":")
            writer.write(detail)
        }
        writer.writeRaw("}")
        return finish(&writer)
    }

    public static func error(_ error: RequestError) -> [UInt8] {
        Self.error(id: error.id, code: error.code, message: error.message)
    }

    /// The reply to `error`, carrying its code and message.
    public static func error(id: RequestID?, _ error: PoolError, job: Int64? = nil, detail: JSONObject? = nil) -> [UInt8] {
        Self.error(id: id, code: error.code, message: error.message, job: job, detail: detail)
    }

    /// The fast path for ping: exactly `{"id":…,"ok":true}\n` without building a JSONValue.
    public static func pong(id: RequestID?) -> [UInt8] {
        var writer = start(id: id, ok: true, capacity: 40)
        return finish(&writer)
    }

    /// `{"id":null,"ok":false,"error":{"code":"too_large",…}}\n`: the answer to a line
    /// over `Framing.maxLineBytes`, after which the connection is closed.
    public static func tooLarge(maxLineBytes: Int = Framing.maxLineBytes) -> [UInt8] {
        error(
            id: nil, code: .tooLarge,
            message: "request line exceeds \(maxLineBytes) bytes; the connection will be closed")
    }

    // MARK: Building

    private static func start(id: RequestID?, ok: Bool, capacity: Int = 128) -> JSONWriter {
        var writer = JSONWriter(capacity: capacity)
        writer.writeRaw("{\"id\":")
        switch id {
        case nil: writer.writeRaw("null")
        case .int(let i)?: writer.writeInt(i)
        case .string(let s)?: writer.writeString(s)
        }
        if ok {
            writer.writeRaw(",\"ok\":true")
        } else {
            writer.writeRaw(",\"ok\":false")
        }
        return writer
    }

    private static func append(_ key: String, _ value: JSONValue, to writer: inout JSONWriter) {
        if key == "id" || key == "ok" { return }
        writer.writeRaw(",")
        writer.writeString(key)
        writer.writeRaw(":")
        writer.write(value)
    }

    private static func finish(_ writer: inout JSONWriter) -> [UInt8] {
        writer.writeRaw("}\n")
        return writer.bytes
    }
}
