import ControlProtocol
import PoolCore
import Testing

@Suite("JSON writing")
struct JSONWriterTests {

    func written(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        body(&writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    @Test("strings escape quotes, backslashes, control characters and U+2028/2029; other text is raw")
    func stringEscaping() {
        let input = "\"\\/\n\r\t\u{8}\u{C}\u{0}\u{1}\u{1F}\u{7F}é€😀\u{2028}\u{2029}\u{2027}"
        let expected = #""\"\\/\n\r\t\b\f\u0000\u0001\u001f"# + "\u{7F}é€😀" + #"\u2028\u2029"# + "\u{2027}\""
        #expect(written { $0.writeString(input) } == expected)
        #expect(written { $0.writeString("") } == #""""#)
        #expect(written { $0.writeString("plain text") } == #""plain text""#)
    }

    @Test(
        "integers",
        arguments: [
            (Int64(0), "0"), (-1, "-1"), (9, "9"), (10, "10"), (-10, "-10"), (1532, "1532"),
            (.max, "9223372036854775807"), (.min, "-9223372036854775808"),
        ]
    )
    func integers(value: Int64, expected: String) {
        #expect(written { $0.writeInt(value) } == expected)
    }

    @Test(
        "doubles: shortest round-trip text, always a float in JSON; non-finite as null",
        arguments: [
            (1.5, "1.5"), (100.0, "100.0"), (1e20, "1e+20"), (1e-7, "1e-07"), (-0.0, "-0.0"), (0.1, "0.1"),
            (Double.leastNonzeroMagnitude, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
            (Double.nan, "null"), (Double.infinity, "null"), (-Double.infinity, "null"),
        ]
    )
    func doubles(value: Double, expected: String) throws {
        let text = written { $0.writeDouble(value) }
        #expect(text == expected)
        if value.isFinite {
            #expect(try JSON.parse(text) == .double(value))
        }
    }

    @Test("values encode compactly, keys in order")
    func encode() {
        let value: JSONValue = [
            "z": 1, "a": [true, false, nil, 2.5, "s"], "m": [:], "e": [],
        ]
        #expect(JSON.encode(value) == #"{"z":1,"a":[true,false,null,2.5,"s"],"m":{},"e":[]}"#)
        var writer = JSONWriter(capacity: 4)
        writer.writeRaw("{\"id\":")
        writer.writeInt(7)
        writer.writeRaw(String(",\"ok\":true}"))
        #expect(writer.string == #"{"id":7,"ok":true}"#)
    }

    @Test("JSONObject keeps order; setting replaces in place, appends new keys, nil removes")
    func objectSemantics() {
        var object: JSONObject = ["b": 1, "a": 2]
        object["b"] = 3
        object["c"] = 4
        #expect(object.keys == ["b", "a", "c"])
        #expect(object["b"] == .int(3))
        object["a"] = nil
        #expect(object.keys == ["b", "c"])
        #expect(object["a"] == nil)
        #expect(!object.isEmpty && JSONObject().isEmpty)
        #expect(object.map(\.key) == ["b", "c"])
        let duplicated: JSONObject = ["k": 1, "k": 2]
        #expect(duplicated.entries == [JSONObject.Entry(key: "k", value: 2)])
    }

    // MARK: Round trips

    @Test("generated values survive encode → parse unchanged", arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func roundTrip(seed: UInt64) throws {
        var generator = ValueGenerator(seed: seed)
        for _ in 0..<300 {
            let value = generator.value(depth: 0)
            let text = JSON.encode(value)
            let parsed = try JSON.parse(text)
            #expect(parsed == value, "\(text)")
            #expect(JSON.encode(parsed) == text)
        }
    }

    @Test("every finite double round-trips bit for bit")
    func doubleRoundTrip() throws {
        var rng = SplitMix64(seed: 42)
        var checked = 0
        while checked < 20_000 {
            let d = Double(bitPattern: rng.next())
            guard d.isFinite else { continue }
            checked += 1
            var writer = JSONWriter()
            writer.writeDouble(d)
            guard case .double(let back) = try JSON.parse(writer.bytes) else {
                Issue.record("\(d) did not read back as a double")
                return
            }
            #expect(back.bitPattern == d.bitPattern, "\(d)")
        }
        for d in [Double.leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude, -.ulpOfOne, 1 / 3.0] {
            #expect(try JSON.parse(JSON.encode(.double(d))) == .double(d))
        }
    }

    @Test("random byte strings either fail to parse or re-encode to something that parses the same")
    func arbitraryBytes() {
        var rng = SplitMix64(seed: 7)
        let alphabet = Array(#"{}[]:,"\\u0123456789abcdefnulltrue-+.eE "#.utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xA9, 0xED, 0xFF]
        for _ in 0..<20_000 {
            let length = Int(rng.next() % 24)
            let bytes = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            guard let value = try? JSON.parse(bytes) else { continue }
            let again = try? JSON.parse(JSON.encode(value))
            #expect(again == value, "\(bytes)")
        }
    }
}

/// A seeded generator of JSON values covering every case, awkward strings included.
struct ValueGenerator {
    var rng: SplitMix64

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
    }

    mutating func below(_ n: Int) -> Int {
        Int(rng.next() % UInt64(n))
    }

    mutating func value(depth: Int) -> JSONValue {
        let kinds = depth >= 4 ? 5 : 7
        switch below(kinds) {
        case 0: return .null
        case 1: return .bool(below(2) == 0)
        case 2:
            switch below(4) {
            case 0: return .int(.max)
            case 1: return .int(.min)
            case 2: return .int(Int64(below(2000)) - 1000)
            default: return .int(Int64(bitPattern: rng.next()))
            }
        case 3:
            while true {
                let d = below(3) == 0 ? Double(below(1000)) / 8 : Double(bitPattern: rng.next())
                if d.isFinite { return .double(d) }
            }
        case 4: return .string(string())
        case 5: return .array((0..<below(5)).map { _ in value(depth: depth + 1) })
        default:
            var object = JSONObject()
            for _ in 0..<below(5) { object[string()] = value(depth: depth + 1) }
            return .object(object)
        }
    }

    mutating func string() -> String {
        let pool: [Unicode.Scalar] = [
            "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1F}", "\u{7F}", "é", "€",
            "\u{2028}", "\u{2029}", "\u{FEFF}", "\u{FFFF}", "😀", "\u{10FFFF}", "\u{E9}", "\u{301}",
        ]
        var scalars = String.UnicodeScalarView()
        for _ in 0..<below(12) { scalars.append(pool[below(pool.count)]) }
        return String(scalars)
    }
}
