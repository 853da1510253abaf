import NIOCore

/// A message from the server, protocol 3.0 (PostgreSQL's "Message Formats"). Decoded from one
/// whole message body; a data row keeps its bytes and is read in place.
package enum BackendMessage: Sendable, Equatable {
    case authentication(Authentication)
    case backendKeyData(BackendKey)
    case bindComplete
    case closeComplete
    case commandComplete(tag: String)
    case copyBothResponse
    case copyData
    case copyDone
    case copyInResponse
    case copyOutResponse
    case dataRow(DataRow)
    case emptyQueryResponse
    case errorResponse(ServerFields)
    case negotiateProtocolVersion(newestMinor: Int32, unrecognized: [String])
    case noData
    case noticeResponse(ServerFields)
    case notificationResponse(processID: Int32, channel: String, payload: String)
    case parameterDescription([UInt32])
    case parameterStatus(name: String, value: String)
    case parseComplete
    case portalSuspended
    case readyForQuery(TransactionStatus)
    case rowDescription([Column])

    /// What the server asks to authenticate the connection.
    package enum Authentication: Sendable, Equatable {
        case ok
        case cleartextPassword
        case md5Password(salt: [UInt8])
        case sasl(mechanisms: [String])
        case saslContinue([UInt8])
        case saslFinal([UInt8])
        /// Kerberos, GSSAPI, SSPI: methods poold does not speak. The code names which.
        case unsupported(code: Int32)
    }

    /// What a CancelRequest for this connection must carry.
    package struct BackendKey: Sendable, Hashable {
        package var processID: Int32
        package var secretKey: Int32

        package init(processID: Int32, secretKey: Int32) {
            self.processID = processID
            self.secretKey = secretKey
        }
    }

    /// ReadyForQuery's transaction status.
    package enum TransactionStatus: UInt8, Sendable {
        case idle = 73  // 'I'
        case inTransaction = 84  // 'T'
        case failedTransaction = 69  // 'E'
    }

    /// One column of a RowDescription.
    package struct Column: Sendable, Equatable {
        package var name: String
        package var tableOID: UInt32
        package var attribute: Int16
        package var typeOID: UInt32
        package var typeSize: Int16
        package var typeModifier: Int32
        /// 0: text, 1: binary.
        package var format: Int16
    }

    /// A DataRow's columns, read in place from the message's bytes.
    package struct DataRow: Sendable, Equatable {
        package let count: Int
        package let bytes: ByteBuffer

        /// Each column's value; nil for NULL.
        package var columns: [ByteBuffer?] {
            var buffer = bytes
            var out: [ByteBuffer?] = []
            out.reserveCapacity(count)
            for _ in 0..<count {
                guard let length: Int32 = buffer.readInteger() else { break }
                out.append(length < 0 ? nil : buffer.readSlice(length: Int(length)))
            }
            return out
        }
    }

    /// The fields of an ErrorResponse or NoticeResponse, by their one-byte codes.
    package struct ServerFields: Sendable, Equatable {
        package var fields: [UInt8: String]

        package init(_ fields: [UInt8: String]) {
            self.fields = fields
        }

        package var sqlState: String { fields[UInt8(ascii: "C")] ?? "" }
        package var message: String { fields[UInt8(ascii: "M")] ?? "" }
        /// Not localized (`V`, since 9.6), else the localized one (`S`).
        package var severity: String { fields[UInt8(ascii: "V")] ?? fields[UInt8(ascii: "S")] ?? "" }
        package var detail: String? { fields[UInt8(ascii: "D")] }
        package var hint: String? { fields[UInt8(ascii: "H")] }
    }
}

/// Why a connection cannot go on: the server broke the protocol, authentication cannot be
/// done as configured, TLS cannot be had, or the connection ended.
package struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        /// A message that does not follow the protocol.
        case protocolViolation
        /// Authentication failed or was refused before a password went out (`require_auth`).
        case authentication
        /// The server asks for a password, and none was given.
        case passwordNeeded
        /// The server asks for something poold does not do (GSSAPI, another SASL mechanism).
        case unsupported
        /// TLS could not be had as `sslmode` requires.
        case tls
        /// The connection ended, or did not start in time.
        case closed
    }

    package var message: String
    package var kind: Kind

    package init(_ message: String, kind: Kind = .protocolViolation) {
        self.message = message
        self.kind = kind
    }

    package var description: String { kind == .protocolViolation ? "PostgreSQL protocol error: \(message)" : message }
}

extension BackendMessage {
    /// Decodes one message: its type byte and its whole body (the length word already read).
    package static func decode(type: UInt8, body: inout ByteBuffer) throws(WireError) -> BackendMessage {
        switch type {
        case UInt8(ascii: "R"): return .authentication(try authentication(&body))
        case UInt8(ascii: "K"):
            return .backendKeyData(BackendKey(processID: try body.int32(), secretKey: try body.int32()))
        case UInt8(ascii: "2"): return .bindComplete
        case UInt8(ascii: "3"): return .closeComplete
        case UInt8(ascii: "C"): return .commandComplete(tag: try body.cString())
        case UInt8(ascii: "W"): return .copyBothResponse
        case UInt8(ascii: "d"): return .copyData
        case UInt8(ascii: "c"): return .copyDone
        case UInt8(ascii: "G"): return .copyInResponse
        case UInt8(ascii: "H"): return .copyOutResponse
        case UInt8(ascii: "D"):
            let count = Int(try body.int16())
            guard count >= 0 else { throw WireError("a DataRow with \(count) columns") }
            return .dataRow(DataRow(count: count, bytes: body.readSlice(length: body.readableBytes) ?? ByteBuffer()))
        case UInt8(ascii: "I"): return .emptyQueryResponse
        case UInt8(ascii: "E"): return .errorResponse(try fields(&body))
        case UInt8(ascii: "v"):
            let minor = try body.int32()
            let count = try body.int32()
            var names: [String] = []
            for _ in 0..<max(0, count) { names.append(try body.cString()) }
            return .negotiateProtocolVersion(newestMinor: minor, unrecognized: names)
        case UInt8(ascii: "n"): return .noData
        case UInt8(ascii: "N"): return .noticeResponse(try fields(&body))
        case UInt8(ascii: "A"):
            return .notificationResponse(processID: try body.int32(), channel: try body.cString(), payload: try body.cString())
        case UInt8(ascii: "t"):
            let count = try body.int16()
            var types: [UInt32] = []
            for _ in 0..<max(0, count) { types.append(UInt32(bitPattern: try body.int32())) }
            return .parameterDescription(types)
        case UInt8(ascii: "S"): return .parameterStatus(name: try body.cString(), value: try body.cString())
        case UInt8(ascii: "1"): return .parseComplete
        case UInt8(ascii: "s"): return .portalSuspended
        case UInt8(ascii: "Z"):
            let byte: UInt8 = try body.byte()
            guard let status = TransactionStatus(rawValue: byte) else { throw WireError("ReadyForQuery with status \(byte)") }
            return .readyForQuery(status)
        case UInt8(ascii: "T"):
            let count = try body.int16()
            var columns: [Column] = []
            for _ in 0..<max(0, count) {
                columns.append(
                    Column(
                        name: try body.cString(), tableOID: UInt32(bitPattern: try body.int32()), attribute: try body.int16(),
                        typeOID: UInt32(bitPattern: try body.int32()), typeSize: try body.int16(), typeModifier: try body.int32(),
                        format: try body.int16()))
            }
            return .rowDescription(columns)
        default:
            throw WireError("unknown message type \(type)")
        }
    }

    private static func authentication(_ body: inout ByteBuffer) throws(WireError) -> Authentication {
        let code = try body.int32()
        switch code {
        case 0: return .ok
        case 3: return .cleartextPassword
        case 5:
            guard let salt = body.readBytes(length: 4) else { throw WireError("an MD5 request without its salt") }
            return .md5Password(salt: salt)
        case 10:
            var mechanisms: [String] = []
            while body.readableBytes > 0 {
                let name = try body.cString()
                if name.isEmpty { break }
                mechanisms.append(name)
            }
            return .sasl(mechanisms: mechanisms)
        case 11: return .saslContinue(body.readBytes(length: body.readableBytes) ?? [])
        case 12: return .saslFinal(body.readBytes(length: body.readableBytes) ?? [])
        default: return .unsupported(code: code)
        }
    }

    private static func fields(_ body: inout ByteBuffer) throws(WireError) -> ServerFields {
        var fields: [UInt8: String] = [:]
        while true {
            let code = try body.byte()
            if code == 0 { break }
            fields[code] = try body.cString()
        }
        return ServerFields(fields)
    }
}

extension ByteBuffer {
    fileprivate mutating func byte() throws(WireError) -> UInt8 {
        guard let value: UInt8 = readInteger() else { throw WireError("a message ended early") }
        return value
    }

    fileprivate mutating func int16() throws(WireError) -> Int16 {
        guard let value: Int16 = readInteger() else { throw WireError("a message ended early") }
        return value
    }

    fileprivate mutating func int32() throws(WireError) -> Int32 {
        guard let value: Int32 = readInteger() else { throw WireError("a message ended early") }
        return value
    }

    /// A NUL-terminated string.
    fileprivate mutating func cString() throws(WireError) -> String {
        guard let end = readableBytesView.firstIndex(of: 0) else { throw WireError("a string without its NUL") }
        let text = readString(length: end - readableBytesView.startIndex) ?? ""
        moveReaderIndex(forwardBy: 1)
        return text
    }
}
