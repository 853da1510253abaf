import NIOCore
import Testing

@testable import PostgresWire

/// Several statements answered after one Sync: rows and tags go to the statement they belong
/// to, the first error is the pipeline's answer, and it ends at ReadyForQuery only.
struct PipelineStateMachineTests {
    static func feed(_ machine: inout PipelineStateMachine, _ messages: [BackendMessage]) -> [PipelineStateMachine.Action] {
        messages.map { machine.received($0) }
    }

    @Test func rowsAndTagsGoToTheirStatements() throws {
        var machine = PipelineStateMachine(count: 3)
        let row = QueryStateMachineTests.row("x")
        let actions = Self.feed(
            &machine,
            [
                .bindComplete, .commandComplete(tag: "INSERT 0 1"), .bindComplete, row, row, .commandComplete(tag: "SELECT 2"),
                .noticeResponse(.init([UInt8(ascii: "M"): "hi"])), .bindComplete, .emptyQueryResponse,
            ])
        #expect(actions.filter { if case .row(index: 1, _) = $0 { true } else { false } }.count == 2)
        #expect(!actions.contains { if case .row(index: 0, _) = $0 { true } else { false } })
        #expect(actions.contains(.notice(.init([UInt8(ascii: "M"): "hi"]))))
        #expect(machine.received(.readyForQuery(.idle)) == .done(.success(["INSERT 0 1", "SELECT 2", ""]), .idle))
        #expect(machine.isDone)
        guard case .fail = machine.received(.readyForQuery(.idle)) else {
            Issue.record("a second ReadyForQuery was taken")
            return
        }
    }

    @Test func theFirstErrorIsTheAnswerAndTheRestIsSkipped() {
        var machine = PipelineStateMachine(count: 3)
        let error = BackendMessage.ServerFields([UInt8(ascii: "C"): "22012", UInt8(ascii: "M"): "division by zero"])
        let actions = Self.feed(
            &machine,
            [
                .bindComplete, .commandComplete(tag: "INSERT 0 1"), .bindComplete, .errorResponse(error),
                QueryStateMachineTests.row("ignored"), .errorResponse(.init([UInt8(ascii: "C"): "XX000"])),
            ])
        #expect(actions.allSatisfy { $0 == .none }, "after the error nothing is handed out: \(actions)")
        #expect(machine.received(.readyForQuery(.idle)) == .done(.failure(.init(index: 1, failure: .server(error))), .idle))
    }

    @Test func anErrorAfterTheLastStatementIsTheCommits() {
        var machine = PipelineStateMachine(count: 1)
        let deferred = BackendMessage.ServerFields([UInt8(ascii: "C"): "23503", UInt8(ascii: "M"): "deferred"])
        _ = Self.feed(&machine, [.bindComplete, .commandComplete(tag: "INSERT 0 1"), .errorResponse(deferred)])
        #expect(machine.received(.readyForQuery(.idle)) == .done(.failure(.init(index: 1, failure: .server(deferred))), .idle))
    }

    @Test func fewerOrMoreAnswersThanStatementsBreakTheProtocol() {
        var short = PipelineStateMachine(count: 2)
        _ = short.received(.commandComplete(tag: "SELECT 1"))
        guard case .fail = short.received(.readyForQuery(.idle)) else {
            Issue.record("a pipeline of 2 ended after 1")
            return
        }
        var long = PipelineStateMachine(count: 1)
        _ = long.received(.commandComplete(tag: "SELECT 1"))
        guard case .fail = long.received(QueryStateMachineTests.row("extra")) else {
            Issue.record("a row past the last statement was taken")
            return
        }
    }

    @Test func copyIsRefusedInAPipeline() {
        var machine = PipelineStateMachine(count: 2)
        _ = machine.received(.commandComplete(tag: "SELECT 1"))
        guard case .write = machine.received(.copyInResponse) else {
            Issue.record("no CopyFail")
            return
        }
        _ = machine.received(.errorResponse(.init([UInt8(ascii: "C"): "57014"])))
        #expect(machine.received(.readyForQuery(.idle)) == .done(.failure(.init(index: 1, failure: .copyRefused)), .idle))
    }
}
