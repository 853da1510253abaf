import TOMLKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads and validates config files. Every problem is a `ConfigError` naming the file, the
/// line and the key, and saying what would be valid; when a file has several problems, the
/// one earliest in the file is reported.
public enum ConfigLoader {
    /// Files larger than this are refused before parsing: no config is anywhere near it.
    static let maximumFileSize = 4 << 20

    /// Reads `path` and validates it.
    public static func load(path: String) throws(ConfigError) -> Config {
        let bytes = try readFile(path)
        let text = try decodeUTF8(bytes, path: path)
        return try parse(text, path: path)
    }

    /// Validates config text; `path` is used only in messages and `Config.path`.
    public static func parse(_ text: String, path: String) throws(ConfigError) -> Config {
        if let nul = text.utf8.firstIndex(of: 0) {
            let line = text.utf8[..<nul].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            throw ConfigError(file: path, line: line, message: "the file contains a NUL character")
        }
        let map = SourceMap(scanning: text)
        let root: TOMLNode
        do {
            let table = try TOMLTable(string: SourceMap.defused(text, hazards: map.hazards))
            root = TOMLNode(table: table)
            // TOMLKit never frees a parsed document; emptying it frees all but the root.
            table.clear()
        } catch let error as TOMLParseError {
            let line = error.source.begin.line
            let message = map.hazards.first { $0.line == line }?.message ?? error.description
            throw ConfigError(file: path, line: line, message: message)
        } catch {
            throw ConfigError(file: path, line: nil, message: "cannot parse the file: \(error)")
        }
        if let hazard = map.hazards.first {
            // Defused text always fails to parse; this is only a safety net.
            throw ConfigError(file: path, line: hazard.line, message: hazard.message)
        }
        guard case .table(let entries) = root else {
            throw ConfigError(file: path, line: nil, message: "the file is not a TOML table")
        }
        let validation = Validation(file: path, map: map)
        let config = validation.config(from: entries)
        if let error = validation.firstError { throw error }
        guard let config else {
            // Unreachable: validation fails only by recording an error.
            throw ConfigError(file: path, line: nil, message: "the configuration is not valid")
        }
        return config
    }

    private static func readFile(_ path: String) throws(ConfigError) -> [UInt8] {
        do {
            return try FileBytes.read(path: path, limit: maximumFileSize)
        } catch {
            let reason = error.tooLarge ? "larger than \(maximumFileSize >> 20) MiB, which no config file should be" : error.reason
            throw ConfigError(file: path, line: nil, message: "cannot read \(path): \(reason)")
        }
    }

    private static func decodeUTF8(_ bytes: [UInt8], path: String) throws(ConfigError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        decoding: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\n" { line += 1 }
            case .emptyInput:
                break decoding
            case .error:
                throw ConfigError(file: path, line: line, message: "the file is not valid UTF-8")
            }
        }
        throw ConfigError(file: path, line: nil, message: "the file is not valid UTF-8")
    }
}
