/// `require_auth`: which ways of authenticating a PostgreSQL server may ask poold for, with
/// libpq's names and rules. A list of methods allows only those (`scram-sha-256`, or
/// `scram-sha-256,none`); a list of negated ones (`!password,!md5`) allows everything else.
/// Unset: whatever the server asks (libpq's default) — then a server, or whatever answers in
/// its place when `sslmode=prefer` falls back to plain TCP, may ask for the password in
/// cleartext and get it.
public struct RequireAuth: Sendable, Equatable, CustomStringConvertible {
    public enum Method: String, Sendable, CaseIterable {
        /// AuthenticationCleartextPassword: the password itself, as is.
        case password
        /// AuthenticationMD5Password: an MD5 of it, which can be replayed and cracked offline.
        case md5
        /// SASL with SCRAM-SHA-256: the password never crosses the wire.
        case scramSHA256 = "scram-sha-256"
        /// Kerberos (GSSAPI) and SSPI: poold offers neither; listed so that they can be refused.
        case gss, sspi
        /// The server let poold in without asking anything (trust, peer).
        case none
    }

    /// The methods allowed.
    public var allowed: Set<Method>
    /// As written in the config, for --check-config.
    public var text: String

    public init(allowed: Set<Method>, text: String) {
        self.allowed = allowed
        self.text = text
    }

    public var description: String { text }

    /// Why a `require_auth` value was refused.
    public struct Invalid: Error, Sendable {
        public var message: String
    }

    /// Parses libpq's syntax, or says what is wrong with it.
    public static func parse(_ text: String) -> Result<RequireAuth, Invalid> {
        let names = text.split(separator: ",", omittingEmptySubsequences: false).map { entry in
            String(entry.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
        }
        let valid = Method.allCases.map(\.rawValue).joined(separator: ", ")
        var listed = Set<Method>()
        var negated: Bool?
        for name in names {
            let isNegated = name.hasPrefix("!")
            guard let method = Method(rawValue: isNegated ? String(name.dropFirst()) : name) else {
                return .failure(
                    Invalid(
                        message:
                            "require_auth names \(name.isEmpty ? "nothing" : "\"\(name)\""): each entry must be one of \(valid), or one of "
                            + "them after \"!\""
                    ))
            }
            if let negated, negated != isNegated {
                return .failure(Invalid(message: "require_auth may not mix methods with negated (\"!\") ones"))
            }
            negated = isNegated
            guard listed.insert(method).inserted else {
                return .failure(Invalid(message: "require_auth lists \"\(method.rawValue)\" twice"))
            }
        }
        let allowed = negated == true ? Set(Method.allCases).subtracting(listed) : listed
        return .success(RequireAuth(allowed: allowed, text: text))
    }
}
