import Crypto

/// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the user name in the messages is
/// empty (the server takes the startup message's), and there is no channel binding (`n,,`).
///
/// 1. `clientFirst` goes out in SASLInitialResponse;
/// 2. `clientFinal(serverFirst:)` answers the server's SASLContinue, proving the password;
/// 3. `verify(serverFinal:)` checks the server's SASLFinal, proving the server knew it too.
package struct SCRAMClient: Sendable {
    package static let mechanism = "SCRAM-SHA-256"

    private let password: [UInt8]
    private let clientNonce: String
    private let clientFirstBare: String
    private var serverSignature: [UInt8]?

    /// `nonce`: for tests; by default 24 random printable characters.
    package init(user: String = "", password: String, nonce: String? = nil) {
        self.password = Array(SASLprep.prepare(password).utf8)
        let nonce = nonce ?? Self.randomNonce()
        self.clientNonce = nonce
        self.clientFirstBare = "n=\(Self.escape(user)),r=\(nonce)"
    }

    package var clientFirst: [UInt8] { Array("n,,\(clientFirstBare)".utf8) }

    /// The client-final message for the server-first one; throws if it is malformed, or its
    /// nonce does not extend ours.
    package mutating func clientFinal(serverFirst: [UInt8]) throws(WireError) -> [UInt8] {
        let text = String(decoding: serverFirst, as: UTF8.self)
        let attributes = Self.attributes(text)
        guard let nonce = attributes["r"], nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count,
            let saltText = attributes["s"], let salt = Base64.decode(saltText),
            let iterationText = attributes["i"], let iterations = Int(iterationText), iterations > 0, iterations <= 10_000_000
        else { throw WireError("the server's SCRAM message is malformed: \(text)") }
        let salted = Self.hi(password, salt: salt, iterations: iterations)
        let clientKey = Self.hmac(salted, Array("Client Key".utf8))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(text),\(withoutProof)".utf8)
        let clientSignature = Self.hmac(storedKey, authMessage)
        let proof = zip(clientKey, clientSignature).map { $0 ^ $1 }
        let serverKey = Self.hmac(salted, Array("Server Key".utf8))
        serverSignature = Self.hmac(serverKey, authMessage)
        return Array("\(withoutProof),p=\(Base64.encode(proof))".utf8)
    }

    /// Checks the server's signature: a server that does not know the password cannot forge it.
    package func verify(serverFinal: [UInt8]) throws(WireError) {
        let text = String(decoding: serverFinal, as: UTF8.self)
        let attributes = Self.attributes(text)
        if let error = attributes["e"] { throw WireError("the server refused the SCRAM exchange: \(error)", kind: .authentication) }
        guard let expected = serverSignature, let signature = attributes["v"].flatMap(Base64.decode), signature == expected else {
            throw WireError("the server's SCRAM signature does not match: it may not be the server it claims to be", kind: .authentication)
        }
    }

    // MARK: Parts

    private static func attributes(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in text.split(separator: ",") {
            guard let equals = part.firstIndex(of: "="), equals > part.startIndex else { continue }
            out[String(part[..<equals])] = String(part[part.index(after: equals)...])
        }
        return out
    }

    /// `=` and `,` in a SCRAM name are written `=3D` and `=2C`.
    private static func escape(_ name: String) -> String {
        name.replacing("=", with: "=3D").replacing(",", with: "=2C")
    }

    private static func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    /// Hi(): PBKDF2 with HMAC-SHA-256, one block.
    private static func hi(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = SymmetricKey(data: password)
        var u = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = u
        for _ in 1..<iterations {
            u = Array(HMAC<SHA256>.authenticationCode(for: u, using: key))
            for index in result.indices { result[index] ^= u[index] }
        }
        return result
    }

    private static func randomNonce() -> String {
        // Printable ASCII but ',' (RFC 5802 "printable").
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var generator = SystemRandomNumberGenerator()
        return String((0..<24).map { _ in alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))] })
    }
}

/// The password as SCRAM hashes it. SASLprep (RFC 4013) maps non-ASCII spaces to a space and
/// deletes what maps to nothing; like libpq, a password it would reject is used as it is.
/// Not done: NFKC normalization, which the standard library lacks — a password whose
/// compatibility characters normalize differently (rare) must be set with its NFKC form.
package enum SASLprep {
    package static func prepare(_ password: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in password.unicodeScalars {
            switch scalar.value {
            case 0x00A0, 0x1680, 0x2000...0x200B, 0x202F, 0x205F, 0x3000: out.append(" ")
            case 0x00AD, 0x034F, 0x1806, 0x180B...0x180D, 0x200C, 0x200D, 0x2060, 0xFE00...0xFE0F, 0xFEFF: continue
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}

/// MD5 authentication: `md5` and the hex MD5 of (the hex MD5 of password and user) and salt.
package enum MD5Password {
    package static func response(user: String, password: String, salt: [UInt8]) -> String {
        let inner = hex(Array(Insecure.MD5.hash(data: Array((password + user).utf8))))
        return "md5" + hex(Array(Insecure.MD5.hash(data: Array(inner.utf8) + salt)))
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Base64 (RFC 4648, with padding), for SCRAM's salts, proofs and signatures.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    package static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
            let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(index + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil if `text` is not Base64.
    package static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for char in text.utf8 {
            if char == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0, let value = alphabet.firstIndex(of: char) else { return nil }
            values.append(UInt8(value))
        }
        guard (values.count + padding) % 4 == 0, padding <= 2 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            let v = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (18 - 6 * UInt32($1.offset)) }
            out.append(UInt8(v >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(v >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(v & 0xFF)) }
            index += 4
        }
        return out
    }
}
