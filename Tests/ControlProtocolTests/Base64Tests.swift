import ControlProtocol
import PoolCore
import Testing

@Suite("Base64")
struct Base64Tests {
    @Test(
        "RFC 4648 test vectors",
        arguments: [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ]
    )
    func vectors(plain: String, encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(encoded) == Array(plain.utf8))
    }

    @Test("every byte value round-trips")
    func allBytes() {
        var rng = SplitMix64(seed: 3)
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        let all = (0...255).map(UInt8.init)
        #expect(Base64.encode([0xFB, 0xFF, 0xBF]) == "+/+/")
        #expect(Base64.decode(Base64.encode(all)) == all)
    }

    @Test(
        "padding is required; other alphabets, whitespace and misplaced = are refused",
        arguments: [
            "Zg", "Zg=", "Zm8", "Z===", "====", "=Zg=", "Zm9v\n", " Zm9v", "Zm-v", "Zm_v", "Zm9=v===", "Zm=v", "Zg==Zg==", "Zm9vYg=",
            "é===",
        ]
    )
    func invalid(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test("a blob parameter is written back as {\"base64\": …}")
    func blobValue() {
        #expect(SQLValue.blob([0, 1, 255]).jsonValue == ["base64": "AAH/"])
        #expect(SQLValue.text("x").jsonValue == "x")
        #expect(SQLValue.null.jsonValue == .null)
    }
}
