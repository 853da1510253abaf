import NIOCore
import NIOTestUtils
import Testing

@testable import PostgresWire

/// The server's messages, decoded from bytes written as the protocol documentation lays them
/// out, and the decoder fed those bytes split at every boundary.
@Suite
struct BackendMessageTests {
    /// A message as the server frames it: type, length (counting itself), body.
    static func frame(_ type: Character, _ body: (inout ByteBuffer) -> Void = { _ in }) -> ByteBuffer {
        var payload = ByteBuffer()
        body(&payload)
        var buffer = ByteBuffer()
        buffer.writeInteger(type.asciiValue ?? 0)
        buffer.writeInteger(Int32(payload.readableBytes + 4))
        buffer.writeBuffer(&payload)
        return buffer
    }

    static func row(_ values: [String?]) -> ByteBuffer {
        var bytes = ByteBuffer()
        for value in values {
            if let value {
                bytes.writeInteger(Int32(value.utf8.count))
                bytes.writeString(value)
            } else {
                bytes.writeInteger(Int32(-1))
            }
        }
        return bytes
    }

    /// One of every message a query, a startup and an error bring, with what it decodes to.
    static let samples: [(ByteBuffer, BackendMessage)] = [
        (frame("R") { $0.writeInteger(Int32(0)) }, .authentication(.ok)),
        (frame("R") { $0.writeInteger(Int32(3)) }, .authentication(.cleartextPassword)),
        (
            frame("R") {
                $0.writeInteger(Int32(5))
                $0.writeBytes([1, 2, 3, 4])
            }, .authentication(.md5Password(salt: [1, 2, 3, 4]))
        ),
        (
            frame("R") {
                $0.writeInteger(Int32(10))
                $0.writeCString("SCRAM-SHA-256-PLUS")
                $0.writeCString("SCRAM-SHA-256")
                $0.writeInteger(UInt8(0))
            }, .authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))
        ),
        (
            frame("R") {
                $0.writeInteger(Int32(11))
                $0.writeString("r=abc")
            }, .authentication(.saslContinue(Array("r=abc".utf8)))
        ),
        (
            frame("R") {
                $0.writeInteger(Int32(12))
                $0.writeString("v=xyz")
            }, .authentication(.saslFinal(Array("v=xyz".utf8)))
        ),
        (frame("R") { $0.writeInteger(Int32(7)) }, .authentication(.unsupported(code: 7))),
        (
            frame("K") {
                $0.writeInteger(Int32(4242))
                $0.writeInteger(Int32(-7))
            },
            .backendKeyData(.init(processID: 4242, secretKey: -7))
        ),
        (
            frame("S") {
                $0.writeCString("TimeZone")
                $0.writeCString("UTC")
            }, .parameterStatus(name: "TimeZone", value: "UTC")
        ),
        (frame("Z") { $0.writeInteger(UInt8(ascii: "T")) }, .readyForQuery(.inTransaction)),
        (frame("1"), .parseComplete),
        (frame("2"), .bindComplete),
        (frame("3"), .closeComplete),
        (frame("n"), .noData),
        (frame("s"), .portalSuspended),
        (frame("I"), .emptyQueryResponse),
        (
            frame("G") {
                $0.writeInteger(UInt8(0))
                $0.writeInteger(Int16(0))
            }, .copyInResponse
        ),
        (
            frame("H") {
                $0.writeInteger(UInt8(0))
                $0.writeInteger(Int16(0))
            }, .copyOutResponse
        ),
        (
            frame("t") {
                $0.writeInteger(Int16(2))
                $0.writeInteger(UInt32(23))
                $0.writeInteger(UInt32(25))
            }, .parameterDescription([23, 25])
        ),
        (
            frame("T") {
                $0.writeInteger(Int16(1))
                $0.writeCString("v")
                $0.writeInteger(UInt32(16384))
                $0.writeInteger(Int16(2))
                $0.writeInteger(UInt32(25))
                $0.writeInteger(Int16(-1))
                $0.writeInteger(Int32(-1))
                $0.writeInteger(Int16(1))
            },
            .rowDescription([
                .init(name: "v", tableOID: 16384, attribute: 2, typeOID: 25, typeSize: -1, typeModifier: -1, format: 1)
            ])
        ),
        (
            frame("D") {
                $0.writeInteger(Int16(2))
                var values = row(["value-7", nil])
                $0.writeBuffer(&values)
            }, .dataRow(.init(count: 2, bytes: row(["value-7", nil])))
        ),
        (frame("C") { $0.writeCString("SELECT 1") }, .commandComplete(tag: "SELECT 1")),
        (
            frame("E") {
                for (code, text) in [("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"), ("M", "relation \"nope\" does not exist")] {
                    $0.writeInteger(Character(code).asciiValue ?? 0)
                    $0.writeCString(text)
                }
                $0.writeInteger(UInt8(0))
            },
            .errorResponse(
                .init([
                    UInt8(ascii: "S"): "ERROR", UInt8(ascii: "V"): "ERROR", UInt8(ascii: "C"): "42P01",
                    UInt8(ascii: "M"): "relation \"nope\" does not exist",
                ]))
        ),
        (
            frame("N") {
                $0.writeInteger(UInt8(ascii: "M"))
                $0.writeCString("hello")
                $0.writeInteger(UInt8(0))
            },
            .noticeResponse(.init([UInt8(ascii: "M"): "hello"]))
        ),
        (
            frame("A") {
                $0.writeInteger(Int32(9))
                $0.writeCString("jobs")
                $0.writeCString("new")
            },
            .notificationResponse(processID: 9, channel: "jobs", payload: "new")
        ),
    ]

    @Test func everyMessageDecodesAlone() throws {
        for (bytes, expected) in Self.samples {
            var buffer = bytes
            var decoder = BackendMessageDecoder()
            #expect(try decoder.decode(buffer: &buffer) == expected)
            #expect(buffer.readableBytes == 0, "all of \(expected) was read")
        }
    }

    @Test func everyMessageSurvivesEverySplit() throws {
        // ByteToMessageDecoderVerifier feeds each input whole, byte by byte, and split at every
        // boundary, and checks that exactly the expected messages come out.
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: Self.samples.map { ($0.0, [$0.1]) },
            decoderFactory: { BackendMessageDecoder() })
    }

    @Test func aDataRowIsReadInPlace() throws {
        var buffer = Self.samples.first { if case .dataRow = $0.1 { true } else { false } }?.0 ?? ByteBuffer()
        var decoder = BackendMessageDecoder()
        guard case .dataRow(let row)? = try decoder.decode(buffer: &buffer) else {
            Issue.record("not a data row")
            return
        }
        let columns = row.columns
        #expect(columns.count == 2)
        #expect(columns.first??.getString(at: columns.first??.readerIndex ?? 0, length: 7) == "value-7")
        #expect(columns.last == .some(nil), "NULL")
    }

    @Test func lengthsOutOfBoundsAreProtocolErrors() throws {
        for length in [Int32(3), Int32(-1), Int32(1 << 20 + 5)] {
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt8(ascii: "D"))
            buffer.writeInteger(length)
            var decoder = BackendMessageDecoder(maxMessageLength: 1 << 20)
            #expect(throws: WireError.self, "length \(length)") { try decoder.decode(buffer: &buffer) }
        }
    }

    @Test func truncatedAndUnknownMessagesAreProtocolErrors() throws {
        for bytes in [Self.frame("K") { $0.writeInteger(Int32(1)) }, Self.frame("S") { $0.writeString("no NUL") }, Self.frame("?")] {
            var buffer = bytes
            var decoder = BackendMessageDecoder()
            #expect(throws: WireError.self) { try decoder.decode(buffer: &buffer) }
        }
    }
}
