import ControlProtocol
import PoolCore
import Testing

/// The durable queues' ops as the decoder reads them: one job or a bounded batch, every field's
/// type and range, and RFC 3339 for `run_at`.
struct EnqueueDecodingTests {
    @Test func oneJobAndABatch() throws {
        let one = try decode(#"{"op":"enqueue","queue":"q","params":[1,"a",{"base64":"AQI="}],"priority":-3,"unique_key":"k"}"#).get()
        guard case .enqueue(let jobs, let isBatch) = one.command else {
            Issue.record("not an enqueue: \(one)")
            return
        }
        #expect(!isBatch && jobs.count == 1)
        #expect(jobs[0].paramValues == [.int(1), .text("a"), .blob([1, 2])])
        #expect(jobs[0].priority == -3 && jobs[0].uniqueKey == "k" && jobs[0].maxAttempts == nil)
        let batch = try decode(#"{"op":"enqueue","queue":"q","jobs":[{"params":[1]},{"queue":"r","input":{"x":1},"max_attempts":3}]}"#)
            .get()
        guard case .enqueue(let entries, true) = batch.command else {
            Issue.record("not a batch: \(batch)")
            return
        }
        #expect(entries.map(\.queue) == ["q", "r"])
        #expect(entries[1].input == .object(["x": .int(1)]) && entries[1].maxAttempts == 3)
    }

    @Test func badFieldsAreRefused() {
        let cases: [(String, String)] = [
            (#"{"op":"enqueue"}"#, "enqueue needs \"queue\""),
            (#"{"op":"enqueue","queue":""}"#, "\"queue\" must be a non-empty string"),
            (#"{"op":"enqueue","queue":"q","run_at":"2026-13-01T00:00:00Z"}"#, "RFC 3339"),
            (#"{"op":"enqueue","queue":"q","priority":5000}"#, "\"priority\" must be an integer from -1000 to 1000"),
            (#"{"op":"enqueue","queue":"q","max_attempts":0}"#, "\"max_attempts\" must be an integer from 1 to 1000"),
            (#"{"op":"enqueue","queue":"q","unique_key":""}"#, "\"unique_key\" must be a non-empty string"),
            (#"{"op":"enqueue","queue":"q","params":[[1]]}"#, "params[0] must be a scalar"),
            (#"{"op":"enqueue","queue":"q","jobs":[]}"#, "\"jobs\" must be a non-empty array"),
            (#"{"op":"enqueue","queue":"q","jobs":[{"parms":[1]}]}"#, "did you mean \"params\""),
            (#"{"op":"enqueue","jobs":[{"params":[1]}]}"#, "jobs[0] needs \"queue\""),
            (#"{"op":"enqueue","queue":"q","params":[1],"jobs":[{"params":[1]}]}"#, "\"params\" is not allowed beside \"jobs\""),
            (#"{"op":"enqueue","queue":"q","jobs":[{"run_at":"now"}]}"#, "\"jobs[0].run_at\" must be an RFC 3339"),
            (#"{"op":"job_status"}"#, "job_status needs \"job_id\""),
            (#"{"op":"job_cancel","job_id":0}"#, "\"job_id\" must be a positive integer"),
            (#"{"op":"queues","queue":"q"}"#, "unknown field \"queue\" for op \"queues\""),
        ]
        for (line, words) in cases {
            guard let error = refusal(line) else { continue }
            #expect(error.code == .badRequest && error.message.contains(words), "\(line) → \(error.message)")
        }
        let jobs = (0..<1001).map { _ in #"{"params":[1]}"# }.joined(separator: ",")
        let big = refusal(#"{"op":"enqueue","queue":"q","jobs":["# + jobs + "]}")
        #expect(big?.code == .tooLarge)
    }

    @Test func rfc3339() {
        for valid in ["2026-12-07T18:00:00Z", "2026-12-07t18:00:00.123456z", "2024-02-29T23:59:60+01:00", "2026-12-07 18:00:00-05:30"] {
            #expect(RFC3339.isValid(valid), "\(valid)")
        }
        for invalid in [
            "2026-12-07T18:00:00", "2026-12-07", "2025-02-29T00:00:00Z", "2026-12-07T24:00:00Z", "2026-12-07T18:00:00+1:00",
            "2026-12-07T18:00:00.Z", "tomorrow", "2026-12-07T18:00:00Z ", "0000-01-01T00:00:00Z",
        ] {
            #expect(!RFC3339.isValid(invalid), "\(invalid)")
        }
    }
}
