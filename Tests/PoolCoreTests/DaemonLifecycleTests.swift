import PoolCore
import Testing

/// The lifecycle machine on its own: every transition, and what each state allows.
struct DaemonLifecycleTests {
    @Test func startsReadiesAndStops() {
        var life = DaemonLifecycle()
        #expect(life.state == .starting)
        #expect(life.acceptsJobs)
        #expect(life.started() == .notifyReady)
        #expect(life.state == .ready)
        #expect(life.started() == .none, "ready is announced once")
        #expect(life.stopRequested(by: .signal) == .beginStopping)
        #expect(life.state == .stopping)
        #expect(!life.acceptsJobs)
        #expect(life.isStopping)
        life.everyJobAnswered()
        #expect(life.state == .stopped)
        #expect(!life.acceptsJobs)
    }

    @Test func reloadGoesBackToReadyWhenTheLastOneEnds() {
        var life = DaemonLifecycle()
        _ = life.started()
        #expect(life.reloadBegan() == .notifyReloading)
        #expect(life.state == .reloading)
        #expect(life.acceptsJobs, "jobs run while a reload is applied")
        #expect(life.reloadBegan() == .notifyReloading, "SIGHUP and reload may overlap")
        #expect(life.reloadEnded() == .none)
        #expect(life.state == .reloading)
        #expect(life.reloadEnded() == .notifyReady)
        #expect(life.state == .ready)
        #expect(life.reloadEnded() == .none, "an unmatched end changes nothing")
        #expect(life.reloadsRunning == 0)
    }

    @Test func reloadBeforeReadyIsNotAnnounced() {
        var life = DaemonLifecycle()
        #expect(life.reloadBegan() == .reloadQuietly)
        #expect(life.state == .starting)
        // Ready comes while the reload is still being applied: systemd hears READY=1 once.
        #expect(life.started() == .notifyReady)
        #expect(life.state == .reloading)
        #expect(life.reloadEnded() == .notifyReady)
        #expect(life.state == .ready)

        var quiet = DaemonLifecycle()
        _ = quiet.reloadBegan()
        #expect(quiet.reloadEnded() == .none, "nothing to announce before ready")
        #expect(quiet.state == .starting)
    }

    @Test func stoppingRefusesReloadsAndAReloadInFlightDoesNotUndoIt() {
        var life = DaemonLifecycle()
        _ = life.started()
        _ = life.reloadBegan()
        #expect(life.stopRequested(by: .signal) == .beginStopping)
        #expect(life.reloadBegan() == .refuseReload)
        #expect(life.reloadEnded() == .none)
        #expect(life.state == .stopping, "the reload that was running does not bring back ready")
        life.everyJobAnswered()
        #expect(life.reloadBegan() == .refuseReload)
    }

    @Test func aSecondSignalSkipsTheGraceOnce() {
        var life = DaemonLifecycle()
        _ = life.started()
        #expect(life.stopRequested(by: .request) == .beginStopping)
        #expect(life.stopRequested(by: .request) == .none, "a second drain --stop waits for the first")
        #expect(!life.isGraceSkipped)
        #expect(life.stopRequested(by: .signal) == .skipGrace)
        #expect(life.isGraceSkipped)
        #expect(life.stopRequested(by: .signal) == .none)
        life.everyJobAnswered()
        #expect(life.stopRequested(by: .signal) == .none)
    }

    @Test func stopBeforeReady() {
        var life = DaemonLifecycle()
        #expect(life.stopRequested(by: .signal) == .beginStopping)
        #expect(life.started() == .none, "a daemon told to stop never becomes ready")
        #expect(life.state == .stopping)
    }

    @Test func everyJobAnsweredOnlyEndsStopping() {
        for state in [DaemonLifecycle.State.starting, .ready, .reloading] {
            var life = DaemonLifecycle()
            if state != .starting { _ = life.started() }
            if state == .reloading { _ = life.reloadBegan() }
            #expect(life.state == state)
            life.everyJobAnswered()
            #expect(life.state == state)
        }
    }
}
