import ControlProtocol
import Testing

@testable import DaemonRuntime
@testable import Jobs

struct JobRegistryTests {
    @Test func expireFiresOnlyJobsPastTheirDeadlineAndOnlyOnce() {
        let registry = JobRegistry()
        let peer = Peer(uid: 0, gid: 0, pid: 1)
        let start = ContinuousClock.now
        let (short, shortSignal) = registry.register(pool: "main", peer: peer, limit: .milliseconds(10), received: start)
        let (_, longSignal) = registry.register(pool: "main", peer: peer, limit: .seconds(60), received: start)
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
        let (id, signal) = registry.register(pool: "main", peer: Peer(uid: 1, gid: 1, pid: 2), limit: .seconds(5), received: .now)
        #expect(registry.cancel(id, reason: .disconnected))
        #expect(signal.reason == .disconnected)
        #expect(!registry.cancel(id + 1, reason: .disconnected))
    }

    /// A job's deadline and age count from when its request was read, not from when its task
    /// got around to registering it: time spent waiting before that is the client's time too.
    @Test func deadlineAndAgeCountFromTheRequest() throws {
        let registry = JobRegistry()
        let received = ContinuousClock.now - .seconds(2)
        let (_, signal) = registry.register(pool: "main", peer: Peer(uid: 1, gid: 1, pid: 2), limit: .seconds(1), received: received)
        registry.expire(now: .now)
        #expect(signal.reason == .timeout)
        let listed = try #require(registry.list(pool: nil).first)
        guard case .object(let entry) = listed, case .int(let age)? = entry["age_ms"] else {
            Issue.record("unexpected jobs entry \(listed)")
            return
        }
        #expect(age >= 2000)
        #expect(entry["state"] == .string("queued"))
    }
}
