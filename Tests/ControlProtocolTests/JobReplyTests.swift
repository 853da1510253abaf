import ControlProtocol
import PoolCore
import Testing

/// The SQL answer is written straight into bytes; it must still be exactly the protocol's JSON.
struct JobReplyTests {
    let result = StatementResult(
        columns: ["k", "v \"quoted\""],
        rows: [[.int(1), .text("line\nbreak ✓")], [.null, .double(1.5)], [.bool(true), .blob([0, 1, 255])]],
        affected: nil
    )
    let timing = JobTiming(queue: .microseconds(3), acquire: .microseconds(12), exec: .microseconds(85))

    @Test func singleStatement() throws {
        let bytes = Reply.sql(id: .int(7), job: 1532, results: [result], isBatch: false, timing: timing)
        #expect(bytes.last == UInt8(ascii: "\n"))
        let parsed = try JSON.parse(Array(bytes.dropLast()))
        let expected: JSONValue = .object([
            "id": .int(7), "ok": .bool(true), "job": .int(1532),
            "columns": .array([.string("k"), .string("v \"quoted\"")]),
            "rows": .array([
                .array([.int(1), .string("line\nbreak ✓")]),
                .array([.null, .double(1.5)]),
                .array([.bool(true), .object(["base64": .string("AAH/")])]),
            ]),
            "affected": .null,
            "timing": .object(["queue_us": .int(3), "acquire_us": .int(12), "exec_us": .int(85)]),
        ])
        #expect(parsed == expected)
    }

    @Test func batchAndStringIDs() throws {
        let write = StatementResult(columns: [], rows: [], affected: 3)
        let bytes = Reply.sql(id: .string("req-1"), job: 9, results: [write, result], isBatch: true, timing: timing)
        guard case .object(let reply) = try JSON.parse(Array(bytes.dropLast())) else {
            Issue.record("not an object")
            return
        }
        #expect(reply["id"] == .string("req-1"))
        guard case .array(let results)? = reply["results"], results.count == 2, case .object(let first) = results[0] else {
            Issue.record("no results: \(reply)")
            return
        }
        #expect(first["affected"] == .int(3))
        #expect(first["rows"] == .array([]))
        #expect(reply["columns"] == nil, "a batch answers with results only")

        let noID = Reply.sql(id: nil, job: 1, results: [write], isBatch: false, timing: timing)
        guard case .object(let anonymous) = try JSON.parse(Array(noID.dropLast())) else { return }
        #expect(anonymous["id"] == .null)
    }

    @Test func execOutput() throws {
        let output: JSONValue = .object(["sum": .int(3), "note": .string("ok ✓")])
        let bytes = Reply.exec(id: .int(2), job: 40, output: output, timing: timing)
        #expect(bytes.last == UInt8(ascii: "\n"))
        #expect(bytes.filter { $0 == UInt8(ascii: "\n") }.count == 1, "one line")
        let expected: JSONValue = .object([
            "id": .int(2), "ok": .bool(true), "job": .int(40), "output": output,
            "timing": .object(["queue_us": .int(3), "acquire_us": .int(12), "exec_us": .int(85)]),
        ])
        #expect(try JSON.parse(Array(bytes.dropLast())) == expected)
    }
}
