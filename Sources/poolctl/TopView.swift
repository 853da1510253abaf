import ControlProtocol
import PoolCore

/// What `poolctl top` prints: a title line and a table, fitted to a width. Pure, so that the
/// layout rules (drop columns right to left, truncate names, never wrap) are unit tests.
enum TopView {
    /// A column: its header, one cell per row, and how it gives way on a narrow terminal.
    struct Column {
        var header: String
        var cells: [String]
        /// Numbers read best right-aligned.
        var rightAligned = true
        /// At most this wide when a width is imposed (long pool names are cut with "…").
        var cap: Int?
        /// Takes what room is left, cut with "…", instead of its natural width (the last error).
        var flexible = false
    }

    /// The table's columns, most important first: on a narrow terminal they are dropped from
    /// the right.
    static func columns(_ rows: [TopRow]) -> [Column] {
        func count(_ value: Int64?) -> String { value.map(String.init) ?? "-" }
        var columns = [
            Column(header: "POOL", cells: rows.map(\.pool.name), rightAligned: false, cap: 24),
            Column(header: "STATE", cells: rows.map(\.pool.state), rightAligned: false),
            Column(header: "OPEN", cells: rows.map { count($0.pool.open) }),
            Column(header: "IDLE", cells: rows.map { count($0.pool.idle) }),
            Column(header: "LEASED", cells: rows.map { count($0.pool.leased) }),
            Column(header: "WAITING", cells: rows.map { count($0.pool.waiting) }),
        ]
        let rateHeaders = ["OK/s", "FAILED/s"]
        for (outcome, header) in zip(TopRow.outcomes.prefix(2), rateHeaders) {
            columns.append(Column(header: header, cells: rows.map { rate($0.rate(outcome)) }))
        }
        columns += [
            Column(header: "WAIT p50", cells: rows.map { quantile($0.waitP50) }),
            Column(header: "WAIT p99", cells: rows.map { quantile($0.waitP99) }),
            Column(header: "EXEC p50", cells: rows.map { quantile($0.execP50) }),
            Column(header: "EXEC p99", cells: rows.map { quantile($0.execP99) }),
        ]
        for (outcome, header) in zip(TopRow.outcomes.dropFirst(2), ["TIMEOUT/s", "CANCEL/s", "OVERLOAD/s"]) {
            columns.append(Column(header: header, cells: rows.map { rate($0.rate(outcome)) }))
        }
        columns.append(Column(header: "LAST ERROR", cells: rows.map { $0.pool.lastError ?? "-" }, rightAligned: false, flexible: true))
        return columns
    }

    /// The title: what poold is doing and what the numbers cover.
    static func title(_ snapshot: TopSnapshot, seconds: Double?, every: Duration?, interactive: Bool) -> String {
        var parts = ["poold \(snapshot.daemonState ?? "?")", "\(snapshot.pools.count) pool\(snapshot.pools.count == 1 ? "" : "s")"]
        if let every { parts.append("every \(every.limitDescription)") }
        if let seconds {
            parts.append("rates and percentiles over the last \(decimal(seconds))s")
        } else {
            parts.append("rates from the next sample")
        }
        if interactive { parts.append("q quits") }
        return parts.joined(separator: " · ")
    }

    /// The whole view: `title`, then the table. With a `width`, no line is longer than it:
    /// columns are dropped from the right, names and the last error are cut with "…", and
    /// whatever is still too long is cut at the width. When the last-error column does not fit,
    /// each pool's last error gets a line of its own under the table instead: on a narrow
    /// terminal it is the one thing an operator must still see. With a `height`, at most that
    /// many lines (the last one says how many are not shown).
    static func render(title: String, rows: [TopRow], width: Int?, height: Int? = nil) -> [String] {
        let columns = columns(rows)
        let (table, shown) = table(columns, rowCount: rows.count, width: width)
        var lines = [title] + table
        if shown < columns.count {
            let errors = rows.compactMap { row in row.pool.lastError.map { "\(row.pool.name): \($0)" } }
            if !errors.isEmpty { lines += ["", "LAST ERROR"] + errors }
        }
        if let height, lines.count > max(1, height) {
            let kept = max(0, height - 1)
            let hidden = lines.count - kept
            lines = Array(lines.prefix(kept)) + ["… \(hidden) more line\(hidden == 1 ? "" : "s"): enlarge the terminal"]
        }
        guard let width else { return lines }
        return lines.map { fit($0, max(0, width)) }
    }

    /// The table's lines, and how many of `columns` (from the left) it shows.
    static func table(_ columns: [Column], rowCount: Int, width: Int?) -> (lines: [String], shown: Int) {
        let separator = 2
        var chosen: [(column: Column, width: Int)] = []
        if let width {
            var used = 0
            for column in columns {
                let natural = naturalWidth(column)
                let gap = chosen.isEmpty ? 0 : separator
                if column.flexible {
                    let room = width - used - gap
                    guard room >= column.header.count else { break }
                    chosen.append((column, min(natural, room)))
                    break
                }
                let wanted = min(natural, column.cap ?? natural)
                guard used + gap + wanted <= width else {
                    // Not even the first column fits: it takes the whole width, cut.
                    if chosen.isEmpty { chosen.append((column, max(0, width))) }
                    break
                }
                chosen.append((column, wanted))
                used += gap + wanted
            }
        } else {
            chosen = columns.map { ($0, naturalWidth($0)) }
        }
        var lines: [String] = []
        for row in -1..<rowCount {
            var line = ""
            for (i, entry) in chosen.enumerated() {
                let text = row < 0 ? entry.column.header : entry.column.cells[row]
                let cell = fit(text, entry.width)
                let padding = String(repeating: " ", count: max(0, entry.width - cell.count))
                if i > 0 { line += String(repeating: " ", count: separator) }
                line += entry.column.rightAligned ? padding + cell : cell + padding
            }
            while line.last == " " { line.removeLast() }
            lines.append(line)
        }
        return (lines, chosen.count)
    }

    static func naturalWidth(_ column: Column) -> Int {
        column.cells.reduce(column.header.count) { max($0, $1.count) }
    }

    /// `text` cut to `width` characters, the last one "…" when anything was cut. Control
    /// characters (a newline in an error message) become spaces: a cell is one line.
    static func fit(_ text: String, _ width: Int) -> String {
        func control(_ c: Character) -> Bool {
            c.isNewline || c.unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) }
        }
        var clean = text
        if clean.contains(where: control) { clean = String(clean.map { control($0) ? " " : $0 }) }
        guard clean.count > width else { return clean }
        guard width > 1 else { return String(clean.prefix(max(0, width))) }
        return String(clean.prefix(width - 1)) + "…"
    }

    /// Jobs per second: `0`, `0.4`, `12`, `3.5k`; `-` without an interval.
    static func rate(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        if value <= 0 { return "0" }
        if value < 10 { return decimal(value) }
        if value < 1000 { return String(Int64(value.rounded())) }
        if value < 10_000 { return decimal(value / 1000) + "k" }
        if value < 1e9 { return String(Int64((value / 1000).rounded())) + "k" }
        return ">1G"
    }

    /// A latency percentile: `850µs`, `1.5ms`; `>30s` beyond the largest bucket; `-` when no
    /// job finished in the interval.
    static func quantile(_ value: CumulativeHistogram.Quantile?) -> String {
        switch value {
        case nil: "-"
        case .seconds(let s)?: duration(s)
        case .above(let s)?:
            ">" + (s.isFinite && s >= 0 && s < 1e9 ? Duration.microseconds(Int64((s * 1e6).rounded())).limitDescription : "?")
        }
    }

    /// `x` with one decimal (x ≥ 0, finite), without Foundation's locale-dependent formatting.
    static func decimal(_ x: Double) -> String {
        guard x.isFinite, x >= 0, x < 1e15 else { return "?" }
        let tenths = Int64((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        guard seconds < 1e9 else { return ">1e9s" }
        return Format.duration(micros: Int64((seconds * 1e6).rounded()))
    }

    /// The snapshot as one JSON object (`--json`): what the table shows, with the interval's
    /// job counts beside the rates, and microseconds for the percentiles (a percentile beyond
    /// the largest bucket is that bucket's bound, with `"above": true`).
    static func json(_ snapshot: TopSnapshot, rows: [TopRow]) -> JSONValue {
        func int(_ value: Int64?) -> JSONValue { value.map { .int($0) } ?? .null }
        func percentiles(_ p50: CumulativeHistogram.Quantile?, _ p99: CumulativeHistogram.Quantile?) -> JSONValue {
            func one(_ q: CumulativeHistogram.Quantile?) -> JSONValue {
                switch q {
                case nil: .null
                case .seconds(let s)?: micros(s)
                case .above(let s)?: .object(["above": .bool(true), "us": micros(s)])
                }
            }
            return .object(["p50": one(p50), "p99": one(p99)])
        }
        let seconds = rows.first?.seconds
        var pools: [JSONValue] = []
        for row in rows {
            var jobs: JSONValue = .null
            var rates: JSONValue = .null
            if let counts = row.jobs {
                var j = JSONObject()
                var r = JSONObject()
                for outcome in TopRow.outcomes {
                    j[outcome] = micros(counts[outcome] ?? 0, scale: 1)
                    r[outcome] = row.rate(outcome).map { .double($0.isFinite ? $0 : 0) } ?? .null
                }
                jobs = .object(j)
                rates = .object(r)
            }
            let p = row.pool
            pools.append(
                .object([
                    "name": .string(p.name), "kind": .string(p.kind), "state": .string(p.state),
                    "min": int(p.min), "max": int(p.max), "open": int(p.open), "idle": int(p.idle), "leased": int(p.leased),
                    "waiting": int(p.waiting), "last_error": p.lastError.map { .string($0) } ?? .null,
                    "jobs": jobs, "jobs_per_s": rates,
                    "wait_us": row.seconds == nil ? .null : percentiles(row.waitP50, row.waitP99),
                    "exec_us": row.seconds == nil ? .null : percentiles(row.execP50, row.execP99),
                ]))
        }
        return .object([
            "state": snapshot.daemonState.map { .string($0) } ?? .null,
            "interval_s": seconds.map { .double($0) } ?? .null,
            "pools": .array(pools),
        ])
    }

    /// `seconds × scale` as a whole number (microseconds by default), clamped to Int64.
    private static func micros(_ seconds: Double, scale: Double = 1e6) -> JSONValue {
        let value = (seconds * scale).rounded()
        guard value.isFinite else { return .null }
        if value >= 9e18 { return .int(.max) }
        if value <= -9e18 { return .int(.min) }
        return .int(Int64(value))
    }
}
