import Logging
import PoolConfig

#if canImport(Glibc)
    import PoolCore
    import Glibc
#endif

/// The process's limit on open files.
package enum FileLimit {
    /// Raises the soft limit on open files to the hard one (systemd starts services at 1024
    /// soft), and warns when even that is short of what the config may need: a descriptor per
    /// connection, a few per pool resource, and some to spare.
    package static func raise(config: Config, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let resources = config.pools.reduce(0) { $0 + $1.limits.maxResources }
        let needed = config.daemon.maxConnections + 4 * resources + 64
        if limit.rlim_cur != rlim_t.max && Int(limit.rlim_cur) < needed {
            logger.warning(
                "the open-file limit is below what max_connections and the pools may need; raise LimitNOFILE= or lower max_connections",
                metadata: [
                    "limit": "\(limit.rlim_cur)", "needed": "\(needed)",
                ])
        }
    }
}
