/// A PostgreSQL connection url taken apart: `postgres://user[:password]@host[:port][/database][?params]`
/// (or `postgresql://`). Components are percent-decoded; a host that decodes to a path
/// (`postgres://app@%2Frun%2Fpostgresql/app`) is a Unix socket directory.
///
/// The userinfo is everything before the last `@`, so a password with an unescaped `/`
/// or `@` still counts as the password (and is redacted), never as the host or database.
public struct PostgresURL: Sendable, Equatable {
    /// Query parameters poold understands; any other is refused rather than ignored.
    public static let supportedParameters = ["sslmode", "sslrootcert"]
    public static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    public var user: String
    /// A secret: never log it, never put it in a message.
    public var password: String?
    public var host: String
    public var port: Int
    /// nil: PostgreSQL's default, a database named like the user.
    public var database: String?
    /// `sslmode` and `sslrootcert`, when given.
    public var parameters: [String: String]

    public var sslMode: String? { parameters["sslmode"] }

    /// Either the components or a message (with no secret in it) saying what is wrong.
    static func parse(_ url: String) -> Result<PostgresURL, URLProblem> {
        let schemes = ["postgres://", "postgresql://"]
        guard let scheme = schemes.first(where: { url.hasPrefix($0) }) else {
            return .failure(URLProblem("must start with postgres:// or postgresql://"))
        }
        var rest = Substring(url.dropFirst(scheme.count))
        if rest.contains("#") {
            return .failure(URLProblem("must not contain a fragment ('#'); percent-encode it as %23"))
        }
        var user = ""
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let userPart: Substring
            if let colon = userinfo.firstIndex(of: ":") {
                userPart = userinfo[..<colon]
                guard let decoded = percentDecode(userinfo[userinfo.index(after: colon)...]) else {
                    return .failure(URLProblem("has a bad percent-escape in its password"))
                }
                password = decoded
            } else {
                userPart = userinfo
            }
            guard let decoded = percentDecode(userPart) else {
                return .failure(URLProblem("has a bad percent-escape in its user name"))
            }
            user = decoded
        }
        guard !user.isEmpty else {
            return .failure(URLProblem("must name a user: postgres://USER@HOST:PORT/DATABASE"))
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        // rest is now host[:port], the host possibly an [IPv6] literal.
        var hostPart = rest
        var portPart: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                return .failure(URLProblem("has an IPv6 host without its closing ']'"))
            }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                portPart = after.dropFirst()
            } else if !after.isEmpty {
                return .failure(URLProblem("has text after its IPv6 host"))
            }
        } else if let colon = rest.lastIndex(of: ":") {
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
        }
        guard let host = percentDecode(hostPart), !host.isEmpty else {
            return .failure(URLProblem("must name a host: postgres://USER@HOST:PORT/DATABASE"))
        }
        if host.contains(",") {
            return .failure(URLProblem("must name one host (poold does not support host lists)"))
        }
        var port = 5432
        if let portPart {
            guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy(\.isASCIIDigit),
                let p = Int(portPart), (1...65535).contains(p)
            else {
                return .failure(URLProblem("has a bad port (it must be a number from 1 to 65535)"))
            }
            port = p
        }
        guard let database = percentDecode(path) else {
            return .failure(URLProblem("has a bad percent-escape in its database name"))
        }
        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            let value = pair.firstIndex(of: "=").map { pair[pair.index(after: $0)...] } ?? ""
            if name == "password" {
                return .failure(URLProblem("must not carry a password parameter; use password_file or credential"))
            }
            guard supportedParameters.contains(name) else {
                let shown = name.count > 40 ? String(name.prefix(40)) + "…" : name
                return .failure(
                    URLProblem(
                        "has an unsupported parameter \(tomlString(shown)); supported: \(supportedParameters.joined(separator: ", "))"
                    ))
            }
            guard let decoded = percentDecode(value) else {
                return .failure(URLProblem("has a bad percent-escape in parameter \(name)"))
            }
            if name == "sslmode", !sslModes.contains(decoded) {
                return .failure(
                    URLProblem(
                        "has sslmode=\(decoded.count > 40 ? String(decoded.prefix(40)) + "…" : decoded); valid: "
                            + "\(sslModes.joined(separator: ", "))"
                    ))
            }
            parameters[name] = decoded
        }
        return .success(
            PostgresURL(
                user: user,
                password: password,
                host: host,
                port: port,
                database: database.isEmpty ? nil : database,
                parameters: parameters
            ))
    }

    init(user: String, password: String?, host: String, port: Int, database: String?, parameters: [String: String]) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.parameters = parameters
    }
}

/// Why a url was refused, in words that never include the url's secrets.
struct URLProblem: Error, Sendable {
    var message: String
    init(_ message: String) { self.message = message }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// `%XX` escapes decoded; nil for a malformed escape or bytes that are not UTF-8.
private func percentDecode(_ text: Substring) -> String? {
    var bytes: [UInt8] = []
    var utf8 = Array(text.utf8)[...]
    while let b = utf8.popFirst() {
        if b == UInt8(ascii: "%") {
            guard utf8.count >= 2, let hi = hexValue(utf8.popFirst()), let lo = hexValue(utf8.popFirst()) else {
                return nil
            }
            bytes.append(hi << 4 | lo)
        } else {
            bytes.append(b)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8?) -> UInt8? {
    guard let byte else { return nil }
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// `url` with the password in its userinfo, and any `password=` query value, replaced by
/// `***`. Works on any text, valid url or not, erring towards hiding too much: the
/// userinfo is everything up to the last `@`, and its password everything after its
/// first `:`. Without any `@` (a mistyped url), `user:password` cannot be told from
/// `host:port`, so everything after the first `:` is hidden.
func redactURL(_ url: String) -> String {
    var text = Substring(url)
    var prefix = ""
    if let scheme = text.firstRange(of: "://") {
        prefix = String(text[..<scheme.upperBound])
        text = text[scheme.upperBound...]
    }
    if let at = text.lastIndex(of: "@") {
        let userinfo = text[..<at]
        if let colon = userinfo.firstIndex(of: ":"), userinfo.index(after: colon) < at {
            text = Substring(String(userinfo[...colon]) + "***" + String(text[at...]))
        }
    } else if let colon = text.firstIndex(of: ":"), text.index(after: colon) < text.endIndex {
        return prefix + String(text[...colon]) + "***"
    }
    var result = prefix + text
    if let q = result.firstIndex(of: "?") {
        let query = result[result.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map {
            pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return name.lowercased() == "password" ? "\(name)=***" : String(pair)
        }
        result = String(result[...q]) + query.joined(separator: "&")
    }
    return result
}
