import ArgumentParser
import ExecPools
import Logging
import PoolConfig
import PoolCore
import PoolDaemon
import SystemdKit

#if canImport(Glibc)
    import Glibc
#endif

/// poold: parse arguments, load the config, run the daemon. Nothing else lives here.
@main
struct Poold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poold",
        abstract: "Owns bounded pools of database connections and workers, and runs jobs on them.",
        discussion:
            "Talk to it with poolctl over its control socket. Stops on SIGTERM/SIGINT (a second one skips the grace); reloads on SIGHUP.",
        version: Daemon.versionDescription
    )

    @Option(name: .long, help: "The config file (default: $POOLD_CONFIG, then /etc/poold/poold.toml).")
    var config: String?

    @Flag(name: .long, help: "Validate the config, print it with defaults filled in and secrets redacted, and exit.")
    var checkConfig = false

    /// poold starts itself with this flag as the keeper of its workers' process groups.
    @Flag(name: .customLong(String(WorkerReaper.reaperFlag.dropFirst(2))), help: .hidden)
    var reapWorkerGroups = false

    func run() async throws {
        if reapWorkerGroups { throw ExitCode(WorkerReaper.runReaper()) }
        let path = config ?? ProcessInfoLite.environment("POOLD_CONFIG") ?? "/etc/poold/poold.toml"
        let loaded: Config
        do {
            loaded = try ConfigLoader.load(path: path)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        for warning in loaded.warnings { printError("warning: \(warning)") }
        if checkConfig {
            print(loaded.effectiveTOML(), terminator: "")
            let stores = await Daemon.checkQueueStores(loaded)
            for line in stores.lines { printError(line) }
            if stores.refused {
                printError("\(path): the config is valid, but poold cannot run its queues on that store")
                throw ExitCode(1)
            }
            printError("\(path): the config is valid")
            return
        }
        let level = ProcessInfoLite.environment("POOLD_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info
        let journal = Systemd.isStderrJournal
        LoggingSystem.bootstrap { label in
            if journal {
                var handler = JournalLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "poold")
        do {
            try await Daemon(config: loaded, logger: logger).run()
        } catch let error as ConfigError {
            // Found only when starting (an address in use): `file:line: message`, as at load.
            printError("\(error)")
            throw ExitCode(1)
        } catch let error as PoolError {
            // A pool that cannot be built at start (no thread for an exec pool's spawner).
            printError("poold: \(error.message)")
            throw ExitCode(1)
        } catch {
            printError("poold: \(error)")
            throw ExitCode(1)
        }
    }
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
