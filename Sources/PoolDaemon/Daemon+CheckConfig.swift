import DurableQueues
import Logging
import NIOPosix
import PoolConfig
import PoolCore
import PostgresPools
import PostgresWire

#if canImport(Glibc)
    import Glibc
#endif

extension Daemon {
    /// `--check-config`: the schema of every durable queue store, read without changing it.
    /// A newer schema than this poold knows is a problem (`refused`); a store that cannot be
    /// reached is only reported, for poold starts without it and creates the schema later.
    public static func checkQueueStores(_ config: Config) async -> (lines: [String], refused: Bool) {
        var stores: [(store: String, schema: String)] = []
        for queue in config.queues where !stores.contains(where: { $0 == (queue.store, queue.schema) }) {
            stores.append((queue.store, queue.schema))
        }
        var lines: [String] = []
        var refused = false
        for (store, schema) in stores {
            let what = "queue store \"\(store)\" (schema \(schema))"
            guard case .postgres(var settings) = config.pool(named: store)?.backend else { continue }
            settings.connectTimeout = min(settings.connectTimeout, .seconds(5))
            do {
                let backend = try PostgresBackend(
                    settings: settings, group: MultiThreadedEventLoopGroup.singleton, logger: .init(label: "poold.check"),
                    credentialsDirectory: getenv("CREDENTIALS_DIRECTORY").map { String(cString: $0) })
                let session = try await backend.open()
                let found: Int
                do {
                    found = try await QueueSchema.currentVersion(session.client, schema: schema)
                    await session.client.close()
                } catch {
                    await session.client.close()
                    throw error
                }
                switch found {
                case 0: lines.append("\(what): no schema yet; poold creates it (version \(QueueSchema.version)) at start")
                case QueueSchema.version: lines.append("\(what): version \(found), current")
                case ..<QueueSchema.version:
                    lines.append("\(what): version \(found); poold migrates it to \(QueueSchema.version) at start")
                default:
                    refused = true
                    lines.append(
                        "\(what): version \(found) is newer than this poold knows (\(QueueSchema.version)): upgrade poold on this host, "
                            + "or give its queues another schema")
                }
            } catch {
                lines.append("\(what): not checked, the store is unreachable: \(PostgresBackend.describe(error))")
            }
        }
        return (lines, refused)
    }
}
