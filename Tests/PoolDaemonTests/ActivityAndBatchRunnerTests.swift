import ControlProtocol
import PoolCore
import PoolKit
import PoolTestSupport
import Synchronization
import Testing

@testable import ControlSocket
@testable import DaemonRuntime

/// The events stopping waits on, on a mock clock: a quiet period raced against activity.
@Suite(.timeLimit(.minutes(1)))
struct ActivityTests {
    @Test func quietOnlyWhenNothingHappensForTheWholePeriod() async throws {
        let clock = MockClock()
        let activity = Activity()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { try await activity.isQuiet(for: .milliseconds(50), clock: clock) }
            await clock.waitForSleepers(1)
            activity.happened()
            let happened = try await group.next()
            #expect(happened == false, "something happened: not quiet")

            group.addTask { try await activity.isQuiet(for: .milliseconds(50), clock: clock) }
            await clock.waitForSleepers(1)
            clock.advance(by: .milliseconds(49))
            activity.happened()
            let early = try await group.next()
            #expect(early == false, "49 ms is not the period")

            group.addTask { try await activity.isQuiet(for: .milliseconds(50), clock: clock) }
            await clock.waitForSleepers(1)
            clock.advance(by: .milliseconds(50))
            let quiet = try await group.next()
            #expect(quiet == true)
        }
        activity.happened()  // with nobody waiting: nothing to wake, nothing kept
    }
}

/// The one batch runner both SQL backends use, against a connection that fails where a test
/// says (fault injection): whatever fails, the transaction is rolled back before the error
/// comes out, and the error names the statement.
@Suite
struct BatchRunnerTests {
    final class FakeConnection: StatementConnection, @unchecked Sendable {
        var log: [String] = []
        var inTransaction = false
        var failAt: String?

        func step(_ what: String) throws {
            log.append(what)
            if what == failAt { throw FakeFailure(what: what) }
        }

        func execute(_ statement: SQLStatement) async throws -> StatementResult {
            try step(statement.sql)
            if statement.sql == "BEGIN" { inTransaction = true }
            return StatementResult(columns: [], rows: [], affected: nil)
        }

        func begin() async throws {
            try step("begin")
            inTransaction = true
        }

        func commit() async throws {
            try step("commit")
            inTransaction = false
        }

        var isInTransaction: Bool { inTransaction }

        func rollBack(after error: any Error) async throws {
            log.append("rollback")
            inTransaction = false
        }

        func batchFailure(_ error: any Error, index: Int?) -> any Error {
            BatchFailure(index: index, code: .sqlError, message: "\(error)", detail: nil)
        }
    }

    struct FakeFailure: Error, CustomStringConvertible {
        var what: String
        var description: String { "\(what) failed" }
    }

    static let statements = ["a", "b", "c"].map { SQLStatement(sql: $0) }

    @Test func aTransactionCommitsWhenEveryStatementRuns() async throws {
        let connection = FakeConnection()
        let results = try await connection.runBatch(Self.statements, transaction: true)
        #expect(results.count == 3)
        #expect(connection.log == ["begin", "a", "b", "c", "commit"])
    }

    @Test(arguments: ["begin", "b", "commit"])
    func anyFailureRollsBackAndNamesTheStatement(failing: String) async throws {
        let connection = FakeConnection()
        connection.failAt = failing
        let error = await #expect(throws: BatchFailure.self) { try await connection.runBatch(Self.statements, transaction: true) }
        #expect(error?.index == (failing == "b" ? 1 : nil))
        #expect(connection.log.last == "rollback")
        #expect(!connection.inTransaction)
    }

    @Test func aJobThatLeavesItsOwnTransactionOpenIsRolledBackAndFails() async throws {
        let connection = FakeConnection()
        let error = await #expect(throws: BatchFailure.self) {
            try await connection.runBatch([SQLStatement(sql: "BEGIN"), SQLStatement(sql: "a")], transaction: false)
        }
        #expect(error?.code == .badRequest)
        #expect(connection.log == ["BEGIN", "a", "rollback"])
    }

    @Test func withoutATransactionAFailureStillRollsBackWhatIsOpen() async throws {
        let connection = FakeConnection()
        connection.failAt = "b"
        await #expect(throws: BatchFailure.self) { try await connection.runBatch(Self.statements, transaction: false) }
        #expect(connection.log == ["a", "b", "rollback"])
    }
}
