/// Where a job's time went: waiting in the daemon's queue, waiting for a resource, running.
public struct JobTiming: Sendable, Hashable {
    public var queue: Duration
    public var acquire: Duration
    public var exec: Duration

    public init(queue: Duration = .zero, acquire: Duration = .zero, exec: Duration = .zero) {
        self.queue = queue
        self.acquire = acquire
        self.exec = exec
    }
}
