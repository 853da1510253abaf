import Testing

@testable import PostgresWire

/// SCRAM-SHA-256 against RFC 7677's worked example, MD5 against Python's hashlib, Base64 both ways.
@Suite
struct AuthenticationTests {
    @Test func scramMatchesRFC7677() throws {
        var client = SCRAMClient(user: "user", password: "pencil", nonce: "rOprNGfwEbeRWgbNEkqO")
        #expect(String(decoding: client.clientFirst, as: UTF8.self) == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        let final = try client.clientFinal(serverFirst: Array(serverFirst.utf8))
        #expect(
            String(decoding: final, as: UTF8.self)
                == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        try client.verify(serverFinal: Array("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        #expect(throws: WireError.self, "a forged signature") {
            try client.verify(serverFinal: Array("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        }
    }

    @Test func scramRefusesANonceThatDoesNotExtendOurs() throws {
        var client = SCRAMClient(password: "pencil", nonce: "abc")
        #expect(throws: WireError.self) { try client.clientFinal(serverFirst: Array("r=xyz123,s=AAAA,i=4096".utf8)) }
        #expect(throws: WireError.self) { try client.clientFinal(serverFirst: Array("r=abc123,s=!!,i=4096".utf8)) }
        #expect(throws: WireError.self) { try client.clientFinal(serverFirst: Array("r=abc123,s=AAAA,i=0".utf8)) }
    }

    @Test func saslprepMapsSpacesAndDropsWhatMapsToNothing() {
        #expect(SASLprep.prepare("pass\u{00A0}word\u{00AD}") == "pass word")
        #expect(SASLprep.prepare("plain ASCII") == "plain ASCII")
    }

    @Test func md5MatchesHashlib() {
        // python3: 'md5' + md5(md5(b'secretpoold').hexdigest().encode() + bytes([1, 2, 3, 4])).hexdigest()
        #expect(MD5Password.response(user: "poold", password: "secret", salt: [1, 2, 3, 4]) == "md56c60c4f1fe8f845fd64401b196abbd87")
    }

    @Test func base64RoundTripsAndRefusesGarbage() {
        for bytes in [[], [0], [0, 1], [0, 1, 2], Array(0...255)] as [[UInt8]] {
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("pencil".utf8)) == "cGVuY2ls")
        #expect(Base64.decode("cGVuY2lsMQ==") == Array("pencil1".utf8))
        #expect(Base64.decode("abc") == nil)
        #expect(Base64.decode("ab!d") == nil)
        #expect(Base64.decode("a=bc") == nil)
    }
}
