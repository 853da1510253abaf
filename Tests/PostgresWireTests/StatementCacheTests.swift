import Testing

@testable import PostgresWire

/// The statement cache keeps the most recently used, and closes on the server what it evicts.
@Suite
struct StatementCacheTests {
    static func entry(_ name: String) -> StatementCache.Entry {
        .init(name: name, parameterTypes: [], columns: nil)
    }

    @Test func theLeastRecentlyUsedIsEvictedAndClosed() {
        var cache = StatementCache(capacity: 2)
        cache.store("a", Self.entry("p1"))
        cache.store("b", Self.entry("p2"))
        #expect(cache.lookUp("a")?.name == "p1")  // a is now the most recent
        cache.store("c", Self.entry("p3"))
        #expect(cache.lookUp("b") == nil, "b was the least recently used")
        #expect(cache.lookUp("a")?.name == "p1")
        #expect(cache.lookUp("c")?.name == "p3")
        #expect(cache.takeClosing() == ["p2"])
        #expect(cache.takeClosing().isEmpty, "closed once")
        #expect(cache.count == 2)
    }

    @Test func longStatementsAreKeptWithinTheByteBudget() {
        var cache = StatementCache(capacity: 100, byteBudget: 10)
        cache.store("aaaa", Self.entry("p1"))
        cache.store("bbbb", Self.entry("p2"))
        #expect(cache.count == 2)
        cache.store("cccc", Self.entry("p3"))  // 12 bytes: the oldest goes
        #expect(cache.lookUp("aaaa") == nil)
        #expect(cache.takeClosing() == ["p1"])
        cache.store(String(repeating: "x", count: 50), Self.entry("p4"))  // alone over the budget: kept alone
        #expect(cache.count == 1)
        #expect(cache.lookUp(String(repeating: "x", count: 50))?.name == "p4")
        #expect(Set(cache.takeClosing()) == ["p2", "p3"])
        cache.forget(String(repeating: "x", count: 50))
        cache.store("dddd", Self.entry("p5"))
        cache.store("eeee", Self.entry("p6"))
        #expect(cache.count == 2, "forgetting gave its bytes back")
    }

    @Test func forgettingAndDiscarding() {
        var cache = StatementCache(capacity: 4)
        #expect(cache.newName() == "p1")
        #expect(cache.newName() == "p2")
        cache.store("a", Self.entry("p1"))
        cache.forget("a")
        #expect(cache.lookUp("a") == nil)
        cache.discard(name: "p2")
        #expect(cache.takeClosing() == ["p2"])
        cache.store("b", Self.entry("p3"))
        cache.forgetAll()
        #expect(cache.count == 0)
    }
}
