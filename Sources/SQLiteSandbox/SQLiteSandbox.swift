import CSQLite

/// What ad-hoc SQL may do on a pooled SQLite connection (docs/PROTOCOL.md, "run"; ad-hoc SQL is untrusted
/// input). Installed on every connection as its authorizer; it judges every statement as
/// SQLite compiles it, and a denial fails the statement with `SQLITE_AUTH` ("not authorized").
///
/// While `adhoc` is set (the connection runs a client's own SQL) it denies:
/// - `ATTACH` and `DETACH`: another database file is outside the pool (another pool's, or a
///   new file anywhere poold may write);
/// - `PRAGMA`, except the read-only ones in `readOnlyPragmas` (and those only without a value):
///   a pragma changes the connection for every later job, or reaches outside the schema;
/// - temporary tables, views, triggers and indexes: they outlive the job on the connection and
///   would change what later jobs of other clients see (a temp trigger can swallow their
///   inserts);
/// - virtual tables (`CREATE VIRTUAL TABLE`), and reading the ones that expose the
///   connection or the file below SQL: `sqlite_stmt` (other clients' statement text),
///   `sqlite_dbpage`, `dbstat`;
/// - `load_extension` and the other functions in `deniedFunctions`.
///
/// For every statement, named jobs included, it denies `fts3_tokenizer`: its one-argument form
/// answers a live address in libsqlite3 and its two-argument form installs one (Debian builds
/// SQLite so that no connection setting turns that off): together, any client could run code
/// of its choosing in poold.
///
/// Named jobs are written by the config's owner and run without the rest of the sandbox.
public final class SQLiteSandbox: @unchecked Sendable {
    /// Set while a client's own SQL is prepared and run; touched only on the connection's thread.
    public var adhoc = false

    public init() {}

    /// The largest string or blob a value may be: what one result may hold as JSON (16 MiB).
    public static let maxValueBytes = 16 << 20

    /// What a denied client is told.
    public static let denialHint =
        "ad-hoc SQL may not attach databases, set pragmas, create temporary or virtual tables, read sqlite_stmt or sqlite_dbpage, or call "
        + "load_extension or fts3_tokenizer; a named job in the config may (but never fts3_tokenizer)"

    /// Pragmas an ad-hoc statement may use, to read (never to set) what the schema holds.
    static let readOnlyPragmas: Set<String> = [
        "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
        "foreign_key_check", "integrity_check", "quick_check", "user_version", "application_id", "page_count",
        "page_size", "freelist_count", "data_version", "encoding", "collation_list", "function_list", "module_list",
        "pragma_list", "compile_options",
    ]

    /// Pragmas whose value names what to read (a table or index), not a setting.
    static let pragmasTakingANameToRead: Set<String> = [
        "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
        "foreign_key_check", "integrity_check", "quick_check",
    ]

    /// Functions no statement may call.
    static let alwaysDeniedFunctions: Set<String> = ["fts3_tokenizer"]

    /// Functions ad-hoc SQL may not call: they reach outside the database, or change the
    /// connection for later jobs.
    static let deniedFunctions: Set<String> = ["load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"]

    /// Tables ad-hoc SQL may not read: virtual tables showing the connection or the raw file.
    static let deniedTables: Set<String> = ["sqlite_stmt", "sqlite_dbpage", "dbstat", "sqlite_dbdata", "sqlite_dbptr"]

    /// The decision for one action (SQLite's authorizer codes and arguments; `database` is
    /// the schema it is about: `main`, or `temp` for the connection's own).
    public func authorize(_ action: Int32, _ first: String?, _ second: String?, database: String? = nil) -> Int32 {
        if action == SQLITE_FUNCTION, let name = second?.lowercased(), Self.alwaysDeniedFunctions.contains(name) {
            return SQLITE_DENY
        }
        guard adhoc else { return SQLITE_OK }
        // `CREATE TABLE temp.t`, a view or trigger in `temp`: the connection's own schema.
        if database == "temp", [SQLITE_CREATE_TABLE, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER, SQLITE_CREATE_VIEW].contains(action) {
            return SQLITE_DENY
        }
        switch action {
        case SQLITE_ATTACH, SQLITE_DETACH,
            SQLITE_CREATE_TEMP_TABLE, SQLITE_CREATE_TEMP_TRIGGER, SQLITE_CREATE_TEMP_VIEW, SQLITE_CREATE_TEMP_INDEX,
            SQLITE_DROP_TEMP_TABLE, SQLITE_DROP_TEMP_TRIGGER, SQLITE_DROP_TEMP_VIEW, SQLITE_DROP_TEMP_INDEX,
            SQLITE_CREATE_VTABLE, SQLITE_DROP_VTABLE:
            return SQLITE_DENY
        case SQLITE_PRAGMA:
            guard let name = first?.lowercased(), Self.readOnlyPragmas.contains(name) else { return SQLITE_DENY }
            if second != nil && !Self.pragmasTakingANameToRead.contains(name) { return SQLITE_DENY }
            return SQLITE_OK
        case SQLITE_FUNCTION:
            if let name = second?.lowercased(), Self.deniedFunctions.contains(name) { return SQLITE_DENY }
            return SQLITE_OK
        case SQLITE_READ, SQLITE_UPDATE, SQLITE_INSERT, SQLITE_DELETE:
            guard let table = first?.lowercased() else { return SQLITE_OK }
            if Self.deniedTables.contains(table) { return SQLITE_DENY }
            if action != SQLITE_READ, table == "sqlite_temp_master" || table == "sqlite_temp_schema" { return SQLITE_DENY }
            if table.hasPrefix("pragma_"), !Self.readOnlyPragmas.contains(String(table.dropFirst("pragma_".count))) { return SQLITE_DENY }
            return SQLITE_OK
        default:
            return SQLITE_OK
        }
    }

    /// The authorizer SQLite calls, with the sandbox as its context.
    static let callback:
        @convention(c) (
            UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?
        ) -> Int32 = {
            context, action, first, second, database, _ in
            guard let context else { return SQLITE_DENY }
            let sandbox = Unmanaged<SQLiteSandbox>.fromOpaque(context).takeUnretainedValue()
            return sandbox.authorize(
                action, first.map { String(cString: $0) }, second.map { String(cString: $0) },
                database: database.map { String(cString: $0) })
        }

    /// Installs the sandbox and the connection-wide limits on a newly opened connection: the
    /// authorizer, defensive mode (no writes to the schema or to shadow tables), an untrusted
    /// schema, no attached databases beyond `main`, and values no larger than a result may be.
    /// The sandbox must outlive the connection.
    public func install(on db: OpaquePointer) {
        sqlite3_set_authorizer(db, Self.callback, Unmanaged.passUnretained(self).toOpaque())
        _ = poold_sqlite_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1)
        _ = poold_sqlite_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        _ = poold_sqlite_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0)
        _ = poold_sqlite_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0)
        sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0)
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, Int32(Self.maxValueBytes))
    }

    /// The most memory SQLite may hold in poold at once, over every connection: beyond it an
    /// allocation fails and the statement that asked gets `SQLITE_NOMEM` (`sql_error`), instead
    /// of poold growing without bound.
    public static let heapLimit: Int64 = 512 << 20

    /// Sets `heapLimit`, once per process.
    public static let limitHeap: Void = {
        _ = sqlite3_hard_heap_limit64(heapLimit)
    }()
}

/// Runs ad-hoc SQL in the sandbox on a database of its own, for the fuzz target and its corpus
/// replay: what a client could send, judged and run as poold would (at most `maxRows` rows a
/// statement, results read and dropped).
public enum SandboxProbe {
    public static let maxRows = 1000

    /// How the statements ended.
    public struct Outcome: Sendable, Equatable {
        /// Ran to their end.
        public var succeeded = 0
        /// Refused by the sandbox (when prepared or run).
        public var refused = 0
        /// Failed otherwise (a syntax error, no such table, a value too big, …).
        public var failed = 0
    }

    /// Opens (creating) `path`, installs the sandbox, runs each statement as ad-hoc SQL, and
    /// closes.
    @discardableResult
    public static func run(_ statements: [String], databaseAt path: String) -> Outcome {
        SQLiteSandbox.limitHeap
        var outcome = Outcome()
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db else {
            sqlite3_close_v2(db)
            return outcome
        }
        defer { sqlite3_close_v2(db) }
        let sandbox = SQLiteSandbox()
        sandbox.install(on: db)
        sqlite3_busy_timeout(db, 10)
        // Nothing may run for long: a statement that spins is stopped (as poold's timeout would).
        sqlite3_progress_handler(db, 100_000, { _ in 1 }, nil)
        sandbox.adhoc = true
        defer { sandbox.adhoc = false }
        func note(_ rc: Int32) {
            let message = String(cString: sqlite3_errmsg(db))
            if rc & 0xFF == SQLITE_AUTH || message.hasPrefix("not authorized") || message.contains(" is prohibited") {
                outcome.refused += 1
            } else {
                outcome.failed += 1
            }
        }
        for sql in statements {
            var stmt: OpaquePointer?
            let rc = sqlite3_prepare_v3(db, sql, -1, 0, &stmt, nil)
            guard rc == SQLITE_OK, let stmt else {
                if rc == SQLITE_OK { outcome.succeeded += 1 } else { note(rc) }  // OK without a statement: a comment
                continue
            }
            var rows = 0
            var step = sqlite3_step(stmt)
            while step == SQLITE_ROW, rows < maxRows {
                rows += 1
                step = sqlite3_step(stmt)
            }
            if step == SQLITE_DONE || step == SQLITE_ROW { outcome.succeeded += 1 } else { note(step) }
            sqlite3_finalize(stmt)
        }
        return outcome
    }
}
