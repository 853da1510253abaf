import Logging
import SystemdKit
import Testing

struct JournalLogHandlerTests {
    @Test func jobEntryCarriesPooldFieldsAndPriority() {
        var handler = JournalLogHandler(label: "poold")
        handler.metadata = ["pool": "main"]
        let event = LogEvent(
            level: .info, message: "job finished",
            metadata: ["job.id": "17", "outcome": "succeeded", "wait_us": "12", "exec_us": "85"],
            source: "PoolDaemon", file: "Daemon.swift", function: "runJob", line: 42
        )
        let fields = handler.fields(for: event)
        #expect(fields.contains("MESSAGE=job finished"))
        #expect(fields.contains("PRIORITY=6"))
        #expect(fields.contains("SYSLOG_IDENTIFIER=poold"))
        #expect(fields.contains("POOLD_JOB_ID=17"))
        #expect(fields.contains("POOLD_POOL=main"))
        #expect(fields.contains("POOLD_OUTCOME=succeeded"))
        #expect(fields.contains("POOLD_WAIT_US=12"))
        #expect(fields.contains("POOLD_EXEC_US=85"))
        #expect(!fields.contains { $0.hasPrefix("MESSAGE_ID=") }, "only lifecycle events have a MESSAGE_ID")
    }

    @Test func lifecycleEventsHaveStableMessageIDs() {
        let handler = JournalLogHandler(label: "poold")
        let event = LogEvent(
            level: .notice, message: "stopping", metadata: ["event": "stopping"], source: "", file: "", function: "", line: 0)
        let fields = handler.fields(for: event)
        #expect(fields.contains("MESSAGE_ID=66f35502d1c54e4e937f3e4027e087bc"))
        #expect(fields.contains("PRIORITY=5"))
        let ids = Set(JournalLogHandler.messageIDs.values)
        #expect(ids.count == 14 && ids.allSatisfy { $0.count == 32 }, "fourteen distinct 128-bit ids")
        for name in [
            "started", "ready", "reloading", "reloaded", "reload_failed", "stopping", "stopped", "pool_degraded", "pool_recovered",
            "queue_store_down", "queue_store_recovered", "queue_lease_lost", "queue_rescued", "durable_job_discarded",
        ] {
            #expect(JournalLogHandler.messageIDs[name] != nil, "\(name)")
        }
    }

    @Test(arguments: [
        (Logger.Level.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
    ])
    func priorities(level: Logger.Level, priority: Int) {
        #expect(JournalLogHandler.priority(level) == priority)
    }

    @Test func fieldNames() {
        #expect(JournalLogHandler.fieldName("job.id") == "POOLD_JOB_ID")
        #expect(JournalLogHandler.fieldName("retry_in") == "POOLD_RETRY_IN")
        #expect(JournalLogHandler.fieldName("Pool-Name2") == "POOLD_POOL_NAME2")
    }
}
