import Testing

@testable import Jobs

/// How many parameters a named job's statement takes, as PostgreSQL counts them: the highest
/// `$n` outside literals, quoted identifiers, dollar-quoted bodies and comments.
struct PlaceholderTests {
    @Test func theHighestPlaceholderCounts() {
        #expect(Placeholders.highest(in: "SELECT 1") == 0)
        #expect(Placeholders.highest(in: "INSERT INTO t VALUES ($1, $2::int, $1)") == 2)
        #expect(Placeholders.highest(in: "SELECT $3") == 3)
        #expect(Placeholders.highest(in: "SELECT '$4', \"$5\", $1 -- $6\n") == 1)
        #expect(Placeholders.highest(in: "SELECT /* $7 /* $8 */ */ $2") == 2)
        #expect(Placeholders.highest(in: "SELECT $$ $9 $$, $tag$ $9 $tag$, $1") == 1)
        #expect(Placeholders.highest(in: "SELECT 'it''s $5', $2") == 2)
        #expect(Placeholders.highest(in: "SELECT a$1 FROM t") == 0, "part of an identifier")
        #expect(Placeholders.highest(in: "SELECT $1 FROM pg_sleep($1::int / 1000.0)") == 1)
    }
}
