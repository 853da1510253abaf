import NIOCore

/// Several statements' Bind/Execute sent in one write with one Sync, as a pure state machine:
/// fed the server's messages, it says which statement each row and tag belongs to, and when the
/// pipeline is over. The statements run in one implicit transaction (unless they open their
/// own): after an error the server skips the rest up to the Sync, and nothing of the pipeline
/// commits. Row limits are not used here (each Execute asks for every row).
package struct PipelineStateMachine: Sendable {
    /// Why a pipeline failed: the statement at `index`, and what went wrong with it. An index
    /// equal to the number of statements is the implicit transaction's commit (a deferred
    /// constraint, say): every statement had completed.
    package struct Failure: Error, Sendable, Equatable {
        package var index: Int
        package var failure: QueryStateMachine.Failure
    }

    package enum Action: Sendable, Equatable {
        case none
        /// Send this (CopyFail).
        case write(ByteBuffer)
        case notice(BackendMessage.ServerFields)
        case notification(channel: String, payload: String)
        case parameterChanged(name: String, value: String)
        /// A row of the statement at `index`.
        case row(index: Int, BackendMessage.DataRow)
        /// The pipeline is over: every statement's CommandComplete tag, or the failure.
        case done(Result<[String], Failure>, BackendMessage.TransactionStatus)
        /// The server broke the protocol: close the connection.
        case fail(WireError)
    }

    private let count: Int
    private var tags: [String] = []
    private var failure: Failure?
    private var inCopyOut = false
    package private(set) var isDone = false

    /// `count`: the statements sent.
    package init(count: Int) {
        self.count = count
        tags.reserveCapacity(count)
    }

    private var index: Int { tags.count }

    package mutating func received(_ message: BackendMessage) -> Action {
        guard !isDone else { return .fail(WireError("\(message) after the pipeline's ReadyForQuery")) }
        switch message {
        case .noticeResponse(let fields):
            return .notice(fields)
        case .notificationResponse(_, let channel, let payload):
            return .notification(channel: channel, payload: payload)
        case .parameterStatus(let name, let value):
            return .parameterChanged(name: name, value: value)
        case .readyForQuery(let status):
            isDone = true
            if let failure { return .done(.failure(failure), status) }
            guard tags.count == count else {
                return .fail(WireError("the pipeline of \(count) statements ended after \(tags.count)"))
            }
            return .done(.success(tags), status)
        case .errorResponse(let fields):
            if failure == nil { failure = Failure(index: index, failure: .server(fields)) }
            inCopyOut = false
            return .none
        default:
            break
        }
        if failure != nil, !inCopyOut { return .none }  // skipping to ReadyForQuery
        switch message {
        case .bindComplete, .parseComplete, .closeComplete, .noData, .rowDescription, .parameterDescription:
            return .none
        case .dataRow(let row):
            guard index < count else { return .fail(WireError("a row past the pipeline's \(count) statements")) }
            return .row(index: index, row)
        case .commandComplete(let tag):
            inCopyOut = false
            guard index < count else { return .fail(WireError("a CommandComplete past the pipeline's \(count) statements")) }
            tags.append(tag)
        case .emptyQueryResponse:
            guard index < count else { return .fail(WireError("an EmptyQueryResponse past the pipeline's \(count) statements")) }
            tags.append("")
        case .portalSuspended:
            return .fail(WireError("PortalSuspended in a pipeline that asked for every row"))
        case .copyInResponse:
            failure = Failure(index: index, failure: .copyRefused)
            var buffer = ByteBuffer()
            Frontend.copyFail("poold does not run COPY … FROM STDIN", into: &buffer)
            Frontend.sync(into: &buffer)
            return .write(buffer)
        case .copyOutResponse, .copyBothResponse:
            failure = Failure(index: index, failure: .copyRefused)
            inCopyOut = true
        case .copyData, .copyDone:
            guard inCopyOut else { return .fail(WireError("\(message) outside a COPY")) }
        case .authentication, .backendKeyData, .negotiateProtocolVersion:
            return .fail(WireError("\(message) during a pipeline"))
        case .noticeResponse, .notificationResponse, .parameterStatus, .readyForQuery, .errorResponse:
            break  // handled above
        }
        return .none
    }
}
