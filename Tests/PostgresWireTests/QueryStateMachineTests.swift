import NIOCore
import Testing

@testable import PostgresWire

/// The query state machine fed the message sequences a server sends, including the unusual
/// ones: an error mid-batch, notices and parameter changes mid-query, COPY, a row limit.
@Suite
struct QueryStateMachineTests {
    static let column = BackendMessage.Column(name: "v", tableOID: 0, attribute: 0, typeOID: 25, typeSize: -1, typeModifier: -1, format: 0)

    static func row(_ text: String) -> BackendMessage {
        var bytes = ByteBuffer()
        bytes.writeInteger(Int32(text.utf8.count))
        bytes.writeString(text)
        return .dataRow(.init(count: 1, bytes: bytes))
    }

    static func feed(_ machine: inout QueryStateMachine, _ messages: [BackendMessage]) -> [QueryStateMachine.Action] {
        messages.map { machine.received($0) }
    }

    @Test func aFirstRunParsesDescribesAndAnswersAtReadyForQuery() {
        var machine = QueryStateMachine()
        let actions = Self.feed(
            &machine,
            [
                .parseComplete, .parameterDescription([23]), .rowDescription([Self.column]), .bindComplete, Self.row("a"), Self.row("b"),
                .commandComplete(tag: "SELECT 2"),
            ])
        #expect(actions.allSatisfy { $0 == .none }, "nothing is answered before ReadyForQuery")
        #expect(!machine.isDone)
        let done = machine.received(.readyForQuery(.idle))
        var expected = QueryStateMachine.Result()
        expected.columns = [Self.column]
        expected.parameterTypes = [23]
        expected.rows = [Self.row("a"), Self.row("b")].compactMap { if case .dataRow(let r) = $0 { r } else { nil } }
        expected.tag = "SELECT 2"
        #expect(done == .done(.success(expected), .idle))
        guard case .fail = machine.received(.readyForQuery(.idle)) else {
            Issue.record("a second ReadyForQuery for one Sync was accepted")
            return
        }
    }

    @Test func afterAnErrorEverythingUpToReadyForQueryIsSkipped() {
        var machine = QueryStateMachine()
        let error = BackendMessage.ServerFields([UInt8(ascii: "C"): "23505", UInt8(ascii: "M"): "duplicate key"])
        _ = Self.feed(&machine, [.parseComplete, .bindComplete, .errorResponse(error), Self.row("late"), .commandComplete(tag: "X")])
        #expect(machine.received(.readyForQuery(.failedTransaction)) == .done(.failure(.server(error)), .failedTransaction))
    }

    @Test func noticesParameterChangesAndNotificationsGoOutWithoutEndingTheQuery() {
        var machine = QueryStateMachine()
        let notice = BackendMessage.ServerFields([UInt8(ascii: "M"): "hello"])
        #expect(machine.received(.bindComplete) == .none)
        #expect(machine.received(.noticeResponse(notice)) == .notice(notice))
        #expect(
            machine.received(.parameterStatus(name: "application_name", value: "x"))
                == .parameterChanged(name: "application_name", value: "x"))
        #expect(
            machine.received(.notificationResponse(processID: 1, channel: "c", payload: "p")) == .notification(channel: "c", payload: "p"))
        #expect(machine.received(.commandComplete(tag: "SET")) == .none)
        guard case .done(.success(let result), .idle) = machine.received(.readyForQuery(.idle)) else {
            Issue.record("the query did not end well")
            return
        }
        #expect(result.tag == "SET")
    }

    @Test func aRowLimitReachedOnTheServerFailsTheQuery() {
        var machine = QueryStateMachine(rowLimit: 2)
        _ = Self.feed(&machine, [.bindComplete, Self.row("1"), Self.row("2"), .portalSuspended])
        #expect(machine.received(.readyForQuery(.idle)) == .done(.failure(.rowLimit(2)), .idle))
    }

    @Test func copyFromStdinIsAnsweredWithCopyFailAndCopyToIsReadToItsEnd() {
        var copyIn = QueryStateMachine()
        guard case .write(var bytes) = copyIn.received(.copyInResponse) else {
            Issue.record("no CopyFail")
            return
        }
        #expect(bytes.readInteger(as: UInt8.self) == UInt8(ascii: "f"))
        let refusal = BackendMessage.ServerFields([UInt8(ascii: "C"): "57014", UInt8(ascii: "M"): "COPY from stdin failed"])
        #expect(copyIn.received(.errorResponse(refusal)) == .none)
        #expect(copyIn.received(.readyForQuery(.idle)) == .done(.failure(.copyRefused), .idle))

        var copyOut = QueryStateMachine()
        _ = Self.feed(&copyOut, [.bindComplete, .copyOutResponse, .copyData, .copyData, .copyDone, .commandComplete(tag: "COPY 2")])
        #expect(copyOut.received(.readyForQuery(.idle)) == .done(.failure(.copyRefused), .idle))
    }

    @Test func messagesThatCannotComeMidQueryBreakTheConnection() {
        for message: BackendMessage in [.authentication(.ok), .backendKeyData(.init(processID: 1, secretKey: 2)), .copyData] {
            var machine = QueryStateMachine()
            guard case .fail = machine.received(message) else {
                Issue.record("\(message) was accepted mid-query")
                continue
            }
        }
    }
}
