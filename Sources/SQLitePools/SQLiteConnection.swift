import CSQLite
import ControlProtocol
import PoolCore
import SQLiteSandbox
import Synchronization

/// One SQLite connection over the C API, and the thread its blocking calls run on.
///
/// Calls block, so they run on `thread`, never on the cooperative pool or the event loop; one
/// job at a time uses a connection (the pool's lease guarantees it). `interrupt()` is the exception:
/// it may be called from any thread while a statement runs, and stops it — at once through
/// `sqlite3_interrupt`, and through the progress handler for a statement that starts just
/// after, so a timed-out job never leaves a statement running on a pooled connection.
package final class SQLiteConnection: @unchecked Sendable {
    /// Rows one statement may return; more is refused rather than buffered without bound.
    static let maxRows = 100_000

    /// Prepared statements kept per connection, so a repeated query is not parsed again.
    static let cacheCapacity = 64

    private let handle: OpaquePointer
    private let stop: InterruptFlag
    /// Judges what ad-hoc SQL may do (see `SQLiteSandbox`); it lives as long as the handle.
    let sandbox: SQLiteSandbox
    /// Touched only by the job holding the connection (the lease serializes them). A statement
    /// is judged by the sandbox when it is prepared, so ad-hoc SQL never reuses one prepared
    /// for a named job: the key says which.
    private var statements: [StatementKey: OpaquePointer] = [:]

    struct StatementKey: Hashable {
        var sql: String
        var adhoc: Bool
    }
    let path: String
    /// The connection's own thread: it lives as long as the connection.
    let thread: ConnectionThread

    private init(handle: OpaquePointer, stop: InterruptFlag, sandbox: SQLiteSandbox, path: String, thread: ConnectionThread) {
        self.handle = handle
        self.stop = stop
        self.sandbox = sandbox
        self.path = path
        self.thread = thread
    }

    /// Opens (creating if needed) the database in WAL mode with a busy timeout. Runs on
    /// `thread`, which the connection then keeps.
    static func open(path: String, busyTimeout: Duration, thread: ConnectionThread) throws(BackendFailure) -> SQLiteConnection {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            throw BackendFailure(.misconfigured, "cannot open SQLite database \(path): \(message)")
        }
        SQLiteSandbox.limitHeap
        let stop = InterruptFlag()
        let sandbox = SQLiteSandbox()
        sandbox.install(on: db)
        let connection = SQLiteConnection(handle: db, stop: stop, sandbox: sandbox, path: path, thread: thread)
        sqlite3_busy_timeout(db, Int32(clamping: busyTimeout.milliseconds))
        sqlite3_extended_result_codes(db, 1)
        sqlite3_progress_handler(
            db, 1000,
            { context in
                guard let context else { return 0 }
                return Unmanaged<InterruptFlag>.fromOpaque(context).takeUnretainedValue().isSet ? 1 : 0
            }, Unmanaged.passUnretained(stop).toOpaque())
        do {
            _ = try connection.execute(SQLStatement(sql: "PRAGMA journal_mode = WAL"))
            _ = try connection.execute(SQLStatement(sql: "PRAGMA synchronous = NORMAL"))
        } catch {
            connection.close()
            throw BackendFailure(.misconfigured, "cannot use SQLite database \(path): \(error.message)")
        }
        return connection
    }

    func close() {
        for statement in statements.values { sqlite3_finalize(statement) }
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Stops the running statement (or the next one to start) with SQLITE_INTERRUPT.
    func interrupt() {
        stop.set()
        sqlite3_interrupt(handle)
    }

    /// Clears an earlier interrupt so that the next statements (e.g. a ROLLBACK) run.
    func clearInterrupt() {
        stop.clear()
    }

    var isInterrupted: Bool { stop.isSet }

    /// Whether a transaction is open (the connection is not in autocommit mode).
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Runs one statement to completion. Exactly one statement: a second one in `sql` is
    /// refused, because it would otherwise be silently ignored.
    package func execute(_ statement: SQLStatement) throws(SQLiteFailure) -> StatementResult {
        let stmt = try prepared(statement.sql)
        // Reset at once when done: a statement left mid-step holds its read snapshot open.
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        return try run(stmt, statement)
    }

    /// The cached prepared statement for `sql`, preparing (and caching) it if needed.
    private func prepared(_ sql: String) throws(SQLiteFailure) -> OpaquePointer {
        let key = StatementKey(sql: sql, adhoc: sandbox.adhoc)
        if let cached = statements[key] { return cached }
        let stmt = try prepare(sql)
        if statements.count >= Self.cacheCapacity {
            for old in statements.values { sqlite3_finalize(old) }
            statements.removeAll(keepingCapacity: true)
        }
        statements[key] = stmt
        return stmt
    }

    private func prepare(_ sql: String) throws(SQLiteFailure) -> OpaquePointer {
        var stmt: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let rc = sql.withCString { text in
            let rc = sqlite3_prepare_v3(handle, text, -1, 0, &stmt, &tail)
            guard rc == SQLITE_OK, stmt != nil, var rest = tail else { return rc }
            // Whatever follows must be only whitespace and comments.
            while rest.pointee != 0 {
                var extra: OpaquePointer?
                var next: UnsafePointer<CChar>?
                let extraRC = sqlite3_prepare_v3(handle, rest, -1, 0, &extra, &next)
                if extra != nil {
                    sqlite3_finalize(extra)
                    return sqliteMisuseSecondStatement
                }
                guard extraRC == SQLITE_OK, let next, next != rest else { break }
                rest = next
            }
            return rc
        }
        if rc == sqliteMisuseSecondStatement {
            sqlite3_finalize(stmt)
            throw .badRequest("\"sql\" must hold one statement; send several as a \"batch\"")
        }
        guard rc == SQLITE_OK else { throw failure(rc) }
        guard let stmt else {
            throw .badRequest("\"sql\" holds no statement")
        }
        return stmt
    }

    private func run(_ stmt: OpaquePointer, _ statement: SQLStatement) throws(SQLiteFailure) -> StatementResult {
        let expected = Int(sqlite3_bind_parameter_count(stmt))
        if expected != statement.params.count {
            throw .badRequest(
                "the statement has \(expected) placeholder\(expected == 1 ? "" : "s") but \(statement.params.count) "
                    + "param\(statement.params.count == 1 ? " was" : "s were") given"
            )
        }
        for (index, value) in statement.params.enumerated() {
            let position = Int32(index + 1)
            let bindRC: Int32
            switch value {
            case .null: bindRC = sqlite3_bind_null(stmt, position)
            case .bool(let b): bindRC = sqlite3_bind_int64(stmt, position, b ? 1 : 0)
            case .int(let i): bindRC = sqlite3_bind_int64(stmt, position, i)
            case .double(let d): bindRC = sqlite3_bind_double(stmt, position, d)
            case .text(let s): bindRC = sqlite3_bind_text(stmt, position, s, -1, sqliteTransient)
            case .blob(let bytes):
                bindRC = bytes.withUnsafeBytes { raw in
                    sqlite3_bind_blob64(stmt, position, raw.baseAddress, sqlite3_uint64(raw.count), sqliteTransient)
                }
            case .json(let value):
                bindRC = sqlite3_bind_text(stmt, position, JSON.encode(value), -1, sqliteTransient)
            }
            guard bindRC == SQLITE_OK else { throw failure(bindRC) }
        }

        let columnCount = Int(sqlite3_column_count(stmt))
        var columns: [String] = []
        columns.reserveCapacity(columnCount)
        for i in 0..<columnCount {
            columns.append(sqlite3_column_name(stmt, Int32(i)).map { String(cString: $0) } ?? "")
        }
        var rows: [[SQLValue]] = []
        var bytes = 0
        while true {
            let step = sqlite3_step(stmt)
            if step == SQLITE_DONE { break }
            guard step == SQLITE_ROW else { throw failure(step) }
            if rows.count >= Self.maxRows {
                throw .badRequest("the result has more than \(Self.maxRows) rows; add a LIMIT")
            }
            var row: [SQLValue] = []
            row.reserveCapacity(columnCount)
            for i in 0..<Int32(columnCount) {
                let cell = value(stmt, i)
                bytes += cell.replyBytes
                row.append(cell)
            }
            if bytes > SQLValue.maxResultBytes {
                throw .badRequest(SQLValue.resultTooLargeMessage)
            }
            rows.append(row)
        }
        let writes = sqlite3_stmt_readonly(stmt) == 0 && Self.isDML(statement.sql)
        return StatementResult(columns: columns, rows: rows, affected: writes ? sqlite3_changes64(handle) : nil)
    }

    /// Runs a statement whose result does not matter (BEGIN, COMMIT, ROLLBACK).
    func exec(_ sql: String) throws(SQLiteFailure) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw failure(rc) }
    }

    private func value(_ stmt: OpaquePointer, _ column: Int32) -> SQLValue {
        switch sqlite3_column_type(stmt, column) {
        case SQLITE_INTEGER:
            return .int(sqlite3_column_int64(stmt, column))
        case SQLITE_FLOAT:
            return .double(sqlite3_column_double(stmt, column))
        case SQLITE_TEXT:
            guard let text = sqlite3_column_text(stmt, column) else { return .text("") }
            let count = Int(sqlite3_column_bytes(stmt, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(stmt, column))
            guard count > 0, let blob = sqlite3_column_blob(stmt, column) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: blob, count: count)))
        default:
            return .null
        }
    }

    private func failure(_ rc: Int32) -> SQLiteFailure {
        let primary = rc & 0xFF
        if primary == SQLITE_INTERRUPT && stop.isSet {
            return .interrupted
        }
        var message = String(cString: sqlite3_errmsg(handle))
        switch primary {
        case SQLITE_BUSY:
            message += " (another connection held the lock past busy_timeout; retry, or raise busy_timeout)"
        case SQLITE_FULL:
            message +=
                " (the filesystem holding \(path) has no space left; free space there, then retry: nothing of this statement was kept)"
        case SQLITE_IOERR:
            message += " (reading or writing \(path) failed; check the disk and the kernel log)"
        default:
            break
        }
        // The sandbox's denials come as SQLITE_AUTH, or as SQLITE_ERROR for a function.
        if primary == SQLITE_AUTH || message.hasPrefix("not authorized") || message.contains(" is prohibited") {
            message += " (\(SQLiteSandbox.denialHint))"
        }
        return .sql(code: primary, extendedCode: rc, message: message)
    }

    /// Whether the statement is one whose changed rows `affected` reports.
    static func isDML(_ sql: String) -> Bool {
        var keyword = ""
        var iterator = sql.utf8.makeIterator()
        var inLineComment = false
        var previous: UInt8 = 0
        var inBlockComment = false
        while let byte = iterator.next() {
            if inLineComment {
                if byte == UInt8(ascii: "\n") { inLineComment = false }
            } else if inBlockComment {
                if previous == UInt8(ascii: "*") && byte == UInt8(ascii: "/") { inBlockComment = false }
            } else if byte == UInt8(ascii: "-") && previous == UInt8(ascii: "-") {
                inLineComment = true
                keyword = ""
            } else if byte == UInt8(ascii: "*") && previous == UInt8(ascii: "/") {
                inBlockComment = true
                keyword = ""
            } else if (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) {
                keyword.append(Character(Unicode.Scalar(byte & ~0x20)))
            } else if !keyword.isEmpty {
                break
            }
            previous = byte
        }
        return ["INSERT", "UPDATE", "DELETE", "REPLACE", "WITH"].contains(keyword)
    }
}

/// A private result code for "the SQL holds a second statement".
private let sqliteMisuseSecondStatement: Int32 = -2

/// SQLite's `SQLITE_TRANSIENT`: SQLite copies bound text and blobs before the call returns.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Set by `interrupt()`, read by SQLite's progress handler on the thread running the statement.
package final class InterruptFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
    func clear() { flag.store(false, ordering: .releasing) }
}

/// Why a statement did not complete.
package enum SQLiteFailure: Error, Sendable {
    /// The database refused it (constraint, syntax, locked, …).
    case sql(code: Int32, extendedCode: Int32, message: String)
    /// The request itself cannot run (two statements, wrong number of params, too many rows).
    case badRequest(String)
    /// `interrupt()` stopped it: the job was cancelled or timed out.
    case interrupted

    var message: String {
        switch self {
        case .sql(_, _, let message): message
        case .badRequest(let message): message
        case .interrupted: "interrupted"
        }
    }

    /// The protocol error for this failure.
    var poolError: (code: ErrorCode, message: String, detail: JSONObject?) {
        switch self {
        case .sql(let code, _, let message):
            let detail: JSONObject = ["sqlite_code": .int(Int64(code)), "sqlite_name": .string(SQLiteCodes.name(code))]
            return (.sqlError, message, detail)
        case .badRequest(let message):
            return (.badRequest, message, nil)
        case .interrupted:
            return (.cancelled, "the statement was interrupted", nil)
        }
    }
}

package enum SQLiteCodes {
    static func name(_ primary: Int32) -> String {
        switch primary {
        case 1: "SQLITE_ERROR"
        case 2: "SQLITE_INTERNAL"
        case 3: "SQLITE_PERM"
        case 4: "SQLITE_ABORT"
        case 5: "SQLITE_BUSY"
        case 6: "SQLITE_LOCKED"
        case 7: "SQLITE_NOMEM"
        case 8: "SQLITE_READONLY"
        case 9: "SQLITE_INTERRUPT"
        case 10: "SQLITE_IOERR"
        case 11: "SQLITE_CORRUPT"
        case 12: "SQLITE_NOTFOUND"
        case 13: "SQLITE_FULL"
        case 14: "SQLITE_CANTOPEN"
        case 15: "SQLITE_PROTOCOL"
        case 16: "SQLITE_EMPTY"
        case 17: "SQLITE_SCHEMA"
        case 18: "SQLITE_TOOBIG"
        case 19: "SQLITE_CONSTRAINT"
        case 20: "SQLITE_MISMATCH"
        case 21: "SQLITE_MISUSE"
        case 22: "SQLITE_NOLFS"
        case 23: "SQLITE_AUTH"
        case 24: "SQLITE_FORMAT"
        case 25: "SQLITE_RANGE"
        case 26: "SQLITE_NOTADB"
        default: "SQLITE_\(primary)"
        }
    }
}
