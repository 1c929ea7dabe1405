import AuditLog
import CaseIdentity
import Dispatch
import Foundation
import JobQueue
import Logging

/// The folders several nodes share (#19), all under one root on shared storage (NFS, CephFS, …):
/// `spool/<node>/<case>/` the series each intake node claimed and queued, `outgoing/<case>/` the outputs (moved
/// into place in one rename: a case's folder exists complete or not at all), `quarantine/`, `held/`, and
/// `archive/` when processed inputs are kept.
public struct ClusterLayout: Sendable {
    public var root: URL
    public var keepInputs: Bool

    public init(root: URL, keepInputs: Bool = false) {
        self.root = root
        self.keepInputs = keepInputs
    }

    public var outgoing: URL { root.appendingPathComponent("outgoing") }
    public var quarantine: URL { root.appendingPathComponent("quarantine") }
    public var held: URL { root.appendingPathComponent("held") }
    public var archive: URL? { keepInputs ? root.appendingPathComponent("archive") : nil }
    public func spool(node: String) -> URL { root.appendingPathComponent("spool").appendingPathComponent(node) }

    public func create() throws {
        for folder in [outgoing, quarantine, held] + [archive].compactMap({ $0 }) {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }
    }
}

/// A worker of the shared queue (`nnseg worker`, and the worker threads of a clustered `watch`/`serve`): claims a
/// job, renews its lease while the case runs in a worker process, records the outcome once.
///
/// * **Lease** — renewed every sixth of its length; a worker that cannot renew (database unreachable, or the lease
///   was taken over) for two thirds of it stops its case (`LEASE_LOST`) before anyone else may take the job, so two
///   nodes never run one case at once. A node killed outright simply stops renewing.
/// * **Take-over** — the next claim of a job whose lease ran out is audited (`job_taken_over`, naming the node that
///   lost it, the attempt); past its attempts the job is quarantined (`RETRIES_EXHAUSTED`).
/// * **Exactly once** — a case that the lost holder had already recorded is not run again (its job is closed as
///   recorded); outputs already moved into `outgoing/<case>` are recorded as recovered; otherwise the case runs
///   again from its spool folder. Case rows are unique in the audit log, and the output folder appears in one
///   rename, so neither can exist twice.
public final class ClusterWorker: @unchecked Sendable {
    let queue: JobQueue
    let audit: AuditLog
    let layout: ClusterLayout
    let runner: CaseRunner
    let profileName: String
    let modelName: String
    let lease: TimeInterval
    let pollInterval: TimeInterval
    let role: String
    let logger: Logger
    private let stopLock = NSLock()
    private var stopRequested = false

    public init(queue: JobQueue, audit: AuditLog, layout: ClusterLayout, runner: CaseRunner, profileName: String, modelName: String,
                lease: TimeInterval = 30, pollInterval: TimeInterval = 1, role: String = "worker", logger: Logger = Logger(label: "nnseg.worker")) throws {
        self.queue = queue
        self.audit = audit
        self.layout = layout
        self.runner = runner
        self.profileName = profileName
        self.modelName = modelName
        self.lease = lease
        self.pollInterval = pollInterval
        self.role = role
        self.logger = logger
        try layout.create()
    }

    public func requestStop() {
        stopLock.lock()
        stopRequested = true
        stopLock.unlock()
    }

    var shouldStop: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    /// Claims and runs jobs until `requestStop()`; `maximumIdlePolls` returns after that many empty polls (tests).
    /// Errors of a pass (database unreachable) are logged and retried with backoff (up to 30 s), never fatal.
    public func run(maximumIdlePolls: Int? = nil) throws {
        var idle = 0
        var failures = 0
        var lastNodeBeat = Date.distantPast
        while !shouldStop {
            if Date().timeIntervalSince(lastNodeBeat) >= lease / 3 {
                try? queue.heartbeatNode(role: role)
                lastNodeBeat = Date()
            }
            let worked: Bool
            do {
                worked = try step()
                failures = 0
            } catch {
                // The database (or the shared folder) is unreachable: wait and try again — a job claimed before is
                // taken over by whichever node reaches the database first once its lease has run out.
                failures += 1
                let wait = retryDelay(afterFailures: failures, poll: pollInterval)
                logger.error("queue pass failed; retrying", metadata: ["node": "\(queue.node)", "error": "\(error)", "retry_in_s": "\(wait)"])
                Thread.sleep(forTimeInterval: wait)
                continue
            }
            idle = worked ? 0 : idle + 1
            if let limit = maximumIdlePolls, idle >= limit { return }
            if !worked { Thread.sleep(forTimeInterval: pollInterval) }
        }
        logger.notice("worker stopped on request", metadata: ["node": "\(queue.node)"])
    }

    /// Claims one job and carries it through; false when the queue had none.
    public func step() throws -> Bool {
        guard let claimed = try queue.claim(lease: lease) else { return false }
        switch claimed {
        case .exhausted(let job):
            let reason = "\(WatchReason.retriesExhausted.rawValue): \(job.attempts) attempt(s) on the cluster did not complete"
                + (job.takenOverFrom.map { " (the last on \($0), whose lease ran out)" } ?? "")
            try audit.append(caseID: job.id, kind: "job_taken_over", payload: takeOverPayload(job))
            try quarantine(job, reason: reason)
        case .run(let job):
            try carry(job)
        }
        return true
    }

    func takeOverPayload(_ job: Job) -> [String: AuditValue] {
        ["node": .string(queue.node), "lost_by": .string(job.takenOverFrom ?? ""), "attempt": .int(Int64(job.attempts)),
         "series_uid": .string(job.seriesUID)]
    }

    func carry(_ job: Job) throws {
        let spool = URL(fileURLWithPath: job.spool)
        if job.takenOverFrom != nil {
            try audit.append(caseID: job.id, kind: "job_taken_over", payload: takeOverPayload(job))
            logger.warning("job taken over after its lease ran out", metadata: ["case": "\(job.id)", "lost_by": "\(job.takenOverFrom ?? "")",
                                                                                  "attempt": "\(job.attempts)"])
        }
        try audit.append(caseID: job.id, kind: "job_claimed", payload: [
            "node": .string(queue.node), "attempt": .int(Int64(job.attempts)), "lease_s": .double(lease), "series_uid": .string(job.seriesUID),
        ])
        // The holder before may have got further than its lease: recorded, or outputs already in place.
        let finished = layout.outgoing.appendingPathComponent(job.id)
        if let recorded = try audit.caseRow(job.id) {
            try completeReceipt(job, folder: finished)
            try settle(job, status: recorded.caseStatus ?? .failed, error: recorded.error, spool: spool)
            return
        }
        try? FileManager.default.removeItem(at: layout.outgoing.appendingPathComponent(".\(job.id).partial"))
        if FileManager.default.fileExists(atPath: finished.path) {
            try audit.append(caseID: job.id, kind: "case_recovered", payload: [
                "detail": .string("outputs were complete before the node holding the job stopped; recorded by the node taking it over"),
                "output": .string(finished.path),
            ])
            let receipt = try audit.finish(caseID: job.id, startedAt: Date(), status: .succeeded, model: modelName, seriesInstanceUID: job.seriesUID,
                                           profile: profileName, error: nil)
            try receipt?.write(to: finished)
            try settle(job, status: .succeeded, error: nil, spool: spool)
            return
        }
        let holder = LeaseHolder(queue: queue, job: job, lease: lease, logger: logger)
        holder.start()
        let outcome = runner.run(claimFolder: spool, outgoing: layout.outgoing, caseID: job.id, series: job.seriesUID,
                                 abandon: { holder.lost })
        holder.stop()
        switch outcome {
        case .recorded(let status, let error):
            try settle(job, status: status, error: error, spool: spool)
        case .workerFailed(let reason, let detail):
            try audit.append(caseID: job.id, kind: "worker_failed", payload: [
                "attempt": .int(Int64(job.attempts)), "reason": .string(reason.rawValue), "detail": .string(detail),
                "series_uid": .string(job.seriesUID), "node": .string(queue.node),
            ])
            logger.error("case worker failed", metadata: ["case": "\(job.id)", "attempt": "\(job.attempts)", "reason": "\(reason.rawValue)"])
            try? FileManager.default.removeItem(at: layout.outgoing.appendingPathComponent(".\(job.id).partial"))
            if reason == .leaseLost { return }   // another node takes it over; nothing of ours may count
            if job.attempts >= job.maxAttempts {
                try quarantine(job, reason: "\(reason.rawValue): \(detail) (\(job.attempts) attempt(s))")
            } else {
                try queue.release(job)
            }
        }
    }

    /// A node that stopped between recording a case and writing its receipt left the outputs without one: the receipt
    /// is the signed evidence of the case outside the database (#18), so the node taking over writes it.
    func completeReceipt(_ job: Job, folder: URL) throws {
        let file = folder.appendingPathComponent("receipt.json")
        guard FileManager.default.fileExists(atPath: folder.path), !FileManager.default.fileExists(atPath: file.path),
              let receipt = try audit.receipt(caseID: job.id) else { return }
        try receipt.write(to: folder)
        try audit.append(caseID: job.id, kind: "receipt_completed", payload: [
            "detail": .string("the node that recorded the case stopped before writing its receipt; written by the node taking the job over"),
            "node": .string(queue.node),
        ])
    }

    /// The case is recorded: move its inputs on and close the job (only while this node still holds it).
    func settle(_ job: Job, status: CaseStatus, error: String?, spool: URL) throws {
        if status.isFailure {
            try moveInputs(spool, to: layout.quarantine.appendingPathComponent(job.id), reason: error ?? status.rawValue, job: job, kind: "inputs_quarantined")
        } else if status == .held {
            try moveInputs(spool, to: layout.held.appendingPathComponent(job.id), reason: error ?? status.rawValue, job: job, kind: "inputs_held")
        } else if let archive = layout.archive {
            try moveInputs(spool, to: archive.appendingPathComponent(job.id), reason: nil, job: job, kind: "inputs_archived")
        } else {
            try? FileManager.default.removeItem(at: spool)
            try audit.append(caseID: job.id, kind: "inputs_archived", payload: ["destination": .string("deleted")])
        }
        let closed = try queue.finish(job, outcome: status.rawValue, state: status.isFailure ? .failed : .done)
        logger.info("job finished", metadata: ["case": "\(job.id)", "status": "\(status.rawValue)", "closed": "\(closed)"])
    }

    func quarantine(_ job: Job, reason: String) throws {
        if try audit.caseRow(job.id) == nil {
            try audit.append(caseID: job.id, kind: "quarantined", payload: ["reason": .string(reason), "series_uid": .string(job.seriesUID)])
            try audit.finish(caseID: job.id, startedAt: Date(), status: .quarantined, model: modelName, seriesInstanceUID: job.seriesUID,
                             profile: profileName, error: reason)
        }
        try moveInputs(URL(fileURLWithPath: job.spool), to: layout.quarantine.appendingPathComponent(job.id), reason: reason, job: job,
                       kind: "inputs_quarantined")
        try queue.finish(job, outcome: reason, state: .failed)
        logger.warning("series quarantined", metadata: ["case": "\(job.id)", "reason": "\(reason)"])
    }

    func moveInputs(_ spool: URL, to target: URL, reason: String?, job: Job, kind: String) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: spool.path) else { return }   // moved on by the holder before (then it recorded that)
        if let reason {
            try Data("\(reason)\nseries: \(job.seriesUID)\n".utf8).write(to: spool.appendingPathComponent("REASON.txt"))
        }
        try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? fm.removeItem(at: target)
        try fm.moveItem(at: spool, to: target)
        var payload: [String: AuditValue] = ["destination": .string(target.path)]
        if let reason { payload["reason"] = .string(reason) }
        try audit.append(caseID: job.id, kind: kind, payload: payload)
    }
}

/// How long a cluster loop waits after `failures` failed passes in a row (database unreachable): the poll interval
/// doubled per failure, at most 30 s.
func retryDelay(afterFailures failures: Int, poll: TimeInterval) -> TimeInterval {
    min(30, poll * pow(2, Double(min(failures, 6))))
}

/// Renews a job's lease on its own thread while the case runs. `lost` turns true when the database says the lease
/// is gone, or when no renewal succeeded for two thirds of the lease (the case must stop before the lease can run
/// out and another node take the job).
final class LeaseHolder: @unchecked Sendable {
    let queue: JobQueue
    let job: Job
    let lease: TimeInterval
    let logger: Logger
    private let lock = NSLock()
    private var isLost = false
    private var running = true
    private let stopped = DispatchSemaphore(value: 0)

    init(queue: JobQueue, job: Job, lease: TimeInterval, logger: Logger) {
        self.queue = queue
        self.job = job
        self.lease = lease
        self.logger = logger
    }

    var lost: Bool {
        lock.lock()
        defer { lock.unlock() }
        return isLost
    }

    func start() {
        Thread.detachNewThread { [self] in
            var lastRenewed = Date()
            while true {
                if stopped.wait(timeout: .now() + lease / 6) == .success { return }
                do {
                    if try queue.renew(job, lease: lease) {
                        lastRenewed = Date()
                    } else {
                        markLost("the database says another node holds the job")
                    }
                } catch {
                    logger.warning("lease renewal failed", metadata: ["case": "\(job.id)", "error": "\(error)"])
                }
                if Date().timeIntervalSince(lastRenewed) > lease * 2 / 3 { markLost("no renewal for \(Int(lease * 2 / 3)) s") }
            }
        }
    }

    func markLost(_ why: String) {
        lock.lock()
        let first = !isLost
        isLost = true
        lock.unlock()
        if first { logger.error("lease lost; stopping the case", metadata: ["case": "\(job.id)", "why": "\(why)"]) }
    }

    func stop() { stopped.signal() }
}
