import PoolConfig
import Testing

/// The line scanner must stay in step through everything TOML allows between keys.
@Suite struct SourceLineTests {
    @Test func linesSurviveMultiLineStringsArraysAndComments() {
        expectError(
            #"""
            # [[pool]] in a comment is not a header
            [[pool]]   # the first pool
            name = "a"
            path = "a.db"

            [[job]]
            name = "j"
            pool = "a"
            sql = """
            SELECT 1
            -- max_waiter = 10
            [[pool]]
            """

            [[pool]]
            "name" = "b"
            command = [
                "x", # a comment ]
                "[[pool]]",
                '''y''',
            ]
            kind = 'exec'
            max_waiter = 10
            """#,
            "poold.toml:23: pool \"b\": unknown key \"max_waiter\" (did you mean \"max_waiters\"?)"
        )
    }

    @Test func literalAndEscapedStringsDoNotConfuseTheScanner() {
        expectError(
            #"""
            [[pool]]
            name = "a"
            path = 'C:\path\'
            [[job]]
            name = "j"
            pool = "a"
            sql = '''
            ''''
            timeuot = "x\"y = 1\\"
            """#,
            "poold.toml:9: job \"j\": unknown key \"timeuot\" (did you mean \"timeout\"?)"
        )
    }

    @Test func aPoolWrittenInlineFallsBackToTheLineOfItsKey() throws {
        let error = try #require(configError("# inline\npool = [\n  { name = \"a\", path = \"a.db\", max = 0 },\n]\n"))
        #expect(error.description == "poold.toml:2: pool \"a\": max must be a positive integer (got 0)")
    }

    @Test func dottedKeysAreFoundByTheirFirstPart() {
        expectError(
            "[[pool]]\nname = \"a\"\npath = \"a.db\"\n\nlimits.max = 3\n",
            "poold.toml:5: pool \"a\": unknown key \"limits\""
        )
    }

    @Test func aSubtableHeaderIsTheLineOfItsKey() {
        expectError(
            "[[pool]]\nname = \"a\"\npath = \"a.db\"\n\n[pool.extra]\nx = 1\n",
            "poold.toml:5: pool \"a\": unknown key \"extra\""
        )
    }

    @Test func crlfLineEndingsCountLines() {
        expectError(
            "[[pool]]\r\nname = \"a\"\r\npath = \"a.db\"\r\nmax = 0\r\n",
            "poold.toml:4: pool \"a\": max must be a positive integer (got 0)"
        )
    }

    @Test func theEarliestProblemInTheFileIsReported() {
        // toml++ hands keys back sorted; the report follows the file instead.
        expectError(
            "[[pool]]\nname = \"a\"\npath = \"a.db\"\nzzz = 1\naaa = 2\n\n[daemon]\nbogus = 1\n",
            "poold.toml:4: pool \"a\": unknown key \"zzz\""
        )
    }
}

/// Inputs that trip assertions inside toml++ 3.4.0 (an abort in debug builds): the loader
/// must turn each into an ordinary error at the right line.
@Suite struct TOMLHazardTests {
    @Test(arguments: [
        ("[#]", "Error while parsing table header: expected a table name after '['"),
        ("[=]", "Error while parsing table header: expected a table name after '['"),
        ("[[.pool]]", "Error while parsing table header: expected a table name after '['"),
        ("[ \t", "Error while parsing table header: expected a table name after '['"),
        ("x = 1980-05-27T:", "Error while parsing date-time: expected a time after 'T'"),
        ("x = [1, 1980-05-27tZ]", "Error while parsing date-time: expected a time after 'T'"),
        ("x = 1980-05-27 7", "Error while parsing key-value pair: expected a comment or whitespace after the value, saw '7'"),
        ("x = [0989-05-2\u{1} 7 ]", "Error while parsing key-value pair: expected a comment or whitespace after the value, saw '7'"),
        ("x = 1979-05-2= 8", "Error while parsing key-value pair: expected a comment or whitespace after the value, saw '8'"),
        ("x = [1979-05-2\" 8]", "Error while parsing key-value pair: expected a comment or whitespace after the value, saw '8'"),
        ("x = { a = 1979-05-2{ 8 }", "Error while parsing key-value pair: expected a comment or whitespace after the value, saw '8'"),
        ("x = [1, }]", "Error while parsing array: expected a value or closing ']', saw '}'"),
        ("x = { a = [ # c\n}]}", "Error while parsing array: expected a value or closing ']', saw '}'"),
        ("x = [[1],\u{2028}]", "Error while parsing array: expected a value or closing ']', saw a Unicode line break"),
        ("x = [\u{85}]", "Error while parsing array: expected a value or closing ']', saw a Unicode line break"),
    ])
    func hazardsBecomeSyntaxErrors(line: String, message: String) {
        let hazardLine = 3 + line.filter { $0 == "\n" }.count
        expectError("[daemon]\n# fine so far\n\(line)\n[access]\n", "poold.toml:\(hazardLine): \(message)")
    }

    @Test func anEarlierSyntaxErrorIsStillReportedFirst() throws {
        let error = try #require(configError("a = \n[#]\n"))
        #expect(error.line == 1)
    }

    @Test func lookalikesInStringsCommentsAndKeysAreFine() throws {
        let config = try ConfigLoader.parse(
            """
            # [#] 1980-05-27T: 1980-05-27 7
            [daemon]   # [=]
            control_socket = "[#] 1980-05-27T: x 7 "

            [[pool]]
            name = "m"
            path = \"\"\"
            [#]
            1980-05-27T:\"\"\"

            [[job]]
            name = "j"
            pool = "m"
            sql = ['1980-05-27 7 ', "[=]"]
            """, path: "poold.toml")
        #expect(config.daemon.controlSocket == "[#] 1980-05-27T: x 7 ")
        #expect(config.pools.first?.backend == .sqlite(SQLiteSettings(path: "[#]\n1980-05-27T:")))
        #expect(config.jobs.first?.sql == ["1980-05-27 7 ", "[=]"])
    }
}
