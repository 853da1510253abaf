import ControlProtocol
import PoolCore
import Testing

func decode(_ line: String) -> Result<ControlRequest, RequestError> {
    RequestDecoder.decode(Array(line.utf8))
}

/// The decoded request, or nil (recording an issue) when the line was refused.
func request(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) -> ControlRequest? {
    switch decode(line) {
    case .success(let request): return request
    case .failure(let error):
        Issue.record("\(line) was refused: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The refusal, or nil (recording an issue) when the line decoded.
func refusal(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) -> RequestError? {
    refusal(bytes: Array(line.utf8), sourceLocation: sourceLocation)
}

func refusal(bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> RequestError? {
    switch RequestDecoder.decode(bytes) {
    case .success(let request):
        Issue.record("\(bytes) decoded to \(request)", sourceLocation: sourceLocation)
        return nil
    case .failure(let error): return error
    }
}

let validOps =
    "ping, status, pools, jobs, stats, metrics, run, cancel, pause, resume, resize, reload, drain, enqueue, queues, job_status, job_cancel"

@Suite("Request decoding")
struct RequestDecoderTests {

    // MARK: Lines that are not requests

    @Test("a line that is not JSON is bad_request with a null id, saying where")
    func notJSON() {
        let error = refusal(#"{"id":1, "op" "ping"}"#)
        #expect(error == RequestError(id: nil, code: .badRequest, message: "not valid JSON: expected ':' after key at byte 14"))
        #expect(refusal("{")?.message.hasPrefix("not valid JSON: ") == true)
        #expect(refusal(#"{"id":1,"op":"ping"} x"#)?.id == nil)
    }

    @Test("a line that is not UTF-8 is bad_request with a null id, saying so")
    func notUTF8() {
        let inString = Array(#"{"id":1,"op":"ping","x":""#.utf8) + [0xFF] + Array(#""}"#.utf8)
        let error = refusal(bytes: inString)
        #expect(error == RequestError(id: nil, code: .badRequest, message: "not valid UTF-8 at byte 25 (byte 0xFF never appears in UTF-8)"))
        let outside = Array(#"{"id":1,"op":"ping"}"#.utf8) + [0xC0, 0x80]
        #expect(refusal(bytes: outside)?.message.hasPrefix("not valid UTF-8 at byte 20 (overlong encoding") == true)
        let surrogate = Array(#"{"op":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)
        #expect(refusal(bytes: surrogate)?.message.contains("surrogate") == true)
    }

    @Test("a lone surrogate escape is bad_request", arguments: [#""\ud800""#, #""\udc00x""#])
    func loneSurrogate(text: String) {
        let error = refusal(#"{"id":1,"op":"run","pool":"p","sql":"SELECT ?","params":["# + text + "]}")
        #expect(error?.code == .badRequest)
        #expect(error?.id == nil)
        #expect(error?.message.contains("lone surrogate") == true)
    }

    @Test("a JSON value that is not an object is bad_request", arguments: ["[1]", #""ping""#, "1", "null", "true"])
    func notAnObject(line: String) {
        let error = refusal(line)
        #expect(error?.id == nil && error?.code == .badRequest)
        #expect(error?.message.hasPrefix("a request must be a JSON object") == true)
    }

    @Test("duplicate keys are bad_request")
    func duplicateKeys() {
        #expect(refusal(#"{"id":1,"op":"ping","op":"ping"}"#)?.message == #"not valid JSON: duplicate key "op" at byte 20"#)
    }

    // MARK: id

    @Test("id: an integer or a string, echoed with its type; absent is nil")
    func ids() {
        #expect(request(#"{"id":7,"op":"ping"}"#)?.id == .int(7))
        #expect(request(#"{"id":-9223372036854775808,"op":"ping"}"#)?.id == .int(.min))
        #expect(request(#"{"id":"7","op":"ping"}"#)?.id == .string("7"))
        #expect(request(#"{"id":"","op":"ping"}"#)?.id == .string(""))
        #expect(request(#"{"op":"ping"}"#)?.id == nil)
        #expect(request(#"{"op":"ping","id":"a\n\u00e9"}"#)?.id == .string("a\né"))
        let max = String(repeating: "x", count: 256)
        #expect(request(#"{"id":""# + max + #"","op":"ping"}"#)?.id == .string(max))
        let maxWide = String(repeating: "é", count: 128)
        #expect(request(#"{"id":""# + maxWide + #"","op":"ping"}"#)?.id == .string(maxWide))
    }

    @Test(
        "any other id is bad_request with a null id",
        arguments: [
            "1.5", "1e2", "true", "null", "[1]", #"{"a":1}"#, "9223372036854775808",
            "\"" + String(repeating: "x", count: 257) + "\"", "\"" + String(repeating: "é", count: 129) + "\"",
        ]
    )
    func badIDs(id: String) {
        let error = refusal(#"{"id":"# + id + #","op":"ping"}"#)
        #expect(error?.id == nil)
        #expect(error?.code == .badRequest)
        #expect(error?.message.hasPrefix(#""id" must be an integer or a string of at most 256 bytes (got "#) == true)
    }

    @Test("the id is read before anything else, so later errors carry it")
    func idFirst() {
        #expect(refusal(#"{"op":"bogus","id":7}"#)?.id == .int(7))
        #expect(refusal(#"{"id":"x"}"#)?.id == .string("x"))
        #expect(refusal(#"{"id":"x","op":"ping","extra":1}"#)?.id == .string("x"))
        #expect(refusal(#"{"id":8,"op":"run","pool":""}"#)?.id == .int(8))
        #expect(refusal(#"{"op":7,"id":9}"#)?.id == .int(9))
    }

    // MARK: op

    @Test("op: missing or not a string is bad_request; an unknown name is unknown_op listing the ops")
    func ops() {
        #expect(
            refusal(#"{"id":1}"#)
                == RequestError(id: .int(1), code: .badRequest, message: #"missing "op": a request needs "op", one of "# + validOps))
        #expect(
            refusal(#"{"id":1,"op":3}"#)
                == RequestError(id: .int(1), code: .badRequest, message: #""op" must be a string, one of "# + validOps + " (got 3)"))
        #expect(refusal(#"{"op":null}"#)?.code == .badRequest)
        #expect(
            refusal(#"{"id":1,"op":"pign"}"#)
                == RequestError(
                    id: .int(1), code: .unknownOp, message: #"unknown op "pign" (did you mean "ping"?); valid ops: "# + validOps))
        #expect(
            refusal(#"{"op":"launch"}"#)
                == RequestError(id: nil, code: .unknownOp, message: #"unknown op "launch"; valid ops: "# + validOps))
        #expect(refusal(#"{"op":"PING"}"#)?.message.contains(#"did you mean "ping"?"#) == true)
        #expect(refusal(#"{"op":""}"#)?.code == .unknownOp)
    }

    @Test(
        "the ops without fields",
        arguments: [("ping", Command.ping), ("status", .status), ("pools", .pools), ("metrics", .metrics), ("reload", .reload)])
    func fieldlessOps(name: String, command: Command) {
        let decoded = request(#"{"id":3,"op":""# + name + #""}"#)
        #expect(decoded == ControlRequest(id: .int(3), command: command))
        #expect(decoded?.op.rawValue == name)
        let error = refusal(#"{"id":3,"op":""# + name + #"","pool":"main"}"#)
        #expect(
            error
                == RequestError(
                    id: .int(3), code: .badRequest,
                    message: #"unknown field "pool" for op ""# + name + #"" (it takes no fields besides "id" and "op")"#,
                    op: Op(rawValue: name)))
    }

    @Test("an error found after the op was read names the op, so authorization can come first")
    func errorsCarryTheOp() {
        #expect(refusal(#"{"id":1,"op":"drain","pool":7}"#)?.op == .drain)
        #expect(refusal(#"{"id":1,"op":"run","pool":"main","sql":"x","bogus":1}"#)?.op == .run)
        #expect(refusal(#"{"id":1,"op":"cancel"}"#)?.op == .cancel)
        #expect(refusal(#"{"id":1}"#)?.op == nil)
        #expect(refusal(#"{"id":1,"op":"launch"}"#)?.op == nil)
        #expect(refusal(#"{"id":1,"op":7}"#)?.op == nil)
    }

    // MARK: Unknown fields

    @Test("unknown fields are refused by name, with a suggestion when one is close")
    func unknownFields() {
        #expect(
            refusal(#"{"id":1,"op":"run","pool":"main","sql":"SELECT 1","timout_ms":5}"#)
                == RequestError(
                    id: .int(1), code: .badRequest,
                    message: #"unknown field "timout_ms" for op "run" (did you mean "timeout_ms"?)"#, op: .run))
        #expect(refusal(#"{"op":"jobs","pol":"main"}"#)?.message == #"unknown field "pol" for op "jobs" (did you mean "pool"?)"#)
        #expect(refusal(#"{"op":"jobs","Pool":"main"}"#)?.message == #"unknown field "Pool" for op "jobs" (did you mean "pool"?)"#)
        #expect(
            refusal(#"{"op":"run","pool":"p","sql":"x","trasnaction":true}"#)?.message.contains(#"did you mean "transaction"?"#) == true)
        #expect(
            refusal(#"{"op":"jobs","owner":"me"}"#)?.message
                == #"unknown field "owner" for op "jobs" (it takes "pool", besides "id" and "op")"#)
        #expect(refusal(#"{"op":"ping","ID":1}"#)?.message == #"unknown field "ID" for op "ping" (did you mean "id"?)"#)
        // A field already present is not suggested again.
        #expect(refusal(#"{"op":"jobs","pool":"a","pools":"b"}"#)?.message.contains("did you mean") == false)
        // A field of another op is still unknown here.
        #expect(refusal(#"{"op":"cancel","job":1,"pool":"main"}"#)?.message.hasPrefix(#"unknown field "pool" for op "cancel""#) == true)
        #expect(refusal(#"{"op":"drain","min":1}"#)?.code == .badRequest)
        // Long names are shown shortened.
        let long = String(repeating: "k", count: 5000)
        let message = refusal(#"{"op":"ping",""# + long + #"":1}"#)?.message ?? ""
        #expect(message.utf8.count < 300)
    }

    // MARK: Observer and operator ops

    @Test("jobs, stats, pause and resume take an optional pool", arguments: ["jobs", "stats", "pause", "resume"])
    func optionalPool(op: String) {
        func command(_ pool: String?) -> Command {
            switch op {
            case "jobs": .jobs(pool: pool)
            case "stats": .stats(pool: pool)
            case "pause": .pause(pool: pool)
            default: .resume(pool: pool)
            }
        }
        #expect(request(#"{"op":""# + op + #""}"#)?.command == command(nil))
        #expect(request(#"{"op":""# + op + #"","pool":"main"}"#)?.command == command("main"))
        #expect(refusal(#"{"op":""# + op + #"","pool":""}"#)?.message == #""pool" must be a non-empty string naming a pool (got "")"#)
        #expect(refusal(#"{"op":""# + op + #"","pool":3}"#)?.message == #""pool" must be a non-empty string naming a pool (got 3)"#)
        #expect(refusal(#"{"op":""# + op + #"","pool":null}"#)?.code == .badRequest)
    }

    @Test("cancel takes an integer job id")
    func cancel() {
        #expect(request(#"{"id":1,"op":"cancel","job":1532}"#)?.command == .cancel(job: 1532))
        #expect(refusal(#"{"id":1,"op":"cancel"}"#)?.message == #"cancel needs "job": the id of the job to cancel"#)
        #expect(refusal(#"{"op":"cancel","job":"1532"}"#)?.message == #""job" must be an integer job id (got "1532")"#)
        #expect(refusal(#"{"op":"cancel","job":1.0}"#)?.message == #""job" must be an integer job id (got 1.0)"#)
        #expect(refusal(#"{"op":"cancel","job":[1]}"#)?.message == #""job" must be an integer job id (got an array)"#)
    }

    @Test("resize takes a pool and min, max or both, non-negative")
    func resize() {
        #expect(request(#"{"op":"resize","pool":"main","min":1}"#)?.command == .resize(pool: "main", min: 1, max: nil))
        #expect(request(#"{"op":"resize","pool":"main","max":8}"#)?.command == .resize(pool: "main", min: nil, max: 8))
        #expect(request(#"{"op":"resize","pool":"main","min":0,"max":0}"#)?.command == .resize(pool: "main", min: 0, max: 0))
        #expect(refusal(#"{"op":"resize","pool":"main"}"#)?.message == #"resize needs "min", "max" or both"#)
        #expect(refusal(#"{"op":"resize","min":1}"#)?.message == #"resize needs "pool": the name of the pool to resize"#)
        #expect(refusal(#"{"op":"resize","pool":"main","min":-1}"#)?.message == #""min" must be a non-negative integer (got -1)"#)
        #expect(refusal(#"{"op":"resize","pool":"main","max":2.5}"#)?.message == #""max" must be a non-negative integer (got 2.5)"#)
        #expect(refusal(#"{"op":"resize","pool":"main","max":"8"}"#)?.code == .badRequest)
        #expect(refusal(#"{"op":"resize","pool":"main","min":5,"max":2}"#)?.message == #""min" (5) must not exceed "max" (2)"#)
        #expect(refusal(#"{"op":"resize","pool":"","min":1}"#)?.code == .badRequest)
    }

    @Test("drain takes an optional pool and stop, default false")
    func drain() {
        #expect(request(#"{"op":"drain"}"#)?.command == .drain(pool: nil, stop: false))
        #expect(request(#"{"op":"drain","stop":true}"#)?.command == .drain(pool: nil, stop: true))
        #expect(request(#"{"op":"drain","pool":"pg","stop":false}"#)?.command == .drain(pool: "pg", stop: false))
        #expect(refusal(#"{"op":"drain","stop":"yes"}"#)?.message == #""stop" must be true or false (got "yes")"#)
        #expect(refusal(#"{"op":"drain","stop":1}"#)?.message == #""stop" must be true or false (got 1)"#)
    }

    // MARK: run (SQL)

    @Test("run with sql: pool, statement, params of every scalar type, transaction, timeout")
    func runSQL() {
        let line =
            #"{"id":7,"op":"run","pool":"main","sql":"SELECT ?1 + 1","params":[41,1.5,"s",true,null,{"base64":"AAH/"}],"transaction":true,"#
            + #""timeout_ms":2000}"#
        let expected = ControlRequest(
            id: .int(7),
            command: .runSQL(
                pool: "main",
                statements: [
                    SQLStatement(
                        sql: "SELECT ?1 + 1", params: [.int(41), .double(1.5), .text("s"), .bool(true), .null, .blob([0, 1, 255])])
                ],
                isBatch: false, transaction: true, timeoutMs: 2000))
        #expect(request(line) == expected)
        #expect(request(line)?.op == .run)
        #expect(
            request(#"{"op":"run","pool":"main","sql":"SELECT 1"}"#)?.command
                == .runSQL(pool: "main", statements: [SQLStatement(sql: "SELECT 1")], isBatch: false, transaction: false, timeoutMs: nil))
        #expect(request(#"{"op":"run","pool":"main","sql":"x","params":[]}"#) != nil)
        #expect(
            request(#"{"op":"run","pool":"main","sql":"x","params":[{"base64":""}]}"#)?.command
                == .runSQL(
                    pool: "main", statements: [SQLStatement(sql: "x", params: [.blob([])])], isBatch: false, transaction: false,
                    timeoutMs: nil))
    }

    @Test("run with batch: entries with their own params")
    func runBatch() {
        let line =
            #"{"op":"run","pool":"main","batch":[{"sql":"INSERT INTO t VALUES (?)","params":[1]},{"sql":"DELETE FROM t"}],"#
            + #""transaction":true}"#
        #expect(
            request(line)?.command
                == .runSQL(
                    pool: "main",
                    statements: [SQLStatement(sql: "INSERT INTO t VALUES (?)", params: [.int(1)]), SQLStatement(sql: "DELETE FROM t")],
                    isBatch: true, transaction: true, timeoutMs: nil))
        #expect(
            request(#"{"op":"run","pool":"p","batch":[{"sql":"x"}]}"#)?.command
                == .runSQL(pool: "p", statements: [SQLStatement(sql: "x")], isBatch: true, transaction: false, timeoutMs: nil))
    }

    @Test(
        "run (SQL) refusals say what is wrong",
        arguments: [
            (
                #"{"op":"run","pool":"p","sql":"x","batch":[{"sql":"y"}]}"#,
                #""sql" and "batch" cannot both be given: send one statement as "sql" or several as "batch""#
            ),
            (
                #"{"op":"run","pool":"p"}"#,
                #"run needs "pool" and "sql" (or "batch") for a SQL pool, "pool" and "input" for an exec pool, or "job" for a named job"#
            ),
            (
                #"{"op":"run"}"#,
                #"run needs "pool" and "sql" (or "batch") for a SQL pool, "pool" and "input" for an exec pool, or "job" for a named job"#
            ),
            (
                #"{"op":"run","pool":"p","batch":[{"sql":"y"}],"params":[1]}"#,
                #""params" cannot be used with "batch": give each entry its own, as in {"sql": …, "params": […]}"#
            ),
            (#"{"op":"run","sql":"x"}"#, #"run needs "pool": the pool to run the SQL on"#),
            (#"{"op":"run","pool":"","sql":"x"}"#, #""pool" must be a non-empty string naming a pool (got "")"#),
            (#"{"op":"run","pool":"p","sql":""}"#, #""sql" must be a non-empty string of SQL (got "")"#),
            (#"{"op":"run","pool":"p","sql":["x"]}"#, #""sql" must be a non-empty string of SQL (got an array)"#),
            (
                #"{"op":"run","pool":"p","sql":"x","params":{"a":1}}"#,
                #""params" must be an array of scalars or {"base64": …} blobs (got an object)"#
            ),
            (#"{"op":"run","pool":"p","sql":"x","params":[1,2,[3]]}"#, #"params[2] must be a scalar or {"base64": …} (got an array)"#),
            (
                #"{"op":"run","pool":"p","sql":"x","params":[{"b64":"AA=="}]}"#,
                #"params[0] must be a scalar or {"base64": …} (got an object)"#
            ),
            (
                #"{"op":"run","pool":"p","sql":"x","params":[{"base64":"AA==","x":1}]}"#,
                #"params[0] must be a scalar or {"base64": …} (got an object)"#
            ),
            (#"{"op":"run","pool":"p","sql":"x","params":[{}]}"#, #"params[0] must be a scalar or {"base64": …} (got an object)"#),
            (#"{"op":"run","pool":"p","sql":"x","params":[{"base64":7}]}"#, #"params[0].base64 must be a string of base64 (got 7)"#),
            (
                #"{"op":"run","pool":"p","sql":"x","params":[{"base64":"AA="}]}"#,
                #"params[0].base64 is not valid base64 (standard alphabet A-Z a-z 0-9 + /, padded with = to a multiple of 4)"#
            ),
            (#"{"op":"run","pool":"p","sql":"x","timeout_ms":"fast"}"#, #""timeout_ms" must be an integer ≥ 1 (got "fast")"#),
            (#"{"op":"run","pool":"p","sql":"x","timeout_ms":0}"#, #""timeout_ms" must be an integer ≥ 1 (got 0)"#),
            (#"{"op":"run","pool":"p","sql":"x","timeout_ms":-5}"#, #""timeout_ms" must be an integer ≥ 1 (got -5)"#),
            (#"{"op":"run","pool":"p","sql":"x","timeout_ms":1.5}"#, #""timeout_ms" must be an integer ≥ 1 (got 1.5)"#),
            (#"{"op":"run","pool":"p","sql":"x","timeout_ms":null}"#, #""timeout_ms" must be an integer ≥ 1 (got null)"#),
            (#"{"op":"run","pool":"p","sql":"x","transaction":"yes"}"#, #""transaction" must be true or false (got "yes")"#),
            (#"{"op":"run","pool":"p","batch":[]}"#, #""batch" must not be empty: give at least one {"sql": …, "params": […]}"#),
            (
                #"{"op":"run","pool":"p","batch":"x"}"#,
                #""batch" must be a non-empty array of {"sql": …, "params": […]} objects (got "x")"#
            ),
            (#"{"op":"run","pool":"p","batch":[{"sql":"x"},"y"]}"#, #"batch[1] must be an object {"sql": …, "params": […]} (got "y")"#),
            (#"{"op":"run","pool":"p","batch":[{"sql":"x"},{"sqll":"y"}]}"#, #"unknown field "sqll" in batch[1] (did you mean "sql"?)"#),
            (
                #"{"op":"run","pool":"p","batch":[{"sql":"x","timeout_ms":1}]}"#,
                #"unknown field "timeout_ms" in batch[0] (an entry takes "sql" and "params")"#
            ),
            (#"{"op":"run","pool":"p","batch":[{"params":[1]}]}"#, #"batch[0] needs "sql""#),
            (#"{"op":"run","pool":"p","batch":[{"sql":7}]}"#, #"batch[0].sql must be a non-empty string of SQL (got 7)"#),
            (
                #"{"op":"run","pool":"p","batch":[{"sql":"x"},{"sql":"y","params":[[]]}]}"#,
                #"batch[1].params[0] must be a scalar or {"base64": …} (got an array)"#
            ),
            (
                #"{"op":"run","pool":"p","batch":[{"sql":"y","params":1}]}"#,
                #""batch[0].params" must be an array of scalars or {"base64": …} blobs (got 1)"#
            ),
        ]
    )
    func runSQLRefusals(line: String, message: String) {
        let error = refusal(line)
        #expect(error?.code == .badRequest)
        #expect(error?.message == message)
    }

    // MARK: run (named, exec)

    @Test("run with job: a named job with params and timeout")
    func runNamed() {
        #expect(
            request(#"{"id":"n","op":"run","job":"purge","params":["2024-01-01",{"base64":"Zm9v"}],"timeout_ms":100}"#)
                == ControlRequest(
                    id: .string("n"),
                    command: .runNamed(job: "purge", params: [.text("2024-01-01"), .blob(Array("foo".utf8))], timeoutMs: 100)))
        #expect(request(#"{"op":"run","job":"purge"}"#)?.command == .runNamed(job: "purge", params: [], timeoutMs: nil))
    }

    @Test("a named job refuses pool, sql, batch, input and transaction", arguments: ["pool", "sql", "batch", "input", "transaction"])
    func runNamedRefusals(field: String) {
        let value = field == "transaction" ? "true" : field == "batch" ? #"[{"sql":"x"}]"# : #""x""#
        let error = refusal(#"{"id":2,"op":"run","job":"purge",""# + field + #"":"# + value + "}")
        #expect(
            error
                == RequestError(
                    id: .int(2), code: .badRequest,
                    message: "\"\(field)\" is not allowed with \"job\": a named job takes its pool, SQL and transaction from the config",
                    op: .run))
    }

    @Test("a named job's name is a non-empty string")
    func runNamedName() {
        #expect(refusal(#"{"op":"run","job":""}"#)?.message == #""job" must be a non-empty string naming a configured job (got "")"#)
        #expect(refusal(#"{"op":"run","job":12}"#)?.message == #""job" must be a non-empty string naming a configured job (got 12)"#)
        #expect(
            refusal(#"{"op":"run","job":"purge","params":[[1]]}"#)?.message
                == #"params[0] must be a scalar or {"base64": …} (got an array)"#)
    }

    @Test("run with input: an exec job takes any JSON")
    func runExec() {
        #expect(
            request(#"{"op":"run","pool":"workers","input":{"task":"resize","sizes":[1,2]},"timeout_ms":50}"#)?.command
                == .runExec(pool: "workers", input: ["task": "resize", "sizes": [1, 2]], timeoutMs: 50))
        #expect(request(#"{"op":"run","pool":"workers","input":null}"#)?.command == .runExec(pool: "workers", input: .null, timeoutMs: nil))
        #expect(
            request(#"{"op":"run","pool":"workers","input":"text"}"#)?.command == .runExec(pool: "workers", input: "text", timeoutMs: nil))
    }

    @Test("an exec job refuses sql, batch, params and transaction", arguments: ["sql", "batch", "params", "transaction"])
    func runExecRefusals(field: String) {
        let error = refusal(#"{"op":"run","pool":"w","input":1,""# + field + #"":true}"#)
        #expect(error?.message == "\"\(field)\" is not allowed with \"input\": an exec job takes \"pool\", \"input\" and \"timeout_ms\"")
        #expect(refusal(#"{"op":"run","input":1}"#)?.message == #"run with "input" needs "pool": the exec pool to send it to"#)
        #expect(refusal(#"{"op":"run","pool":"w","input":1,"timeout_ms":0}"#)?.code == .badRequest)
    }

    // MARK: Robustness

    @Test("mutated requests never crash and are only ever refused as bad_request or unknown_op")
    func mutations() {
        let seeds = [
            #"{"id":7,"op":"run","pool":"main","sql":"SELECT ?1","params":[41,{"base64":"AA=="}],"timeout_ms":2000}"#,
            #"{"id":"x","op":"run","pool":"p","batch":[{"sql":"a","params":[1]},{"sql":"b"}],"transaction":true}"#,
            #"{"op":"resize","pool":"main","min":1,"max":4}"#,
            #"{"id":1,"op":"run","job":"purge","params":["\u00e9\ud83d\ude00"]}"#,
        ].map { Array($0.utf8) }
        var rng = SplitMix64(seed: 99)
        var decoded = 0
        for _ in 0..<20_000 {
            var bytes = seeds[Int(rng.next() % UInt64(seeds.count))]
            for _ in 0...(rng.next() % 4) {
                let position = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.remove(at: position)
                default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: position)
                }
                if bytes.isEmpty { bytes = [0x20] }
            }
            switch RequestDecoder.decode(bytes) {
            case .success: decoded += 1
            case .failure(let error):
                #expect(error.code == .badRequest || error.code == .unknownOp)
                #expect(!error.message.isEmpty)
            }
        }
        #expect(decoded > 0)
    }
}
