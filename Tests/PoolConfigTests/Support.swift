import PoolConfig
import Testing

/// Parses `text` as "poold.toml" and returns the error it must raise.
func configError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
    do {
        let config = try ConfigLoader.parse(text, path: "poold.toml")
        Issue.record("expected an error, got a config with \(config.pools.count) pools", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Parses `text` as "poold.toml", recording the error if there is one.
func config(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> Config? {
    do {
        return try ConfigLoader.parse(text, path: "poold.toml")
    } catch {
        Issue.record("unexpected error: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Expects `text` to be refused with exactly `description` (`poold.toml:LINE: …`).
func expectError(_ text: String, _ description: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let error = configError(text, sourceLocation: sourceLocation) else { return }
    #expect(error.description == description, sourceLocation: sourceLocation)
}
