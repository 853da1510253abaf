import NIOCore
import NIOPosix
import Testing

@testable import ExecPools

#if canImport(Glibc)
    import Glibc
#endif

/// A worker's exit is an event (a pidfd in `ExitWatcher`), raced against the loop's timer in
/// `waitForExit`: real processes, a real event loop. No timing is asserted: a wait whose limit
/// is past the suite's time limit can only end by the event.
@Suite(.timeLimit(.minutes(1)))
struct ExitWatcherTests {
    @Test func anExitIsSeenAtOnceAndAStillRunningProcessWaitsOutTheLimit() async throws {
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { loops in
            let watcher = try #require(ExitWatcher())
            defer { watcher.stop() }
            let loop = loops.next()

            let quick = try WorkerProcess.spawn(command: ["/bin/sh", "-c", "exit 3"], directory: nil, environment: [:])
            quick.watchExit(with: watcher, on: loop)
            // The limit is past the suite's time limit: only the exit event can end this wait.
            #expect(await quick.waitForExit(limit: .seconds(600), on: loop) == .exited(3))

            let slow = try WorkerProcess.spawn(command: ["/bin/sleep", "30"], directory: nil, environment: [:])
            slow.watchExit(with: watcher, on: loop)
            #expect(await slow.waitForExit(limit: .milliseconds(100), on: loop) == nil, "still running after 100 ms")
            slow.signalGroup(SIGKILL)
            #expect(await slow.waitForExit(limit: .seconds(600), on: loop) == .signaled(SIGKILL))
            for process in [quick, slow] {
                for fd in [process.stdin, process.stdout, process.stderr] { close(fd) }
            }
        }
    }

    @Test func whatIsStillWatchedWhenTheWatcherStopsFails() async throws {
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { loops in
            let watcher = try #require(ExitWatcher())
            let process = try WorkerProcess.spawn(command: ["/bin/sleep", "30"], directory: nil, environment: [:])
            let exited = watcher.watch(process.pid, on: loops.next())
            watcher.stop()
            await #expect(throws: ExitWatcher.Stopped.self) { try await exited.get() }
            await #expect(throws: ExitWatcher.Stopped.self) { try await watcher.watch(process.pid, on: loops.next()).get() }
            process.signalGroup(SIGKILL)
            var status: Int32 = 0
            _ = waitpid(process.pid, &status, 0)
            for fd in [process.stdin, process.stdout, process.stderr] { close(fd) }
        }
    }
}
