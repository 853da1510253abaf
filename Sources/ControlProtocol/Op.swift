/// The operations of protocol v1 (docs/PROTOCOL.md, "Ops"). The raw value is the wire name.
public enum Op: String, Sendable, CaseIterable {
    case ping, status, pools, jobs, stats, metrics, run, cancel, pause, resume, resize, reload, drain
    /// Durable queues (docs/QUEUES.md).
    case enqueue, queues
    case jobStatus = "job_status"
    case jobCancel = "job_cancel"
}
