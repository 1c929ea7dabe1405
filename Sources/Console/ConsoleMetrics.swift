import AuditLog
import Foundation
import JobQueue
import Outbox
import Prometheus

/// The metrics of `/metrics` (Prometheus text format, swift-prometheus), derived from the audit log — so a console on
/// a copy of the database shows the same as the node that wrote it:
///
/// * `nnseg_cases{status}` — case rows by status (gauge).
/// * `nnseg_stage_seconds{stage}` — histogram of every case's stage timings (`stage_timings` events, followed).
/// * `nnseg_worker_failures_total`, `nnseg_verification_failures_total`, `nnseg_job_takeovers_total` — counters.
/// * `nnseg_queue_jobs{state}` (cluster), `nnseg_outbox_items{state}` — gauges.
/// * `nnseg_audit_verify_intact` (1 intact, 0 broken, -1 not checked since start), `nnseg_audit_verify_timestamp_seconds`.
final class ConsoleMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    let audit: AuditLog
    let outbox: Outbox?
    let queue: JobQueue?
    let verify: VerifyState
    private let lock = NSLock()
    private var followed: [String: Int64] = [:]
    private var counted: [String: Int] = [:]
    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "nnseg", metricName: metric, unitName: unit, helpText: help)
    }

    static let stageBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

    init(audit: AuditLog, outbox: Outbox?, queue: JobQueue?, verify: VerifyState) {
        self.audit = audit
        self.outbox = outbox
        self.queue = queue
        self.verify = verify
    }

    /// Brings every metric up to date with the database and renders them.
    func scrape() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let counts = try audit.caseCounts()
        for status in Set(counts.keys).union(["SUCCEEDED", "FAILED", "QUARANTINED"]) {
            registry.makeGauge(descriptor: Self.name("cases", "", "Cases recorded in the audit log, by status"), labels: [("status", status)])
                .set(Double(counts[status] ?? 0))
        }
        // Stage timings: every new event observed once.
        try follow("stage_timings") { payload in
            for (stage, value) in payload {
                guard let seconds = (value as? NSNumber)?.doubleValue, seconds.isFinite else { continue }
                self.registry.makeValueHistogram(descriptor: Self.name("stage", "seconds", "Seconds per case stage (stage_timings in the audit log)"),
                                                 labels: [("stage", stage)], buckets: Self.stageBuckets).record(seconds)
            }
        }
        let failedVerifications = registry.makeCounter(descriptor: Self.name("verification_failures", "total",
                                                       "Output verifications that failed (the case failed instead of handing on wrong outputs)"))
        try follow("verification") { payload in
            if (payload["passed"] as? Bool) == false { failedVerifications.increment() }
        }
        let events = try audit.eventCounts(kinds: ["worker_failed", "job_taken_over"])
        increase("worker_failures", to: events["worker_failed"] ?? 0, help: "Case workers that crashed, ran out of memory or time, or lost their lease")
        increase("job_takeovers", to: events["job_taken_over"] ?? 0, help: "Jobs taken over from a node whose lease ran out")
        if let queue {
            let depth = try queue.depth()
            for (state, n) in [("queued", depth.queued), ("running", depth.running), ("expired", depth.expired), ("done", depth.done), ("failed", depth.failed)] {
                registry.makeGauge(descriptor: Self.name("queue_jobs", "", "Jobs in the shared queue, by state"), labels: [("state", state)]).set(Double(n))
            }
        }
        if let outbox {
            let depth = try outbox.depth()
            for state in OutboxItem.State.allCases {
                registry.makeGauge(descriptor: Self.name("outbox_items", "", "Outbox items, by state"), labels: [("state", state.rawValue)])
                    .set(Double(depth[state] ?? 0))
            }
        }
        let last = verify.snapshot
        let intact: Double = last.map { $0.result.intact ? 1 : 0 } ?? -1
        registry.makeGauge(descriptor: Self.name("audit_verify_intact", "", "Last audit verify of this console: 1 intact, 0 broken, -1 not run")).set(intact)
        registry.makeGauge(descriptor: Self.name("audit_verify_timestamp", "seconds", "When the last audit verify ran (Unix time; 0: never)"))
            .set(last?.at.timeIntervalSince1970 ?? 0)
        return registry.emitToString()
    }

    /// Reads the events of `kind` not seen yet (in pages) and hands each payload to `observe`.
    func follow(_ kind: String, _ observe: ([String: Any]) -> Void) throws {
        var after = followed[kind] ?? 0
        while true {
            let page = try audit.events(kind: kind, after: after, limit: 1000)
            for e in page {
                if let object = try? JSONSerialization.jsonObject(with: Data(e.payload.utf8)) as? [String: Any] { observe(object) }
                after = e.id ?? after
            }
            if page.count < 1000 { break }
        }
        followed[kind] = after
    }

    /// A counter that follows a count in the database (only ever increases).
    func increase(_ name: String, to total: Int, help: String) {
        let counter = registry.makeCounter(descriptor: Self.name(name, "total", help))
        let delta = total - (counted[name] ?? 0)
        if delta > 0 { counter.increment(by: Int64(delta)) }
        counted[name] = max(total, counted[name] ?? 0)
    }
}
