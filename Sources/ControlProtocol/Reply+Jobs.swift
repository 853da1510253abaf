import PoolCore

/// The answers to jobs that succeeded (docs/PROTOCOL.md, "Replies to jobs"): written straight
/// into bytes, because this is the hot path of every query and building a `JSONValue` tree
/// first would cost an allocation per cell.
extension Reply {
    /// A SQL job's answer: `"columns"`, `"rows"` and `"affected"` of its one statement, or
    /// `"results"` (one such object per statement) for a batch; then `"timing"`.
    public static func sql(id: RequestID?, job: Int64, results: [StatementResult], isBatch: Bool, timing: JobTiming) -> [UInt8] {
        var w = JSONWriter(capacity: 256)
        writeJobStart(id: id, job: job, into: &w)
        if isBatch {
            w.writeRaw(",\"results\":[")
            for (index, result) in results.enumerated() {
                if index > 0 { w.writeRaw(",") }
                w.writeRaw("{")
                writeResult(result, into: &w)
                w.writeRaw("}")
            }
            w.writeRaw("]")
        } else {
            w.writeRaw(",")
            writeResult(results.first ?? StatementResult(columns: [], rows: [], affected: nil), into: &w)
        }
        writeTiming(timing, into: &w)
        return w.bytes
    }

    /// An exec job's answer: the worker's `"output"`, then `"timing"`.
    public static func exec(id: RequestID?, job: Int64, output: JSONValue, timing: JobTiming) -> [UInt8] {
        var w = JSONWriter(capacity: 128)
        writeJobStart(id: id, job: job, into: &w)
        w.writeRaw(",\"output\":")
        w.write(output)
        writeTiming(timing, into: &w)
        return w.bytes
    }

    /// `{"id":…,"ok":true,"job":N`
    private static func writeJobStart(id: RequestID?, job: Int64, into w: inout JSONWriter) {
        w.writeRaw("{\"id\":")
        w.write(id?.jsonValue ?? .null)
        w.writeRaw(",\"ok\":true,\"job\":")
        w.writeInt(job)
    }

    /// `,"timing":{…}}` and the newline that ends a reply.
    private static func writeTiming(_ timing: JobTiming, into w: inout JSONWriter) {
        w.writeRaw(",\"timing\":{\"queue_us\":")
        w.writeInt(timing.queue.microseconds)
        w.writeRaw(",\"acquire_us\":")
        w.writeInt(timing.acquire.microseconds)
        w.writeRaw(",\"exec_us\":")
        w.writeInt(timing.exec.microseconds)
        w.writeRaw("}}\n")
    }

    /// `"columns":[…],"rows":[[…]],"affected":N|null`
    private static func writeResult(_ result: StatementResult, into w: inout JSONWriter) {
        w.writeRaw("\"columns\":[")
        for (index, column) in result.columns.enumerated() {
            if index > 0 { w.writeRaw(",") }
            w.writeString(column)
        }
        w.writeRaw("],\"rows\":[")
        for (r, row) in result.rows.enumerated() {
            w.writeRaw(r > 0 ? ",[" : "[")
            for (c, value) in row.enumerated() {
                if c > 0 { w.writeRaw(",") }
                switch value {
                case .null: w.writeRaw("null")
                case .bool(let b): w.writeRaw(b ? "true" : "false")
                case .int(let i): w.writeInt(i)
                case .double(let d): w.writeDouble(d)
                case .text(let text): w.writeString(text)
                case .blob(let bytes):
                    w.writeRaw("{\"base64\":")
                    w.writeString(Base64.encode(bytes))
                    w.writeRaw("}")
                case .json(let json): w.write(json)
                }
            }
            w.writeRaw("]")
        }
        w.writeRaw("],\"affected\":")
        if let affected = result.affected { w.writeInt(affected) } else { w.writeRaw("null") }
    }
}
