import ControlProtocol
import NIOCore
import NIOEmbedded
import PoolConfig
import Testing

@testable import PostgresPools

/// The sniffer in front of PostgresNIO must follow the message framing whatever the reads'
/// boundaries, pass every byte on untouched, and note the key, status and columns.
struct PostgresWireTests {
    /// A backend stream: startup (BackendKeyData, ReadyForQuery idle), then a query with two
    /// columns and a large DataRow, ending in a transaction (status 'T').
    static func stream() -> [UInt8] {
        var out = ByteBuffer()
        func message(_ type: Character, _ body: (inout ByteBuffer) -> Void) {
            var payload = ByteBuffer()
            body(&payload)
            out.writeInteger(UInt8(ascii: type.unicodeScalars.first!))
            out.writeInteger(Int32(payload.readableBytes + 4))
            out.writeBuffer(&payload)
        }
        message("R") { $0.writeInteger(Int32(0)) }  // AuthenticationOk
        message("S") { $0.writeString("server_version\u{0}15.18\u{0}") }
        message("K") { $0.writeMultipleIntegers(Int32(4242), Int32(-77)) }
        message("Z") { $0.writeInteger(UInt8(ascii: "I")) }
        message("1") { _ in }
        message("T") { body in
            body.writeInteger(Int16(2))
            for name in ["k", "välue"] {
                body.writeString(name + "\u{0}")
                body.writeMultipleIntegers(UInt32(0), Int16(0), UInt32(25), Int16(-1), Int32(-1), Int16(1))
            }
        }
        message("D") { body in
            body.writeInteger(Int16(2))
            body.writeInteger(Int32(3))
            body.writeString("abc")
            body.writeInteger(Int32(5000))
            body.writeRepeatingByte(UInt8(ascii: "x"), count: 5000)
        }
        message("C") { $0.writeString("SELECT 1\u{0}") }
        message("Z") { $0.writeInteger(UInt8(ascii: "T")) }
        return Array(out.readableBytesView)
    }

    @Test(arguments: [1, 2, 3, 5, 7, 64, 4096, 100_000])
    func followsFramingAcrossReads(chunk: Int) throws {
        let wire = PostgresWireState()
        let channel = EmbeddedChannel(handler: PostgresWireSniffer(wire: wire))
        let bytes = Self.stream()
        var forwarded: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let end = min(index + chunk, bytes.count)
            try channel.writeInbound(ByteBuffer(bytes: bytes[index..<end]))
            while let passed = try channel.readInbound(as: ByteBuffer.self) { forwarded += passed.readableBytesView }
            index = end
        }
        #expect(forwarded == bytes, "every byte passes on untouched")
        #expect(wire.backendKey == .init(processID: 4242, secretKey: -77))
        #expect(wire.columns == ["k", "välue"])
        #expect(wire.transactionStatus == .inTransaction)
        _ = try channel.finish()
    }

    @Test func noDataClearsColumns() throws {
        let wire = PostgresWireState()
        let channel = EmbeddedChannel(handler: PostgresWireSniffer(wire: wire))
        try channel.writeInbound(ByteBuffer(bytes: Self.stream()))
        var noData = ByteBuffer()
        noData.writeInteger(UInt8(ascii: "n"))
        noData.writeInteger(Int32(4))
        noData.writeInteger(UInt8(ascii: "Z"))
        noData.writeInteger(Int32(5))
        noData.writeInteger(UInt8(ascii: "E"))
        try channel.writeInbound(noData)
        #expect(wire.columns == [])
        #expect(wire.transactionStatus == .failedTransaction)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func sslAnswerIsConsumedNotForwarded() throws {
        let wire = PostgresWireState()
        let sniffer = PostgresWireSniffer(wire: wire)
        let channel = EmbeddedChannel(handler: sniffer)
        let answer = channel.eventLoop.makePromise(of: UInt8.self)
        sniffer.expectSSLAnswer(answer)
        try channel.writeInbound(ByteBuffer(bytes: [UInt8(ascii: "N")]))
        #expect(try answer.futureResult.wait() == UInt8(ascii: "N"))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: Self.stream()))
        #expect(wire.backendKey?.processID == 4242)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func cancelRequestBytes() {
        let bytes = PostgresSession.cancelRequest(.init(processID: 0x0102_0304, secretKey: -1))
        #expect(Array(bytes.readableBytesView) == [0, 0, 0, 16, 0x04, 0xD2, 0x16, 0x2E, 1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF])
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

/// `require_auth`: a request for a method it does not allow never reaches PostgresNIO (which
/// would answer it with the password); one it allows passes untouched.
struct RequireAuthTests {
    static func authRequest(_ code: Int32, extra: [UInt8] = []) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeInteger(UInt8(ascii: "R"))
        out.writeInteger(Int32(8 + extra.count))
        out.writeInteger(code)
        out.writeBytes(extra)
        return out
    }

    @Test(arguments: [(Int32(3), "cleartext"), (Int32(5), "MD5")])
    func aForbiddenRequestIsNotPassedOn(code: Int32, words: String) throws {
        let wire = PostgresWireState()
        let requirement = try RequireAuth.parse("scram-sha-256").get()
        let channel = EmbeddedChannel(handler: PostgresWireSniffer(wire: wire, requireAuth: requirement))
        #expect(throws: PostgresWireError.self) {
            try channel.writeInbound(Self.authRequest(code, extra: code == 5 ? [1, 2, 3, 4] : []))
        }
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "the request was passed on")
        #expect(wire.authRefusal?.contains(words) == true, "\(String(describing: wire.authRefusal))")
        #expect(!channel.isActive, "the connection was left open")
    }

    @Test func anAllowedRequestPassesUntouched() throws {
        let wire = PostgresWireState()
        let requirement = try RequireAuth.parse("!password,!md5").get()
        let channel = EmbeddedChannel(handler: PostgresWireSniffer(wire: wire, requireAuth: requirement))
        let sasl = Self.authRequest(10, extra: Array("SCRAM-SHA-256\u{0}\u{0}".utf8))
        try channel.writeInbound(sasl)
        #expect(try channel.readInbound(as: ByteBuffer.self) == sasl)
        #expect(wire.authRefusal == nil)
        // Trust: AuthenticationOk with nothing asked is the method "none", which a list of
        // negated methods allows and "scram-sha-256" does not.
        let strict = EmbeddedChannel(
            handler: PostgresWireSniffer(wire: PostgresWireState(), requireAuth: try RequireAuth.parse("scram-sha-256").get()))
        #expect(throws: PostgresWireError.self) { try strict.writeInbound(Self.authRequest(0)) }
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
