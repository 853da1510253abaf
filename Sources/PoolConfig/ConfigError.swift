/// A config file poold will not run with: `file:line: context: what is wrong and what
/// would be valid`. Never contains a secret.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path as given to the loader.
    public var file: String
    /// nil when the problem is the file as a whole (unreadable) or has no single place.
    public var line: Int?
    /// Starts with the context (`pool "main": …`) when there is one.
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `file:line: message`, or `file: message` without a line; a line-less message that
    /// already names the file (`cannot read /etc/poold/poold.toml: no such file`) is not
    /// prefixed again.
    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        if message.contains(file) { return message }
        return "\(file): \(message)"
    }
}
