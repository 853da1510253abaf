import ControlProtocol
import PoolCore
import Testing

@Suite("Replies")
struct ReplyTests {

    func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// The reply without its final newline, parsed; nil (recording an issue) when invalid.
    func parsed(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> JSONObject? {
        #expect(bytes.last == UInt8(ascii: "\n"), sourceLocation: sourceLocation)
        #expect(bytes.dropLast().contains(UInt8(ascii: "\n")) == false, sourceLocation: sourceLocation)
        guard case .object(let object)? = try? JSON.parse(Array(bytes.dropLast())) else {
            Issue.record("not a JSON object: \(text(bytes))", sourceLocation: sourceLocation)
            return nil
        }
        return object
    }

    @Test("pong is exactly id and ok, with the id's type kept")
    func pong() {
        #expect(text(Reply.pong(id: nil)) == "{\"id\":null,\"ok\":true}\n")
        #expect(text(Reply.pong(id: .int(7))) == "{\"id\":7,\"ok\":true}\n")
        #expect(text(Reply.pong(id: .int(.min))) == "{\"id\":-9223372036854775808,\"ok\":true}\n")
        #expect(text(Reply.pong(id: .string("7"))) == "{\"id\":\"7\",\"ok\":true}\n")
        #expect(text(Reply.pong(id: .string("a\"b\n"))) == "{\"id\":\"a\\\"b\\n\",\"ok\":true}\n")
        #expect(Reply.pong(id: .int(3)) == Reply.ok(id: .int(3), []))
    }

    @Test("ok replies put the fields after ok, in order")
    func ok() {
        let reply = Reply.ok(
            id: .int(7),
            [
                ("job", 1532), ("columns", ["?1 + 1"]), ("rows", [[42]]), ("affected", nil),
                ("timing", ["queue_us": 3, "acquire_us": 12, "exec_us": 85]),
            ])
        #expect(
            text(reply)
                == #"{"id":7,"ok":true,"job":1532,"columns":["?1 + 1"],"rows":[[42]],"affected":null,"timing":{"queue_us":3,"#
                + #""acquire_us":12,"exec_us":85}}"#
                + "\n")
        let fields: JSONObject = ["min": 1, "max": 8]
        #expect(text(Reply.ok(id: .string("r"), fields: fields)) == "{\"id\":\"r\",\"ok\":true,\"min\":1,\"max\":8}\n")
        #expect(text(Reply.ok(id: nil, fields: [:])) == "{\"id\":null,\"ok\":true}\n")
    }

    @Test("fields named id or ok are skipped, so a reply never has duplicate keys")
    func reservedFields() {
        #expect(text(Reply.ok(id: .int(1), [("id", 2), ("ok", false), ("x", 3)])) == "{\"id\":1,\"ok\":true,\"x\":3}\n")
    }

    @Test("errors: code and message, job only when given, detail only when given")
    func errors() {
        #expect(
            text(Reply.error(id: .int(8), code: .timeout, message: "job 1533 exceeded 2s", job: 1533))
                == #"{"id":8,"ok":false,"job":1533,"error":{"code":"timeout","message":"job 1533 exceeded 2s"}}"# + "\n")
        #expect(
            text(Reply.error(id: nil, code: .badRequest, message: "no"))
                == #"{"id":null,"ok":false,"error":{"code":"bad_request","message":"no"}}"# + "\n")
        #expect(
            text(
                Reply.error(
                    id: .string("q"), code: .sqlError, message: "constraint failed", job: 4,
                    detail: ["sqlite_code": 19, "sqlite_name": "SQLITE_CONSTRAINT"]))
                == #"{"id":"q","ok":false,"job":4,"error":{"code":"sql_error","message":"constraint failed","detail":{"sqlite_code":19,"#
                + #""sqlite_name":"SQLITE_CONSTRAINT"}}}"#
                + "\n")
        #expect(
            text(Reply.error(id: .int(1), code: .sqlError, message: "m", detail: ["index": 2]))
                == #"{"id":1,"ok":false,"error":{"code":"sql_error","message":"m","detail":{"index":2}}}"# + "\n")
        let refusal = RequestError(id: .int(5), code: .unknownOp, message: #"unknown op "x""#)
        #expect(
            text(Reply.error(refusal))
                == #"{"id":5,"ok":false,"error":{"code":"unknown_op","message":"unknown op \"x\""}}"# + "\n")
        #expect(Reply.error(id: .int(2), PoolError(.overloaded, "busy")) == Reply.error(id: .int(2), code: .overloaded, message: "busy"))
        #expect(
            text(Reply.tooLarge())
                == #"{"id":null,"ok":false,"error":{"code":"too_large","#
                + #""message":"request line exceeds 1048576 bytes; the connection will be closed"}}"#
                + "\n")
    }

    @Test("every error code is written as its wire name", arguments: ErrorCode.allCases)
    func codes(code: ErrorCode) {
        let object = parsed(Reply.error(id: nil, code: code, message: "m"))
        #expect(object?["error"] == .object(["code": .string(code.rawValue), "message": "m"]))
    }

    @Test(
        "ids are echoed with their type",
        arguments: [
            RequestID.int(0), .int(-1), .int(.max), .string(""), .string("42"), .string("é😀\u{2028}\"\\"),
            .string(String(repeating: "z", count: 256)),
        ]
    )
    func echoedIDs(id: RequestID) {
        for reply in [Reply.pong(id: id), Reply.ok(id: id, [("a", 1)]), Reply.error(id: id, code: .noSuchPool, message: "m", job: 1)] {
            #expect(parsed(reply)?["id"] == id.jsonValue)
        }
        #expect(parsed(Reply.pong(id: nil))?["id"] == .null)
    }

    @Test("messages with awkward characters survive a round trip through the parser")
    func messageRoundTrip() {
        var generator = ValueGenerator(seed: 11)
        for _ in 0..<500 {
            let message = generator.string() + "\n\u{0}\u{1b}[31m\u{2029}\"}" + generator.string()
            let object = parsed(
                Reply.error(id: .string(generator.string()), code: .backend, message: message, detail: ["m": .string(message)]))
            guard case .object(let error)? = object?["error"] else {
                Issue.record("no error object")
                return
            }
            #expect(error["message"] == .string(message))
            #expect(error["detail"] == .object(["m": .string(message)]))
        }
    }

    @Test("a decoded request's id goes back out unchanged")
    func requestToReply() throws {
        for line in [#"{"id":9007199254740993,"op":"ping"}"#, #"{"id":"abc","op":"ping"}"#, #"{"op":"ping"}"#] {
            let request = try RequestDecoder.decode(Array(line.utf8)).get()
            let reply = try JSON.parse(Array(Reply.pong(id: request.id).dropLast()))
            let sent = try JSON.parse(line)
            guard case .object(let replyObject) = reply, case .object(let sentObject) = sent else {
                Issue.record("not objects")
                return
            }
            #expect(replyObject["id"] == (sentObject["id"] ?? .null))
        }
    }
}
