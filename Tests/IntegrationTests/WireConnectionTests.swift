import Foundation
import NIOPosix
import PostgresWire
import Testing

/// Issue 16's own protocol client against the throwaway cluster: each way PostgreSQL asks for a
/// password, and what a wrong one gets.
@Suite(.timeLimit(.minutes(1)))
struct WireConnectionTests {
    static func tcp(user: String = "poold", password: String?) throws -> WireConnection.Configuration {
        _ = try PG.require()
        let host = PG.environment["POOLD_TEST_PG_HOST"] ?? "127.0.0.1"
        let port = Int(PG.environment["POOLD_TEST_PG_PORT"] ?? "") ?? 5432
        return WireConnection.Configuration(address: .tcp(host: host, port: port), user: user, database: "poold", password: password)
    }

    static func selectOne(_ configuration: WireConnection.Configuration) async throws -> ([[String?]], [String: String]) {
        try await WireConnection.withConnection(configuration, on: MultiThreadedEventLoopGroup.singleton.next()) { connection, session in
            (try await session.simpleQuery("SELECT 1, NULL::text, current_user"), connection.parameters)
        }
    }

    @Test func scramOverTCP() async throws {
        let (_, password) = try PG.require()
        let (rows, parameters) = try await Self.selectOne(try Self.tcp(password: password))
        #expect(rows == [["1", nil, "poold"]])
        #expect(parameters["server_version"]?.isEmpty == false, "\(parameters)")
    }

    @Test func aWrongPasswordIsRefusedByTheServer() async throws {
        await #expect {
            _ = try await Self.selectOne(try Self.tcp(password: "not the password"))
        } throws: { error in
            (error as? WireConnection.ServerError)?.fields.sqlState == "28P01"
        }
    }

    @Test func trustOverTheUnixSocket() async throws {
        _ = try PG.require()
        let directory = try #require(PG.environment["POOLD_TEST_PG_SOCKET_DIR"])
        let port = try #require(PG.environment["POOLD_TEST_PG_PORT"])
        let configuration = WireConnection.Configuration(
            address: .unixSocket(path: "\(directory)/.s.PGSQL.\(port)"), user: "poold", database: "poold", password: nil)
        let (rows, _) = try await Self.selectOne(configuration)
        #expect(rows == [["1", nil, "poold"]])
    }

    /// A role whose password is stored as MD5, let in by an `md5` line of pg_hba.conf.
    @Test func md5() async throws {
        _ = try PG.require()
        _ = try PG.psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wire_md5') THEN "
                + "SET password_encryption = 'md5'; CREATE ROLE wire_md5 LOGIN PASSWORD 'md5 secret'; END IF; END $$")
        let hba = try PG.psql("SHOW hba_file").trimmingCharacters(in: .whitespacesAndNewlines)
        let rules = try String(contentsOfFile: hba, encoding: .utf8)
        if !rules.contains("wire_md5") {
            try ("host poold wire_md5 127.0.0.1/32 md5\n" + rules).write(toFile: hba, atomically: true, encoding: .utf8)
            _ = try PG.psql("SELECT pg_reload_conf()")
        }
        let (rows, _) = try await Self.selectOne(try Self.tcp(user: "wire_md5", password: "md5 secret"))
        #expect(rows == [["1", nil, "wire_md5"]])
        await #expect(throws: WireConnection.ServerError.self) {
            _ = try await Self.selectOne(try Self.tcp(user: "wire_md5", password: "wrong"))
        }
    }
}
