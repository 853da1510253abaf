import NIOCore

/// One extended-protocol query in flight, as a pure state machine: fed the server's messages
/// in order, it says when the query is done and with what. No I/O and no clock: every rule is
/// a synchronous test, and the fuzz target can drive it with arbitrary messages.
///
/// The protocol's rules it keeps:
/// - after an ErrorResponse the server skips to the Sync: everything up to ReadyForQuery is
///   read and dropped, and the error is the query's answer;
/// - there is exactly one ReadyForQuery per Sync, and the query ends there, not before;
/// - NoticeResponse, ParameterStatus and NotificationResponse may come at any time;
/// - a PortalSuspended (the row limit was reached on the server) makes the answer `rowLimit`;
/// - COPY … FROM STDIN is answered with CopyFail and a Sync (the server ignores the query's own
///   Sync while it copies in); COPY … TO STDOUT is read to its end and refused.
package struct QueryStateMachine: Sendable {
    /// What a query returned.
    package struct Result: Sendable, Equatable {
        /// From RowDescription (nil: the statement returns no rows, NoData).
        package var columns: [BackendMessage.Column]?
        package var parameterTypes: [UInt32]?
        package var rows: [BackendMessage.DataRow] = []
        package var tag = ""
    }

    /// Why a query failed, once the connection is ready again.
    package enum Failure: Error, Sendable, Equatable {
        /// The server's ErrorResponse.
        case server(BackendMessage.ServerFields)
        /// More rows than the limit: the server stopped at it (PortalSuspended).
        case rowLimit(Int32)
        /// The statement started a COPY, which poold does not do.
        case copyRefused
    }

    /// What the caller must do after a message.
    package enum Action: Sendable, Equatable {
        case none
        /// Send this (CopyFail).
        case write(ByteBuffer)
        /// A notice or a notification, to log; the query goes on.
        case notice(BackendMessage.ServerFields)
        case notification(channel: String, payload: String)
        case parameterChanged(name: String, value: String)
        /// A row, when the machine streams them (`streamsRows`) rather than keeping them.
        case row(BackendMessage.DataRow)
        /// The query is over, and the connection ready (its transaction status given).
        case done(Swift.Result<Result, Failure>, BackendMessage.TransactionStatus)
        /// The server broke the protocol: close the connection.
        case fail(WireError)
    }

    private var result = Result()
    private var failure: Failure?
    private var inCopyOut = false
    package private(set) var isDone = false
    private let rowLimit: Int32
    private let streamsRows: Bool

    /// `rowLimit`: the Execute's limit (0: none). `streamsRows`: each DataRow is handed out as
    /// `.row` as it comes, and the result keeps none.
    package init(rowLimit: Int32 = 0, streamsRows: Bool = false) {
        self.rowLimit = rowLimit
        self.streamsRows = streamsRows
    }

    package mutating func received(_ message: BackendMessage) -> Action {
        guard !isDone else { return .fail(WireError("\(message) after the query's ReadyForQuery")) }
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
            return .done(.success(result), status)
        case .errorResponse(let fields):
            // The first error is the answer; the server then skips to the Sync.
            // A COPY refused stays the answer: the error that follows is the server's side of it.
            if failure == nil { failure = .server(fields) }
            inCopyOut = false
            return .none
        default:
            break
        }
        if failure != nil, !inCopyOut { return .none }  // skipping to ReadyForQuery
        switch message {
        case .parseComplete, .bindComplete, .closeComplete, .emptyQueryResponse:
            return .none
        case .parameterDescription(let types):
            result.parameterTypes = types
        case .rowDescription(let columns):
            result.columns = columns
        case .noData:
            result.columns = nil
        case .dataRow(let row):
            if streamsRows { return .row(row) }
            result.rows.append(row)
        case .commandComplete(let tag):
            result.tag = tag
            inCopyOut = false
        case .portalSuspended:
            failure = .rowLimit(rowLimit)
        case .copyInResponse:
            failure = .copyRefused
            // The server ignores the Sync that came with the query while it copies in: after
            // CopyFail it waits for another one.
            var buffer = ByteBuffer()
            Frontend.copyFail("poold does not run COPY … FROM STDIN", into: &buffer)
            Frontend.sync(into: &buffer)
            return .write(buffer)
        case .copyOutResponse, .copyBothResponse:
            failure = .copyRefused
            inCopyOut = true
        case .copyData, .copyDone:
            guard inCopyOut else { return .fail(WireError("\(message) outside a COPY")) }
        case .authentication, .backendKeyData, .negotiateProtocolVersion:
            return .fail(WireError("\(message) during a query"))
        case .noticeResponse, .notificationResponse, .parameterStatus, .readyForQuery, .errorResponse:
            break  // handled above
        }
        return .none
    }
}
