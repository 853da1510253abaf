import Testing

@testable import PoolDaemon

struct JobRegistryTests {
    @Test func expireFiresOnlyJobsPastTheirDeadlineAndOnlyOnce() {
        let registry = JobRegistry()
        let peer = Peer(uid: 0, gid: 0, pid: 1)
        let start = ContinuousClock.now
        let (short, shortSignal) = registry.register(pool: "main", peer: peer, limit: .milliseconds(10))
        let (_, longSignal) = registry.register(pool: "main", peer: peer, limit: .seconds(60))
        registry.expire(now: start)
        #expect(shortSignal.reason == nil, "nothing is due yet")
        registry.expire(now: start + .seconds(1))
        #expect(shortSignal.reason == .timeout)
        #expect(longSignal.reason == nil)
        #expect(registry.count == 2, "an expired job stays listed until it has unwound")
        registry.remove(short)
        registry.expire(now: start + .seconds(61))
        #expect(longSignal.reason == .timeout, "the next deadline is still watched")
    }

    @Test func cancelReachesOneJob() {
        let registry = JobRegistry()
        let (id, signal) = registry.register(pool: "main", peer: Peer(uid: 1, gid: 1, pid: 2), limit: .seconds(5))
        #expect(registry.cancel(id, reason: .disconnected))
        #expect(signal.reason == .disconnected)
        #expect(!registry.cancel(id + 1, reason: .disconnected))
    }
}
