import DurableQueues
import Logging
import NIOCore
import PoolConfig
import PoolCore
import PoolKit
import PostgresPools
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Every durable queue of the config, by store: one `QueueHost` per store pool and schema.
/// Queues keep the settings poold started with until a restart (`ConfigDiff.queuesChanged`).
package final class QueueRunner: Sendable {
    let hosts: [QueueHost]
    private let byQueue: [String: (host: QueueHost, settings: QueueSettings)]

    package init(config: Config, context: DaemonContext) throws(PoolError) {
        var groups: [(store: String, schema: String, queues: [QueueSettings])] = []
        for queue in config.queues {
            if let index = groups.firstIndex(where: { $0.store == queue.store && $0.schema == queue.schema }) {
                groups[index].queues.append(queue)
            } else {
                groups.append((queue.store, queue.schema, [queue]))
            }
        }
        var hosts: [QueueHost] = []
        for group in groups {
            guard case .postgres(let postgres) = config.pool(named: group.store)?.backend else {
                throw PoolError(.badConfig, "queue store \"\(group.store)\" is not a postgres pool")
            }
            var logger = context.logger
            logger[metadataKey: "pool"] = "\(group.store)"
            let backend = try PostgresBackend(
                settings: postgres, group: context.factory.loops.next(), logger: logger,
                credentialsDirectory: getenv("CREDENTIALS_DIRECTORY").map { String(cString: $0) }, files: context.factory.files)
            hosts.append(QueueHost(store: group.store, schema: group.schema, queues: group.queues, backend: backend, context: context))
        }
        self.hosts = hosts
        var byQueue: [String: (QueueHost, QueueSettings)] = [:]
        for host in hosts {
            for queue in host.queues { byQueue[queue.name] = (host, queue) }
        }
        self.byQueue = byQueue
    }

    package var isEmpty: Bool { hosts.isEmpty }

    func queue(named name: String) -> (host: QueueHost, settings: QueueSettings)? { byQueue[name] }

    var queueNames: [String] { hosts.flatMap { $0.queues.map(\.name) } }

    /// Runs every host until poold stops and each has handed its jobs back.
    package func run() async {
        await withDiscardingTaskGroup { group in
            for host in hosts { group.addTask { await host.run() } }
        }
    }

    /// For STATUS=: `queues 2 (3 running)`, `queues 2 (store down)`.
    package var statusFragment: String? {
        guard !hosts.isEmpty else { return nil }
        let running = hosts.reduce(0) { $0 + $1.running.count }
        let down = hosts.filter { !$0.isUp }.count
        let count = byQueue.count
        return "queues \(count) (\(running) running" + (down > 0 ? ", \(down) store\(down == 1 ? "" : "s") down" : "") + ")"
    }
}
