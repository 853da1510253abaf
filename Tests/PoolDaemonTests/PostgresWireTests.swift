import ControlProtocol
import NIOCore
import PoolConfig
import PostgresWire
import Testing

@testable import PostgresPools

/// What the PostgreSQL pool adds to the wire client: parameters, values, and the commands that
/// retire a connection.
struct PostgresWireTests {
    @Test func commandsThatChangeTheSessionAreNamed() {
        for tag in ["SET", "RESET", "DISCARD ALL", "CREATE TABLE", "LISTEN", "DECLARE CURSOR", "PREPARE"] {
            #expect(SessionChange.reason(tag: tag) == "it ran \(tag)")
        }
        for tag in ["SELECT 1", "INSERT 0 3", "UPDATE 2", "DELETE 0", "BEGIN", "COMMIT", "ROLLBACK", "SETTLE"] {
            #expect(SessionChange.reason(tag: tag) == nil, "\(tag)")
        }
    }

    @Test func paramsGoInTheBinaryFormatOfTheInferredTypesOrNotAtAll() throws {
        let params: [SQLValue] = [.int(7), .text("x"), .null, .bool(true)]
        let bound = try #require(PostgresValues.binaryParameters(params, types: [23, 25, 1114, 16]))
        #expect(bound.map(\.bytes) == [[0, 0, 0, 7], Array("x".utf8), nil, [1]])
        #expect(bound.allSatisfy { $0.binary })
        // An int past int4, a string for an int, a count that does not match: not bound.
        #expect(PostgresValues.binaryParameters([.int(1 << 40)], types: [23]) == nil)
        #expect(PostgresValues.binaryParameters([.text("5")], types: [23]) == nil)
        #expect(PostgresValues.binaryParameters([.int(1)], types: []) == nil)
    }

    @Test func typedParamsDeclareTheValuesOwnTypes() {
        let params: [SQLValue] = [.bool(false), .int(-2), .double(1.5), .blob([9]), .text("t"), .json(.array([])), .null]
        #expect(PostgresValues.declaredTypes(params) == [16, 20, 701, 17, 0, 0, 0])
        let bound = PostgresValues.typedParameters(params)
        #expect(bound.map(\.binary) == [true, true, true, true, false, false, false])
        #expect(bound[1].bytes == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE])
        #expect(bound[2].bytes == [0x3F, 0xF8, 0, 0, 0, 0, 0, 0])
        #expect(bound[5].bytes == Array("[]".utf8))
        #expect(bound[6].bytes == nil)
    }

    @Test func aLongNoticeIsCutBeforeItIsLogged() {
        #expect(NoticeLog.cut("short") == "short")
        let long = NoticeLog.cut(String(repeating: "é", count: 5000))
        #expect(long.hasPrefix(String(repeating: "é", count: NoticeLog.maxText)))
        #expect(long.hasSuffix("… (10000 bytes in all)"))
        #expect(long.count == NoticeLog.maxText + "… (10000 bytes in all)".count)
    }

    @Test func malformedValuesFallBackInsteadOfCrashing() {
        // An int4 with 3 bytes, a numeric with a digit out of range, an array with a huge count.
        #expect(PostgresValues.decode(oid: 23, bytes: ByteBuffer(bytes: [1, 2, 3])) == .blob([1, 2, 3]))
        var numeric = ByteBuffer()
        numeric.writeMultipleIntegers(Int16(1), Int16(0), UInt16(0), Int16(0), Int16(12000))
        #expect(PostgresValues.decode(oid: 1700, bytes: numeric) == .blob(Array(numeric.readableBytesView)))
        var array = ByteBuffer()
        array.writeMultipleIntegers(Int32(1), Int32(0), UInt32(23), Int32(Int32.max), Int32(1))
        #expect(PostgresValues.decode(oid: 1007, bytes: array) == .blob(Array(array.readableBytesView)))
        #expect(PostgresValues.decode(oid: 999_999, bytes: ByteBuffer(string: "happy")) == .text("happy"))
        #expect(PostgresValues.decode(oid: 25, bytes: nil) == .null)
    }
}

/// `require_auth` as the config writes it; the wire client enforces it (StartupStateMachineTests).
struct RequireAuthTests {
    @Test func everyMethodTheConfigNamesIsOneTheClientKnows() {
        for method in RequireAuth.Method.allCases {
            #expect(WireConnection.AuthMethod(rawValue: method.rawValue) != nil, "\(method)")
        }
    }

    @Test func parsesLibpqsSyntax() throws {
        #expect(try RequireAuth.parse("scram-sha-256").get().allowed == [.scramSHA256])
        #expect(try RequireAuth.parse("scram-sha-256, none").get().allowed == [.scramSHA256, .none])
        #expect(try RequireAuth.parse("!password,!md5").get().allowed == [.scramSHA256, .gss, .sspi, .none])
        for bad in ["", "scram", "md5,!password", "md5,md5", "password,"] {
            #expect(throws: RequireAuth.Invalid.self, "\(bad)") { try RequireAuth.parse(bad).get() }
        }
    }
}
