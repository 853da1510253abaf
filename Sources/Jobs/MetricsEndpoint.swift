import PoolConfig

/// The HTTP scrape endpoint as a reload sees it (MetricsHTTP's `MetricsServer`, which `Daemon`
/// attaches): a reload moves its listener before it applies anything else, so that an address
/// poold cannot listen on is `bad_config` and changes nothing.
package protocol MetricsEndpoint: Sendable {
    /// Listens where `settings` say from now on, or nowhere. Throws, at the `listen` line, when
    /// the address cannot be listened on; the listener in place then keeps serving.
    func move(to settings: MetricsSettings, file: String) async throws(ConfigError)
}
