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
    private var entries: [String: Entry] = [:]
    /// SQL texts, least recently used first.
    private var order: [String] = []
    private var closing: [String] = []
    private var nextID = 0

    package init(capacity: Int = 256) {
        self.capacity = max(1, capacity)
    }

    package var count: Int { entries.count }

    /// The entry for `sql`, now the most recently used.
    package mutating func lookUp(_ sql: String) -> Entry? {
        guard let entry = entries[sql] else { return nil }
        if order.last != sql, let index = order.firstIndex(of: sql) {
            order.remove(at: index)
            order.append(sql)
        }
        return entry
    }

    /// A fresh statement name (`p1`, `p2`, …).
    package mutating func newName() -> String {
        nextID += 1
        return "p\(nextID)"
    }

    /// Keeps `entry` for `sql`; evicts the least recently used one past `capacity`.
    package mutating func store(_ sql: String, _ entry: Entry) {
        if entries.updateValue(entry, forKey: sql) == nil {
            order.append(sql)
        }
        while order.count > capacity {
            let oldest = order.removeFirst()
            if let evicted = entries.removeValue(forKey: oldest) { closing.append(evicted.name) }
        }
    }

    /// Forgets `sql` (its plan is invalid on the server, or the server dropped it).
    package mutating func forget(_ sql: String) {
        guard entries.removeValue(forKey: sql) != nil else { return }
        order.removeAll { $0 == sql }
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
        order.removeAll()
        closing.removeAll()
    }

    /// Names of evicted statements to close on the server now.
    package mutating func takeClosing() -> [String] {
        defer { closing.removeAll() }
        return closing
    }
}
