import Digest
import Foundation
import GRDB
import Testing
import TestSupport
@testable import AuditLog
import CaseIdentity

/// #18's acceptance: the issue's tampering table, each row done to a signed log by someone holding the file who
/// drops the triggers first, is detected given the public key and the receipts or anchor — and the test names
/// which mechanism caught it.
struct AuditTamperTests {
    /// A signed log of four cases (3 events each), its receipts folder and anchor file.
    struct Fixture {
        let dir: URL
        let log: AuditLog
        let receipts: URL
        let anchor: URL

        init(_ name: String) throws {
            dir = try SharedData.temporaryDirectory("tamper-\(name)")
            receipts = dir.appendingPathComponent("out")
            anchor = dir.appendingPathComponent("anchor.jsonl")
            log = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: try TestKeys.auditKeys(anchor: anchor, checkpointEvery: 5))
            for i in 1...4 {
                let id = "case-\(i)"
                try log.append(caseID: id, kind: "case_started", payload: ["profile": .string("p")])
                try log.append(caseID: id, kind: "input_series", payload: ["patient_id": .string(try log.pseudonym("P\(i)").value)])
                let receipt = try #require(try log.finish(caseID: id, startedAt: Date(), status: .succeeded, model: "m", seriesInstanceUID: "1.2.\(i)",
                                                          profile: "p", error: nil))
                let folder = receipts.appendingPathComponent(id)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try receipt.write(to: folder)
            }
        }

        /// Runs SQL on the file as an intruder would: triggers dropped first.
        func tamper(_ body: (Database) throws -> Void) throws {
            var configuration = Configuration()
            configuration.foreignKeysEnabled = false   // an intruder's sqlite3 does not enforce them either
            let queue = try DatabaseQueue(path: log.path, configuration: configuration)
            try queue.write { db in
                for name in ["events_no_update", "events_no_delete", "cases_no_update", "cases_no_delete", "seals_no_update", "seals_no_delete"] {
                    try db.execute(sql: "DROP TRIGGER IF EXISTS \(name)")
                }
                try body(db)
            }
        }

        /// Recomputes every hash from the first event on (what a careful intruder does after an edit).
        static func rechain(_ db: Database) throws {
            var previous = "genesis"
            for e in try AuditEvent.order(Column("id")).fetchAll(db) {
                let hash = AuditEvent.digest(previous: previous, id: e.id!, caseID: e.caseID, kind: e.kind, recordedAt: e.recordedAt, payload: e.payload)
                try db.execute(sql: "UPDATE events SET previous_hash = ?, hash = ? WHERE id = ?", arguments: [previous, hash, e.id!])
                previous = hash
            }
        }

        func verify(publicKey: Bool = true, receipts useReceipts: Bool = true, anchor useAnchor: Bool = true) throws -> AuditVerifyReport {
            var evidence = AuditEvidence()
            if publicKey { evidence.publicKey = try VerifyingKey(contentsOf: TestKeys.publicKeyPath) }
            if useReceipts { evidence.receipts = try AuditReceipt.readReceipts(under: receipts).map { ($0.url.path, $0.receipt) } }
            if useAnchor { evidence.anchor = try AuditReceipt.readAnchor(anchor).receipts.enumerated().map { ($0.offset + 1, $0.element) } }
            return try log.verify(evidence)
        }
    }

    @Test func anUntouchedLogVerifiesWithEveryPieceOfEvidence() throws {
        let f = try Fixture("clean")
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let report = try f.verify()
        #expect(report.intact, "\(report.findings)")
        #expect(report.events == 12 && report.cases == 4 && report.sealedCases == 4 && report.checkpoints == 2)
        #expect(report.receiptsChecked == 4 && report.anchorLinesChecked == 4)
        // The seal table refuses UPDATE and DELETE like the others.
        let queue = try DatabaseQueue(path: f.log.path)
        #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "DELETE FROM seals") } }
        #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "UPDATE seals SET signature = 'x'") } }
    }

    /// Each row of the issue's table: the tampering, and the mechanisms expected to catch it.
    @Test(arguments: [
        ("edit a middle payload", ["chain"]),
        ("edit the last payload", ["chain"]),
        ("edit recorded_at", ["chain"]),
        ("edit a case row", ["case-row"]),
        ("swap two rows", ["chain"]),
        ("delete a middle event", ["chain"]),
        ("delete the last event and its case row", ["signature", "receipt", "anchor"]),
        ("delete the whole last case", ["receipt", "anchor"]),
        ("delete every event and case", ["receipt", "anchor"]),
        ("edit an event and recompute the chain after it", ["signature"]),
        ("delete a middle event, renumber and rehash", ["signature"]),
        ("change the last case's status to FAILED and rehash", ["signature"]),
    ])
    func tamperingIsDetected(_ row: String, _ expected: [String]) throws {
        let f = try Fixture(String(row.prefix(12)).replacingOccurrences(of: " ", with: "-"))
        defer { try? FileManager.default.removeItem(at: f.dir) }
        try f.tamper { db in
            switch row {
            case "edit a middle payload":
                try db.execute(sql: "UPDATE events SET payload = '{\"profile\":\"other\"}' WHERE id = 4")
            case "edit the last payload":
                try db.execute(sql: "UPDATE events SET payload = replace(payload, 'SUCCEEDED', 'FAILED') WHERE id = 12")
            case "edit recorded_at":
                try db.execute(sql: "UPDATE events SET recorded_at = '2020-01-01T00:00:00.000Z' WHERE id = 5")
            case "edit a case row":
                try db.execute(sql: "UPDATE cases SET model = 'another' WHERE case_id = 'case-2'")
            case "swap two rows":
                try db.execute(sql: "UPDATE events SET id = -1 WHERE id = 4")
                try db.execute(sql: "UPDATE events SET id = 4 WHERE id = 5")
                try db.execute(sql: "UPDATE events SET id = 5 WHERE id = -1")
            case "delete a middle event":
                try db.execute(sql: "DELETE FROM events WHERE id = 5")
            case "delete the last event and its case row":
                try db.execute(sql: "DELETE FROM events WHERE id = 12")
                try db.execute(sql: "DELETE FROM cases WHERE case_id = 'case-4'")
            case "delete the whole last case":
                try db.execute(sql: "DELETE FROM events WHERE case_id = 'case-4'")
                try db.execute(sql: "DELETE FROM cases WHERE case_id = 'case-4'")
                try db.execute(sql: "DELETE FROM seals WHERE event_id >= 10")
            case "delete every event and case":
                try db.execute(sql: "DELETE FROM events")
                try db.execute(sql: "DELETE FROM cases")
                try db.execute(sql: "DELETE FROM seals")
            case "edit an event and recompute the chain after it":
                try db.execute(sql: "UPDATE events SET payload = '{\"profile\":\"other\"}' WHERE id = 4")
                try Fixture.rechain(db)
            case "delete a middle event, renumber and rehash":
                try db.execute(sql: "DELETE FROM events WHERE id = 5")
                for id in 6...12 { try db.execute(sql: "UPDATE events SET id = ? WHERE id = ?", arguments: [id - 1, id]) }
                try db.execute(sql: "UPDATE cases SET summary_event_id = summary_event_id - 1 WHERE summary_event_id > 5")
                try Fixture.rechain(db)
            case "change the last case's status to FAILED and rehash":
                try db.execute(sql: "UPDATE events SET payload = replace(payload, 'SUCCEEDED', 'FAILED') WHERE id = 12")
                try db.execute(sql: "UPDATE cases SET status = 'FAILED' WHERE case_id = 'case-4'")
                try Fixture.rechain(db)
            default:
                Issue.record("unknown row \(row)")
            }
        }
        // What today's check (chain and case rows only) says, and what the evidence says.
        let chainOnly = try f.verify(publicKey: false, receipts: false, anchor: false)
        let report = try f.verify()
        #expect(!report.intact, "\(row): not detected")
        let caught = Set(report.findings.map(\.mechanism.rawValue))
        for mechanism in expected { #expect(caught.contains(mechanism), "\(row): \(mechanism) did not catch it; caught by \(caught.sorted()): \(report.findings)") }
        // Receipts alone, and the anchor alone, are each enough for the rows the signatures cannot see.
        if !caught.contains("chain") && !caught.contains("case-row") && !caught.contains("signature") {
            let receiptsOnly = try f.verify(receipts: true, anchor: false), anchorOnly = try f.verify(receipts: false, anchor: true)
            #expect(!receiptsOnly.intact && !anchorOnly.intact)
        }
        print("tamper: \(row) — chain-only check \(chainOnly.intact ? "intact" : "broken"); caught by \(caught.sorted().joined(separator: ", "))")
    }

    /// #18's migration: a log written before seals (v1 schema, salted pseudonyms) opens, verifies and continues;
    /// with the public key its old cases are reported unsigned unless allowed, new cases are signed.
    @Test func aLogOfTheEarlierSchemaOpensVerifiesAndContinues() throws {
        let dir = try SharedData.temporaryDirectory("audit-v1")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("audit.sqlite").path
        do {
            let pool = try DatabasePool(path: path)
            try AuditLog.migrator.migrate(pool, upTo: "v1")
            try pool.write { db in
                var previous = "genesis"
                let rows: [(String, String, String)] = [("old-1", "input_series", #"{"patient_id":"abc","patient_id_form":"salted-sha256"}"#),
                                                         ("old-1", "case_summary", #"{"finished_at":"2026-01-01T00:00:01.000Z","model":"m","profile":"p","series_uid":"1.2","started_at":"2026-01-01T00:00:00.000Z","status":"SUCCEEDED"}"#)]
                for (i, (caseID, kind, payload)) in rows.enumerated() {
                    let id = Int64(i + 1), at = "2026-01-01T00:00:0\(i).000Z"
                    let hash = AuditEvent.digest(previous: previous, id: id, caseID: caseID, kind: kind, recordedAt: at, payload: payload)
                    try AuditEvent(id: id, caseID: caseID, kind: kind, recordedAt: at, payload: payload, previousHash: previous, hash: hash).insert(db)
                    previous = hash
                }
                try AuditCase(caseID: "old-1", startedAt: "2026-01-01T00:00:00.000Z", finishedAt: "2026-01-01T00:00:01.000Z", status: "SUCCEEDED",
                              model: "m", seriesInstanceUID: "1.2", profile: "p", error: nil, summaryEventID: 2).insert(db)
            }
        }
        let log = try AuditLog(path: path, keys: try TestKeys.auditKeys())
        #expect(try log.verify() == .intact(events: 2))
        try AuditLogTests.recordCase(log, "new-1")
        let key = try VerifyingKey(contentsOf: TestKeys.publicKeyPath)
        let strict = try log.verify(AuditEvidence(publicKey: key))
        #expect(strict.findings.count == 1 && strict.findings[0].mechanism == .signature && strict.findings[0].detail.contains("old-1"))
        let allowed = try log.verify(AuditEvidence(publicKey: key, allowUnsealed: true))
        #expect(allowed.intact && allowed.sealedCases == 1 && allowed.unsealedCases == 1, "\(allowed.findings)")
    }
}
