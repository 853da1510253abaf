import NIOCore
import Testing

@testable import PostgresWire

/// What goes to the server, byte for byte as the protocol documentation lays it out.
@Suite
struct FrontendMessageTests {
    @Test func aQueryIsBindExecuteSyncInOneBuffer() {
        var buffer = ByteBuffer()
        Frontend.bind(
            statement: "s1", parameters: [.init(bytes: [0, 0, 0, 42], binary: true), .init(bytes: nil, binary: false)],
            binaryResults: [true], into: &buffer)
        Frontend.execute(maxRows: 100, into: &buffer)
        Frontend.sync(into: &buffer)
        let expected: [UInt8] =
            [UInt8(ascii: "B"), 0, 0, 0, 32, 0] + Array("s1".utf8) + [0]
            + [0, 2, 0, 1, 0, 0]  // two parameter formats: binary, text
            + [0, 2, 0, 0, 0, 4, 0, 0, 0, 42, 0xFF, 0xFF, 0xFF, 0xFF]  // 42, then NULL
            + [0, 1, 0, 1]  // results in binary
            + [UInt8(ascii: "E"), 0, 0, 0, 9, 0, 0, 0, 0, 100]
            + [UInt8(ascii: "S"), 0, 0, 0, 4]
        #expect(Array(buffer.readableBytesView) == expected)
    }

    @Test func startupAndRequestsWithoutATypeByte() {
        var buffer = ByteBuffer()
        Frontend.startup([("user", "u"), ("database", "d")], into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0, 27, 0, 3, 0, 0] + Array("user\0u\0database\0d\0\0".utf8))
        buffer.clear()
        Frontend.sslRequest(into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0, 8, 4, 210, 22, 47])
        buffer.clear()
        Frontend.cancelRequest(.init(processID: 1, secretKey: 2), into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2])
    }

    @Test func saslMessagesCarryTheirLengths() {
        var buffer = ByteBuffer()
        Frontend.saslInitialResponse(mechanism: "SCRAM-SHA-256", Array("n,,n=,r=x".utf8), into: &buffer)
        #expect(
            Array(buffer.readableBytesView)
                == [UInt8(ascii: "p"), 0, 0, 0, 31] + Array("SCRAM-SHA-256\0".utf8) + [0, 0, 0, 9] + Array("n,,n=,r=x".utf8))
    }
}
