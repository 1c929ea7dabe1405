import AuditLog
import Foundation
import JobQueue
import Testing
import TestSupport
import WatchService

/// Issue #19: what a node taking a job over finds when the node before it died between two steps of finishing a
/// case (found by the random-kill soak: killed after recording, before the receipt). Each state is set up as the
/// dead node left it; the node taking over must complete it without running the case again, and the receipts
/// beside the outputs must check out against the log.
@Suite(.ownThreads, .enabled(if: TestPostgres.isAvailable, "PostgreSQL server binaries not installed (bash Ops/setup.sh --test)"))
struct ClusterTakeOverTests {
    /// A runner that must not be asked: these cases are finished already.
    struct MustNotRun: CaseRunner {
        var limits: [String: Double] { [:] }
        func run(claimFolder: URL, outgoing: URL, caseID: String, series: String, abandon: (@Sendable () -> Bool)?) -> CaseRunOutcome {
            Issue.record("case \(caseID) was run again")
            return .workerFailed(.workerFailed, detail: "must not run")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aCaseFinishedBeforeTheNodeDiedIsCompletedNotRunAgain() throws {
        let database = try TestPostgres.database("takeover")
        let dir = try SharedData.temporaryDirectory("cluster-takeover")
        defer { try? FileManager.default.removeItem(at: dir) }
        let layout = ClusterLayout(root: dir)
        let audit = try AuditLog(path: database, keys: try TestKeys.auditKeys())
        let dead = try JobQueue(url: database, node: "dead"), alive = try JobQueue(url: database, node: "alive")
        func outputs(_ id: String) throws -> URL {
            let folder = layout.outgoing.appendingPathComponent(id)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data("SEG".utf8).write(to: folder.appendingPathComponent("seg.dcm"))
            return folder
        }
        for id in ["moved-unrecorded", "recorded-no-receipt"] {
            let spool = layout.spool(node: "dead").appendingPathComponent(id)
            try FileManager.default.createDirectory(at: spool, withIntermediateDirectories: true)
            try Data("image".utf8).write(to: spool.appendingPathComponent("1.dcm"))
            try dead.enqueue(id: id, seriesUID: "2.25.\(id.count)", spool: spool.path, maxAttempts: 3)
            // The dead node claimed it with a short lease and never renewed it.
            guard case .run = try dead.claim(lease: 0.3) else { Issue.record("claim \(id)"); return }
        }
        // 1: outputs moved into place, then killed before recording.   2: recorded, then killed before the receipt.
        let first = try outputs("moved-unrecorded")
        let second = try outputs("recorded-no-receipt")
        _ = try audit.finish(caseID: "recorded-no-receipt", startedAt: Date(), status: .succeeded, model: "m", seriesInstanceUID: "2.25.19",
                             profile: "p", error: nil)

        let worker = try ClusterWorker(queue: alive, audit: audit, layout: layout, runner: MustNotRun(), profileName: "p", modelName: "m",
                                       lease: 30, pollInterval: 0.1)
        var taken = 0
        #expect(waitUntil(20) { taken += (try? worker.step()) == true ? 1 : 0; return taken == 2 }, "both jobs taken over once their leases ran out")
        for (id, folder) in [("moved-unrecorded", first), ("recorded-no-receipt", second)] {
            let receipt = try String(contentsOf: folder.appendingPathComponent("receipt.json"), encoding: .utf8)
            #expect(receipt.trimmingCharacters(in: .whitespacesAndNewlines) == (try audit.receipt(caseID: id))?.json, "\(id)")
            #expect(try audit.caseRow(id)?.status == "SUCCEEDED")
            #expect(try alive.job(id)?.state == .done)
            #expect(!FileManager.default.fileExists(atPath: layout.spool(node: "dead").appendingPathComponent(id).path), "inputs moved on")
        }
        let kinds = try audit.events(caseID: "moved-unrecorded").map(\.kind) + audit.events(caseID: "recorded-no-receipt").map(\.kind)
        #expect(kinds.filter { $0 == "job_taken_over" }.count == 2)
        #expect(kinds.contains("case_recovered") && kinds.contains("receipt_completed"))
        let verify = try CommandRunner.nnseg(["audit", "verify", "--database", database, "--public-key", TestKeys.publicKeyPath,
                                              "--receipts", layout.outgoing.path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
}
