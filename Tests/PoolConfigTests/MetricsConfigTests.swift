import PoolConfig
import Testing

/// `[metrics] listen`: off by default, an IP address and a port, errors at the key's line, and
/// what a reload that changes it reports.
struct MetricsConfigTests {
    @Test func offByDefault() throws {
        let c = try #require(config("[[pool]]\nname = \"main\"\npath = \"/tmp/m.db\"\n"))
        #expect(c.metrics.listen == nil)
        #expect(c.effectiveTOML().contains("# [metrics] is not set: no HTTP endpoint"))
    }

    @Test(arguments: [
        ("127.0.0.1:9187", "127.0.0.1", 9187, "127.0.0.1:9187"),
        ("0.0.0.0:1", "0.0.0.0", 1, "0.0.0.0:1"),
        ("[::1]:65535", "::1", 65535, "[::1]:65535"),
        ("[0:0::0001]:9187", "::1", 9187, "[::1]:9187"),
        ("[::]:9187", "::", 9187, "[::]:9187"),
    ])
    func addressesAreParsedAndWrittenBack(text: String, host: String, port: Int, written: String) throws {
        let c = try #require(config("# metrics\n[metrics]\nlisten = \"\(text)\"\n"))
        #expect(c.metrics.listen == ListenAddress(host: host, port: port))
        #expect(c.metrics.listenLine == 3)
        #expect(c.metrics.listen?.description == written)
        #expect(c.effectiveTOML().contains("[metrics]\nlisten = \"\(written)\"\n"))
    }

    @Test(arguments: [
        "localhost:9187", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1: 80",
        "127.1:9187", "256.0.0.1:9187", "::1:9187", "[::1]9187", "[::1]:", "[127.0.0.1]:9187", "[fe80::1%lo]:9187",
        ":9187", "", "127.0.0.1:９１８７", "127.0.0.1:000009187",
    ])
    func badAddressesNameTheLine(text: String) {
        let expected =
            "poold.toml:3: [metrics]: listen must be an IP address and a port like \"127.0.0.1:9187\" or \"[::1]:9187\""
        guard let error = configError("[daemon]\n[metrics]\nlisten = \"\(text)\"\n") else { return }
        #expect(error.line == 3)
        #expect(error.description.hasPrefix(expected), "\(error)")
    }

    @Test func wrongTypesAndUnknownKeysAreRefused() {
        expectError(
            "[metrics]\nlisten = 9187\n",
            "poold.toml:2: [metrics]: listen must be an IP address and a port like \"127.0.0.1:9187\" or \"[::1]:9187\" (got 9187)")
        expectError(
            "[metrics]\nlisten = \"127.0.0.1:9187\"\nlistne = 1\n",
            "poold.toml:3: [metrics]: unknown key \"listne\" (did you mean \"listen\"?)")
        expectError("metrics = \"127.0.0.1:9187\"\n", "poold.toml:1: metrics must be a table: write [metrics] (got \"127.0.0.1:9187\")")
    }

    @Test func aReloadReportsWhereTheListenerGoes() throws {
        let off = try #require(config("[daemon]\n"))
        let on = try #require(config("[metrics]\nlisten = \"127.0.0.1:9187\"\n"))
        let moved = try #require(config("# moved\n\n[metrics]\nlisten = \"127.0.0.1:9188\"\n"))
        let sameAddressOtherLine = try #require(config("\n\n[metrics]\nlisten = \"127.0.0.1:9187\"\n"))
        #expect(ConfigDiff(running: off, new: on).otherChanges == ["metrics listening on 127.0.0.1:9187"])
        #expect(ConfigDiff(running: on, new: moved).otherChanges == ["metrics listening on 127.0.0.1:9188"])
        #expect(ConfigDiff(running: on, new: off).otherChanges == ["metrics listener stopped"])
        #expect(ConfigDiff(running: on, new: sameAddressOtherLine).otherChanges.isEmpty, "a moved line is not a change")
        #expect(ConfigDiff(running: on, new: sameAddressOtherLine).applied.metrics.listenLine == 4)
    }
}
