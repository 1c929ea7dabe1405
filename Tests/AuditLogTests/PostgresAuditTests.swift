import Foundation
import Testing
import TestSupport
@testable import AuditLog
import CaseIdentity
import Digest
import JobQueue

/// #19: the audit log in PostgreSQL has the SQLite log's semantics (append-only by triggers, one hash chain, seals),
/// and concurrent writers on several connections (nodes) keep one chain. Needs the PostgreSQL server binaries
/// (`bash Ops/setup.sh --test`); each test has a database of its own on a private cluster (TestPostgres).
@Suite(.enabled(if: TestPostgres.isAvailable, "PostgreSQL server binaries not installed (bash Ops/setup.sh --test)"))
struct PostgresAuditTests {
    @Test func theSameChainSealsAndQueriesAsTheSQLiteLog() throws {
        let url = try TestPostgres.database("audit")
        let log = try AuditLog(path: url, keys: try TestKeys.auditKeys())
        #expect(log.isShared && log.path.hasPrefix("postgres://nnseg@127.0.0.1:"))
        for i in 0..<5 { try AuditLogTests.recordCase(log, "case-\(i)", status: i == 3 ? .failed : .succeeded) }
        #expect(try log.verify() == .intact(events: 15))
        #expect(try log.cases().count == 5)
        #expect(try log.cases(.init(status: "FAILED")).map(\.caseID) == ["case-3"])
        #expect(try log.caseRow("case-2")?.status == "SUCCEEDED")
        #expect(try log.caseRow("nope") == nil)
        #expect(try log.events(caseID: "case-2").map(\.kind) == ["case_started", "stage_timing", "case_summary"])
        #expect(try log.events(caseID: "case-2")[1].payload == #"{"seconds":0.25,"stage":"predict"}"#)
        let report = try log.verify(AuditEvidence(publicKey: try VerifyingKey(contentsOf: TestKeys.publicKeyPath)))
        #expect(report.intact && report.sealedCases == 5 && report.cases == 5, "\(report.findings)")
        // A second node opening the same database sees the same log and continues its chain.
        let other = try AuditLog(path: url, keys: try TestKeys.auditKeys())
        try AuditLogTests.recordCase(other, "case-5")
        #expect(try log.verify() == .intact(events: 18))
        // The exported document is the one Ops/verify_audit.py checks, as for SQLite.
        #expect(try log.exportDocument().contains("\"case_id\":\"case-5\""))
    }

    @Test func updateDeleteAndTruncateAreRefusedAndAnEditIsCaught() throws {
        let url = try TestPostgres.database("tamper")
        let log = try AuditLog(path: url, keys: try TestKeys.auditKeys())
        for i in 0..<3 { try AuditLogTests.recordCase(log, "case-\(i)") }
        _ = try log.identifierSalt()   // a meta row to try to change
        for sql in ["UPDATE events SET kind = 'x' WHERE id = 2", "DELETE FROM events WHERE id = 9", "TRUNCATE events CASCADE",
                    "UPDATE cases SET status = 'FAILED'", "DELETE FROM seals", "TRUNCATE seals", "UPDATE meta SET value = 'x'"] {
            let result = try TestPostgres.psql(url, sql)
            #expect(result.status != 0 && result.stderr.contains("append-only"), "\(sql): \(result.stderr)")
        }
        #expect(try log.verify() == .intact(events: 9))
        // An administrator who disables the triggers can edit a row; the chain names it.
        try TestPostgres.psql(url, "ALTER TABLE events DISABLE TRIGGER USER; UPDATE events SET payload = '{}' WHERE id = 5; ALTER TABLE events ENABLE TRIGGER USER")
        #expect(try log.verify() == .broken(eventID: 5, reason: "content does not match its hash"))
    }

    /// Four writers on their own connections append and close cases at once: the advisory lock serialises them
    /// into one chain (ids 1…n without a gap, every link intact, every case sealed).
    @Test func concurrentWritersOnSeveralConnectionsKeepOneChain() throws {
        let url = try TestPostgres.database("concurrent")
        let logs = try (0..<4).map { _ in try AuditLog(path: url, keys: try TestKeys.auditKeys()) }
        let failures = FailureList()
        DispatchQueue.concurrentPerform(iterations: logs.count) { w in
            do {
                for c in 0..<10 { try AuditLogTests.recordCase(logs[w], "w\(w)-c\(c)") }
            } catch {
                failures.add("writer \(w): \(error)")
            }
        }
        #expect(failures.items.isEmpty, "\(failures.items)")
        #expect(try logs[0].verify() == .intact(events: 4 * 10 * 3))
        let report = try logs[1].verify(AuditEvidence(publicKey: try VerifyingKey(contentsOf: TestKeys.publicKeyPath)))
        #expect(report.intact && report.sealedCases == 40, "\(report.findings)")
    }
}

/// #19: the shared queue's claims, leases and take-overs.
@Suite(.enabled(if: TestPostgres.isAvailable, "PostgreSQL server binaries not installed (bash Ops/setup.sh --test)"))
struct JobQueueTests {
    @Test func claimsAreExclusiveAndLeasesFenceTheirHolders() throws {
        let url = try TestPostgres.database("queue")
        let a = try JobQueue(url: url, node: "a"), b = try JobQueue(url: url, node: "b")
        for i in 0..<3 { try a.enqueue(id: "job-\(i)", seriesUID: "1.2.\(i)", spool: "/spool/job-\(i)", maxAttempts: 2) }
        #expect(throws: (any Error).self) { try b.enqueue(id: "job-0", seriesUID: "1.2.0", spool: "/x", maxAttempts: 2) }
        guard case .run(let first)? = try a.claim(lease: 30), case .run(let second)? = try b.claim(lease: 30) else {
            Issue.record("expected two claims"); return
        }
        #expect(first.id == "job-0" && second.id == "job-1" && first.attempts == 1 && first.node == "a")
        #expect(try a.depth() == JobQueue.Depth(queued: 1, running: 2, expired: 0, done: 0, failed: 0))
        #expect(try a.renew(first, lease: 30))
        #expect(try a.finish(first, outcome: "SUCCEEDED", state: .done))
        #expect(try !a.finish(first, outcome: "SUCCEEDED", state: .done))   // only once
        // b's lease runs out (b died): a takes job-1 over, the attempt counted and the loser named.
        #expect(try b.renew(second, lease: 0.2))
        Thread.sleep(forTimeInterval: 0.4)
        guard case .run(let takeover)? = try a.claim(lease: 30) else { Issue.record("expected the take-over"); return }
        #expect(takeover.id == "job-1" && takeover.attempts == 2 && takeover.takenOverFrom == "b" && takeover.leaseToken != second.leaseToken)
        // The old holder is fenced: it can neither renew nor finish.
        #expect(try !b.renew(second, lease: 30))
        #expect(try !b.finish(second, outcome: "SUCCEEDED", state: .done))
        // Out of attempts: the next take-over is handed back as exhausted, not run again.
        #expect(try a.renew(takeover, lease: 0.2))
        Thread.sleep(forTimeInterval: 0.4)
        guard case .exhausted(let spent)? = try b.claim(lease: 30) else { Issue.record("expected exhausted"); return }
        #expect(spent.id == "job-1" && spent.attempts == 2 && spent.takenOverFrom == "a")
        #expect(try b.finish(spent, outcome: "RETRIES_EXHAUSTED", state: .failed))
        guard case .run(let last)? = try b.claim(lease: 30) else { Issue.record("expected job-2"); return }
        #expect(last.id == "job-2")
        #expect(try b.release(last))
        #expect(try a.job("job-2")?.state == .queued && a.job("job-2")?.attempts == 1)
        try a.heartbeatNode(role: "worker")
        #expect(try a.nodes().map(\.name) == ["a"])
    }

    /// Many claimers at once never get the same job (SKIP LOCKED).
    @Test func concurrentClaimersNeverShareAJob() throws {
        let url = try TestPostgres.database("claims")
        let setup = try JobQueue(url: url, node: "setup")
        for i in 0..<40 { try setup.enqueue(id: String(format: "job-%02d", i), seriesUID: "1.\(i)", spool: "/s/\(i)", maxAttempts: 3) }
        let queues = try (0..<4).map { try JobQueue(url: url, node: "n\($0)") }
        let claimed = FailureList()
        DispatchQueue.concurrentPerform(iterations: queues.count) { q in
            while case .run(let job)? = try? queues[q].claim(lease: 60) { claimed.add(job.id) }
        }
        #expect(claimed.items.count == 40 && Set(claimed.items).count == 40)
    }
}

/// A thread-safe list (failures or claimed IDs from concurrent work).
final class FailureList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
