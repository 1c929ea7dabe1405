import AuditLog
import DICOMNetwork
import Foundation
import Outbox
import Testing
import TestSupport

/// Issue #15: the outbox's states and backoff (deterministic clock), and the operator's retry/cancel
/// through the CLI, recorded in the audit log with the account.
struct OutboxTests {
    let destination = StoreDestination(name: "pacs", aeTitle: "PACS", host: "127.0.0.1", port: 104, outputs: ["SEG"])

    @Test func backoffDoublesUpToTheCapAndGivesUpAfterTheLimit() throws {
        let dir = try SharedData.temporaryDirectory("outbox")
        defer { try? FileManager.default.removeItem(at: dir) }
        let outbox = try Outbox(path: dir.appendingPathComponent("outbox.sqlite").path,
                                policy: RetryPolicy(firstDelay: 10, maximumDelay: 40, maximumAttempts: 5))
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        #expect(try outbox.enqueue(caseID: "case-1", destination: destination, files: ["/x/seg.dcm"], now: t0))
        #expect(try !outbox.enqueue(caseID: "case-1", destination: destination, files: ["/x/seg.dcm"], now: t0), "queued once per destination")
        #expect(try outbox.due(now: t0).map(\.caseID) == ["case-1"])
        var now = t0
        var delays: [TimeInterval] = []
        for _ in 1...4 {
            let item = try outbox.recordAttempt(1, error: "refused", now: now)
            #expect(item.state == .pending)
            delays.append(item.nextAttemptAt.timeIntervalSince(now))
            #expect(try outbox.due(now: now).isEmpty, "not due before its time")
            now = item.nextAttemptAt
        }
        #expect(delays == [10, 20, 40, 40])
        #expect(try outbox.recordAttempt(1, error: "refused", now: now).state == .failed)
        #expect(try outbox.due(now: now.addingTimeInterval(1e6)).isEmpty)
        try outbox.retry(1, now: now)
        #expect(try outbox.recordAttempt(1, error: nil, now: now).state == .sent)
        #expect(throws: OutboxError.self) { try outbox.retry(1) }
        #expect(try outbox.depth() == [.sent: 1])
    }

    @Test func operatorsRetryAndCancelThroughTheCLIAndTheAuditSaysWho() throws {
        let dir = try SharedData.temporaryDirectory("outbox-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
        try Data(demo.replacingOccurrences(of: "../Fixtures/demo/model", with: SharedData.fixtures.appendingPathComponent("demo/model").path).utf8)
            .write(to: dir.appendingPathComponent("profile.yaml"))
        let site = dir.appendingPathComponent("site.yaml")
        try Data("profile: profile.yaml\nfolders: {work: work, outgoing: out}\nauditDatabase: audit.sqlite\n".utf8).write(to: site)
        let outbox = try Outbox(path: dir.appendingPathComponent("work/outbox.sqlite").path)
        try outbox.enqueue(caseID: "case-7", destination: destination, files: ["/x/seg.dcm"])
        let cancel = try CommandRunner.nnseg(["outbox", "cancel", "1", "--site", site.path])
        #expect(cancel.status == 0, "\(cancel.stderr)")
        #expect(try outbox.item(1).state == .cancelled)
        let again = try CommandRunner.nnseg(["outbox", "cancel", "1", "--site", site.path])
        #expect(again.status != 0 && again.stderr.contains("OUTBOX_WRONG_STATE"), "\(again.stderr)")
        #expect(try CommandRunner.nnseg(["outbox", "retry", "1", "--site", site.path]).status == 0)
        #expect(try outbox.item(1).state == .pending)
        let missing = try CommandRunner.nnseg(["outbox", "retry", "9", "--site", site.path])
        #expect(missing.stderr.contains("OUTBOX_ITEM_NOT_FOUND"))
        let events = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path).events(caseID: "case-7")
        #expect(events.map(\.kind) == ["outbox_cancel", "outbox_retry"])
        #expect(events.allSatisfy { $0.payload.contains("\"account\":") })
    }
}
