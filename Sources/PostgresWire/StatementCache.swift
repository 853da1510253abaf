import NIOCore

/// The statements prepared on one connection, by SQL, least recently used first out. An
/// evicted statement is closed on the server with the next query (`takeClosing`).
package struct StatementCache: Sendable {
    package struct Entry: Sendable, Equatable {
        package var name: String
        package var parameterTypes: [UInt32]
        /// nil: the statement returns no rows.
        package var columns: [BackendMessage.Column]?
    }

    package let capacity: Int
    /// At most this many bytes of SQL are kept (the newest statement is kept whatever its
    /// size): a client that sends long, ever different statements holds neither poold's memory
    /// nor the server's prepared statements beyond it.
    package let byteBudget: Int
    /// Each entry with when it was last used: a hit costs one hash of the SQL, and only an
    /// eviction looks through them all.
    private var entries: [String: (entry: Entry, used: UInt64)] = [:]
    private var bytes = 0
    private var clock: UInt64 = 0
    private var closing: [String] = []
    private var nextID = 0

    package init(capacity: Int = 256, byteBudget: Int = 1 << 20) {
        self.capacity = max(1, capacity)
        self.byteBudget = byteBudget
    }

    package var count: Int { entries.count }

    /// The entry for `sql`, now the most recently used.
    package mutating func lookUp(_ sql: String) -> Entry? {
        clock += 1
        let now = clock
        guard let found = entries[sql] else { return nil }
        entries[sql]?.used = now
        return found.entry
    }

    /// A fresh statement name (`p1`, `p2`, …).
    package mutating func newName() -> String {
        nextID += 1
        return "p\(nextID)"
    }

    /// Keeps `entry` for `sql`; evicts the least recently used one past `capacity`.
    package mutating func store(_ sql: String, _ entry: Entry) {
        clock += 1
        if entries.updateValue((entry, clock), forKey: sql) == nil { bytes += sql.utf8.count }
        while entries.count > capacity || (bytes > byteBudget && entries.count > 1),
            let oldest = entries.min(by: { $0.value.used < $1.value.used })
        {
            forget(oldest.key)
            closing.append(oldest.value.entry.name)
        }
    }

    /// Forgets `sql` (its plan is invalid on the server, or the server dropped it).
    package mutating func forget(_ sql: String) {
        if entries.removeValue(forKey: sql) != nil { bytes -= sql.utf8.count }
    }

    /// A statement that may exist on the server without being cached (its Parse went through,
    /// then the query failed): closed with the next query. Closing one that does not exist is
    /// not an error.
    package mutating func discard(name: String) {
        closing.append(name)
    }

    /// Everything forgotten: after `DISCARD ALL`, the server has no statement left.
    package mutating func forgetAll() {
        entries.removeAll()
        bytes = 0
        closing.removeAll()
    }

    /// Names of evicted statements to close on the server now.
    package mutating func takeClosing() -> [String] {
        defer { closing.removeAll() }
        return closing
    }
}

/// One query on a connection, from the statement cache's side: what goes out, and what the
/// answer comes to. `WireConnection` and `WireClient` both run queries through it.
package struct PreparedRun: Sendable {
    package let sql: String
    package let name: String
    package let cached: Bool
    package let retried: Bool

    /// What a finished query comes to.
    package enum Settled: Sendable {
        case answer(Result<QueryStateMachine.Result, QueryStateMachine.Failure>)
        /// The server dropped the cached plan or can no longer use it: send the query again.
        case prepareAgain
    }

    /// Writes the query into `buffer`, for one write: statements the cache evicted closed,
    /// Parse and Describe unless `sql` is cached, then Bind/Execute/Sync (results in text).
    package static func start(
        _ sql: String, _ parameters: [Frontend.Parameter], rowLimit: Int32, retried: Bool, cache: inout StatementCache,
        into buffer: inout ByteBuffer
    ) -> PreparedRun {
        let cached = cache.lookUp(sql)
        let name = cached?.name ?? cache.newName()
        for old in cache.takeClosing() { Frontend.close(statement: old, into: &buffer) }
        if cached == nil {
            Frontend.parse(statement: name, sql: sql, parameterTypes: [], into: &buffer)
            Frontend.describe(statement: name, into: &buffer)
        }
        Frontend.bind(statement: name, parameters: parameters, binaryResults: [], into: &buffer)
        Frontend.execute(maxRows: rowLimit, into: &buffer)
        Frontend.sync(into: &buffer)
        return PreparedRun(sql: sql, name: name, cached: cached != nil, retried: retried)
    }

    /// A statement prepared by this run is cached when it ran, and closed later when it failed
    /// (its Parse may have gone through). A cached plan the server dropped (26000) or can no
    /// longer use (0A000) is forgotten and prepared again, once, outside a failed transaction.
    package func settle(
        _ outcome: Result<QueryStateMachine.Result, QueryStateMachine.Failure>, status: BackendMessage.TransactionStatus,
        cache: inout StatementCache
    ) -> Settled {
        switch outcome {
        case .success(let result):
            if !cached { cache.store(sql, .init(name: name, parameterTypes: result.parameterTypes ?? [], columns: result.columns)) }
        case .failure(.server(let fields))
        where cached && !retried && ["26000", "0A000"].contains(fields.sqlState) && status != .failedTransaction:
            cache.forget(sql)
            cache.discard(name: name)  // 0A000: the statement is still there, with its old plan
            return .prepareAgain
        case .failure:
            if !cached { cache.discard(name: name) }
        }
        return .answer(outcome)
    }
}
