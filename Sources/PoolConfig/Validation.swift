import PoolCore

/// One pass over a parsed document: builds the `Config` and records every problem found.
///
/// Problems are collected rather than thrown at once because toml++ hands keys back sorted,
/// not in file order; `firstError` is the problem earliest in the file. Within a table,
/// unknown keys suppress "missing key" errors (a typo of a required key is reported as the
/// typo), and cross-key rules run only when every key of the table was valid.
final class Validation {
    let file: String
    let map: SourceMap
    private(set) var errors: [ConfigError] = []
    private(set) var warnings: [String] = []

    init(file: String, map: SourceMap) {
        self.file = file
        self.map = map
    }

    /// The problem earliest in the file; ties go to the one found first.
    var firstError: ConfigError? {
        errors.enumerated().min { a, b in
            let la = a.element.line ?? Int.max
            let lb = b.element.line ?? Int.max
            return la != lb ? la < lb : a.offset < b.offset
        }?.element
    }

    func error(line: Int?, context: String?, _ message: String) {
        let text = context.map { "\($0): \(message)" } ?? message
        errors.append(ConfigError(file: file, line: line, message: text))
    }

    func warning(line: Int?, context: String, _ message: String) {
        let location = line.map { "\(file):\($0)" } ?? file
        warnings.append("\(location): \(context): \(message)")
    }

    // MARK: - The document

    static let tables = ["daemon", "access", "metrics", "pool", "job", "queue"]
    static let tablesList = "[daemon], [access], [metrics], [[pool]], [[job]] and [[queue]]"

    func config(from root: [(key: String, value: TOMLNode)]) -> Config? {
        var daemon = DaemonSettings()
        var access: AccessSettings?
        var metrics = MetricsSettings()
        var poolNodes: [TOMLNode] = []
        var jobNodes: [TOMLNode] = []
        var queueNodes: [TOMLNode] = []
        for (key, value) in root {
            let line = map.line(of: key, in: "")
            switch key {
            case "daemon", "access", "metrics":
                guard case .table(let entries) = value else {
                    error(line: line, context: nil, "\(key) must be a table: write [\(key)] (got \(value.display))")
                    continue
                }
                let reader = TableReader(self, entries, table: key, context: "[\(key)]")
                switch key {
                case "daemon": daemon = self.daemon(reader)
                case "access": access = self.access(reader)
                default: metrics = self.metrics(reader)
                }
            case "pool", "job", "queue":
                guard case .array(let items) = value else {
                    error(
                        line: line, context: nil,
                        "\(key) must be an array of tables: write [[\(key)]], once per \(key) (got \(value.kindDescription))"
                    )
                    continue
                }
                switch key {
                case "pool": poolNodes = items
                case "job": jobNodes = items
                default: queueNodes = items
                }
            default:
                let suggestion = suggest(key, among: Self.tables).map { " (did you mean \(tableSyntax($0))?)" } ?? ""
                switch value {
                case .table:
                    error(
                        line: line, context: nil,
                        "unknown table [\(tomlKey(shorten(key)))]\(suggestion); valid tables are \(Self.tablesList)")
                case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .table = $0 { true } else { false } }):
                    error(
                        line: line, context: nil,
                        "unknown table [[\(tomlKey(shorten(key)))]]\(suggestion); valid tables are \(Self.tablesList)")
                default:
                    error(
                        line: line, context: nil,
                        "unknown top-level key \(tomlString(shorten(key)))\(suggestion); settings belong in \(Self.tablesList)"
                    )
                }
            }
        }
        let declared = poolNodes.enumerated().map { declarePool($1, index: $0) }
        checkDuplicates(declared.map { ($0.name, $0.nameLine) }, what: "pool")
        let pools = declared.compactMap(\.settings)
        let jobResults = jobNodes.enumerated().map { job($1, index: $0, pools: declared) }
        checkDuplicates(jobResults.map { ($0.name, $0.nameLine) }, what: "job")
        let jobs = jobResults.compactMap(\.settings)
        let queueResults = queueNodes.enumerated().map { queue($1, index: $0, pools: declared, jobs: jobs) }
        checkDuplicates(queueResults.map { ($0.name, $0.line) }, what: "queue")
        let queues = queueResults.compactMap(\.2)
        guard errors.isEmpty else { return nil }
        return Config(
            path: file, daemon: daemon, access: access, metrics: metrics, pools: pools, jobs: jobs, queues: queues, warnings: warnings)
    }

    private func tableSyntax(_ name: String) -> String {
        ["pool", "job", "queue"].contains(name) ? "[[\(name)]]" : "[\(name)]"
    }

    /// Reports every name declared again, at the later declaration.
    private func checkDuplicates(_ names: [(name: String?, line: Int?)], what: String) {
        var first: [String: Int?] = [:]
        for (name, line) in names {
            guard let name else { continue }
            if let earlier = first[name] {
                let at = earlier.map { " (first declared at line \($0))" } ?? ""
                error(line: line, context: "\(what) \(tomlString(name))", "duplicate \(what) name\(at); \(what) names must be unique")
            } else {
                first[name] = line
            }
        }
    }

    // MARK: - [daemon]

    static let daemonKeys = [
        "control_socket", "socket_mode", "socket_group", "shutdown_grace", "max_connections", "max_inflight_per_connection",
    ]
    static let accessKeys = ["operators", "submitters", "observers"]

    private func daemon(_ r: TableReader) -> DaemonSettings {
        r.rejectUnknownKeys(known: Self.daemonKeys)
        var d = DaemonSettings()
        if let path = r.string("control_socket", expected: "must be a non-empty string (the socket's path)") {
            if path.utf8.count > 107 {
                r.fail(
                    "control_socket",
                    "control_socket must be at most 107 bytes long, the limit of a Unix socket path (it is \(path.utf8.count))")
            } else {
                d.controlSocket = path
            }
        }
        if let node = r.value("socket_mode") {
            let expected = "socket_mode must be an octal string of 3 or 4 digits like \"0660\", at most \"0777\""
            if case .string(let s) = node, (3...4).contains(s.count),
                s.allSatisfy({ ("0"..."7").contains($0) }), let mode = UInt32(s, radix: 8), mode <= 0o777
            {
                d.socketMode = mode
            } else {
                r.fail("socket_mode", "\(expected) (got \(node.display))")
            }
        }
        if let group = r.string("socket_group", expected: "must be a group name (without \"@\")") {
            if group.contains("@") || group.contains(where: \.isWhitespace) || group.contains("/") || group.contains(":") {
                r.fail("socket_group", "socket_group must be a group name (without \"@\") (got \(tomlString(group)))")
            } else {
                d.socketGroup = group
            }
        }
        if let grace = r.duration("shutdown_grace", example: "30s", allowZero: true) { d.shutdownGrace = grace }
        if let n = r.integer("max_connections", minimum: 1) { d.maxConnections = n }
        if let n = r.integer("max_inflight_per_connection", minimum: 1) { d.maxInflightPerConnection = n }
        return d
    }

    // MARK: - [metrics]

    static let metricsKeys = ["listen"]

    private func metrics(_ r: TableReader) -> MetricsSettings {
        r.rejectUnknownKeys(known: Self.metricsKeys)
        var m = MetricsSettings()
        if let node = r.value("listen") {
            let expected = "listen must be an IP address and a port like \"127.0.0.1:9187\" or \"[::1]:9187\""
            if case .string(let text) = node, let address = ListenAddress(parsing: text) {
                m.listen = address
                m.listenLine = r.line("listen")
            } else {
                r.fail("listen", "\(expected) (got \(node.display))")
            }
        }
        return m
    }

    // MARK: - [access]

    private func access(_ r: TableReader) -> AccessSettings {
        r.rejectUnknownKeys(known: Self.accessKeys)
        return AccessSettings(
            operators: principals("operators", r),
            submitters: principals("submitters", r),
            observers: principals("observers", r)
        )
    }

    private func principals(_ key: String, _ r: TableReader) -> [String] {
        guard let node = r.value(key) else { return [] }
        let what = "a user name, \"@group\" or \"*\""
        guard case .array(let items) = node else {
            r.fail(key, "\(key) must be an array of entries, each \(what), like [\"root\", \"@poold\"] (got \(node.display))")
            return []
        }
        var result: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item, isPrincipal(s) else {
                r.fail(key, "\(key)[\(i)] must be \(what) (got \(item.display))")
                continue
            }
            result.append(s)
        }
        return result
    }

    /// `*`, or a user or `@group` name: letters, digits, `_`, `.`, `-` (not first), and a
    /// trailing `$` as some account names have.
    private func isPrincipal(_ s: String) -> Bool {
        if s == "*" { return true }
        var name = Substring(s)
        if name.hasPrefix("@") { name = name.dropFirst() }
        if name.hasSuffix("$") { name = name.dropLast() }
        guard !name.isEmpty, name.count <= 256, name.first != "-" else { return false }
        return name.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "." || c == "-"
        }
    }
}

/// Pool and job names: what may appear in journal fields, metrics labels and `poolctl` arguments.
func isValidName(_ s: String) -> Bool {
    !s.isEmpty && s.unicodeScalars.count <= 64
        && s.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
        }
}

let nameRule = "1 to 64 letters, digits, '_' or '-'"
