import NIOCore

/// Messages to the server, protocol 3.0, written straight into a buffer: a query's
/// Bind/Execute/Sync go out together in one write.
package enum Frontend {
    /// Protocol 3.0.
    package static let protocolVersion: Int32 = 196_608

    /// StartupMessage: `user`, `database` and any other parameters (`application_name`).
    package static func startup(_ parameters: [(String, String)], into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(protocolVersion)
        for (key, value) in parameters {
            buffer.writeCString(key)
            buffer.writeCString(value)
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }

    /// SSLRequest: asks the server to switch to TLS before the startup message.
    package static func sslRequest(into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(8))
        buffer.writeInteger(Int32(80_877_103))
    }

    /// CancelRequest, on a connection of its own: stops what the connection with `key` runs.
    package static func cancelRequest(_ key: BackendMessage.BackendKey, into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(16))
        buffer.writeInteger(Int32(80_877_102))
        buffer.writeInteger(key.processID)
        buffer.writeInteger(key.secretKey)
    }

    /// PasswordMessage: a cleartext or MD5 password.
    package static func password(_ text: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "p"), into: &buffer) { $0.writeCString(text) }
    }

    /// SASLInitialResponse: the mechanism and the client-first message.
    package static func saslInitialResponse(mechanism: String, _ data: [UInt8], into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "p"), into: &buffer) { buffer in
            buffer.writeCString(mechanism)
            buffer.writeInteger(Int32(data.count))
            buffer.writeBytes(data)
        }
    }

    /// SASLResponse: the client-final message.
    package static func saslResponse(_ data: [UInt8], into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "p"), into: &buffer) { $0.writeBytes(data) }
    }

    /// Parse: a named statement (or "", the unnamed one), with the parameter types given (0:
    /// the server infers it).
    package static func parse(statement: String, sql: String, parameterTypes: [UInt32], into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "P"), into: &buffer) { buffer in
            buffer.writeCString(statement)
            buffer.writeCString(sql)
            buffer.writeInteger(Int16(parameterTypes.count))
            for type in parameterTypes { buffer.writeInteger(UInt32(type)) }
        }
    }

    /// A parameter's value: nil for NULL, and whether it is in binary.
    package struct Parameter: Sendable {
        package var bytes: [UInt8]?
        package var binary: Bool

        package init(bytes: [UInt8]?, binary: Bool) {
            self.bytes = bytes
            self.binary = binary
        }
    }

    /// Bind: the unnamed portal on `statement`, with `parameters`, and results in binary for
    /// the columns `binaryResults` says (one entry for all, or one per column).
    package static func bind(statement: String, parameters: [Parameter], binaryResults: [Bool], into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "B"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(0))
            buffer.writeCString(statement)
            buffer.writeInteger(Int16(parameters.count))
            for parameter in parameters { buffer.writeInteger(Int16(parameter.binary ? 1 : 0)) }
            buffer.writeInteger(Int16(parameters.count))
            for parameter in parameters {
                if let bytes = parameter.bytes {
                    buffer.writeInteger(Int32(bytes.count))
                    buffer.writeBytes(bytes)
                } else {
                    buffer.writeInteger(Int32(-1))
                }
            }
            buffer.writeInteger(Int16(binaryResults.count))
            for binary in binaryResults { buffer.writeInteger(Int16(binary ? 1 : 0)) }
        }
    }

    /// Describe of a statement (`S`) or a portal (`P`).
    package static func describe(statement: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "D"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(ascii: "S"))
            buffer.writeCString(statement)
        }
    }

    /// Execute of the unnamed portal: at most `maxRows` rows (0: all), then PortalSuspended.
    package static func execute(maxRows: Int32, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "E"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(maxRows)
        }
    }

    /// Close of a named statement.
    package static func close(statement: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "C"), into: &buffer) { buffer in
            buffer.writeInteger(UInt8(ascii: "S"))
            buffer.writeCString(statement)
        }
    }

    /// Query: the simple protocol, for statements without parameters (BEGIN, ROLLBACK).
    package static func query(_ sql: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "Q"), into: &buffer) { $0.writeCString(sql) }
    }

    /// CopyFail: refuses a COPY … FROM STDIN the server started.
    package static func copyFail(_ reason: String, into buffer: inout ByteBuffer) {
        message(UInt8(ascii: "f"), into: &buffer) { $0.writeCString(reason) }
    }

    package static func sync(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "S"))
        buffer.writeInteger(Int32(4))
    }

    package static func terminate(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "X"))
        buffer.writeInteger(Int32(4))
    }

    private static func message(_ type: UInt8, into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        buffer.writeInteger(type)
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }
}

extension ByteBuffer {
    /// `text` and its NUL.
    package mutating func writeCString(_ text: String) {
        writeString(text)
        writeInteger(UInt8(0))
    }
}
