import Foundation
import GRDB
import Testing
import TestSupport
@testable import AuditLog
import CaseIdentity
import Digest

struct AuditLogTests {
    static func freshLog() throws -> (AuditLog, URL) {
        let dir = try SharedData.temporaryDirectory("audit")
        return (try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path), dir)
    }

    static func recordCase(_ log: AuditLog, _ id: String, status: CaseStatus = .succeeded, model: String = "Dataset004") throws {
        let start = Date()
        try log.append(caseID: id, kind: "case_started", payload: ["profile": .string("hippocampus")])
        try log.append(caseID: id, kind: "stage_timing", payload: ["stage": .string("predict"), "seconds": .double(0.25)])
        try log.finish(caseID: id, startedAt: start, status: status, model: model, seriesInstanceUID: "1.2.3.\(id.count)",
                       profile: "hippocampus", error: status == .failed ? "READ_FAILED: x" : nil)
    }

    @Test func chainVerifiesAndQueriesFilter() throws {
        let (log, dir) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<5 { try Self.recordCase(log, "case-\(i)", status: i == 3 ? .failed : .succeeded) }
        #expect(try log.verify() == .intact(events: 15))
        #expect(try log.cases().count == 5)
        #expect(try log.cases(.init(status: "FAILED")).map(\.caseID) == ["case-3"])
        #expect(try log.cases(.init(model: "other")).isEmpty)
        #expect(try log.events(caseID: "case-2").map(\.kind) == ["case_started", "stage_timing", "case_summary"])
        // Payloads are canonical JSON.
        #expect(try log.events(caseID: "case-2")[1].payload == #"{"seconds":0.25,"stage":"predict"}"#)
    }

    /// Issue #24: numbers read as a person writes them; a row written in the earlier `%.17g` form still verifies.
    @Test func numbersAreWrittenInTheirShortestForm() throws {
        let (log, dir) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cm3 = (Double(2_448_845) / 1000 * 1000).rounded() / 1000
        try log.append(caseID: "c", kind: "roi_volume", payload: ["cm3": .double(cm3), "tiny": .double(1e-7), "whole": .double(3)])
        #expect(try log.events(caseID: "c")[0].payload == #"{"cm3":2448.845,"tiny":1e-07,"whole":3}"#)
        #expect(AuditValue.parse(try log.events(caseID: "c")[0].payload)?.object?["cm3"]?.double == cm3)
        // An event sealed with the old text (hash over the stored text) keeps verifying next to new ones.
        let queue = try DatabaseQueue(path: dir.appendingPathComponent("audit.sqlite").path)
        let old = #"{"cm3":2448.8449999999998}"#
        try queue.write { db in
            let last = try #require(try Row.fetchOne(db, sql: "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"))
            let id: Int64 = last["id"], previous: String = last["hash"]
            let recordedAt = "2026-01-01T00:00:00.000Z"
            let hash = AuditEvent.digest(previous: previous, id: id + 1, caseID: "c", kind: "roi_volume", recordedAt: recordedAt, payload: old)
            try db.execute(sql: "INSERT INTO events (id, case_id, kind, recorded_at, payload, previous_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [id + 1, "c", "roi_volume", recordedAt, old, previous, hash])
        }
        try log.append(caseID: "c", kind: "roi_volume", payload: ["cm3": .double(cm3)])
        #expect(try log.verify() == .intact(events: 3))
    }

    @Test func updatesAndDeletesAreRefused() throws {
        let (log, dir) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Self.recordCase(log, "a")
        let queue = try DatabaseQueue(path: log.path)
        #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "UPDATE events SET kind = 'x' WHERE id = 1") } }
        #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "DELETE FROM events") } }
        #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "UPDATE cases SET status = 'SUCCEEDED'") } }
        #expect(try log.verify() == .intact(events: 3))
    }

    /// Someone edits a row by hand, bypassing the triggers: verify names that row.
    @Test func handEditedRowBreaksVerificationAtThatRow() throws {
        let (log, dir) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<4 { try Self.recordCase(log, "case-\(i)") }
        let queue = try DatabaseQueue(path: log.path)
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER events_no_update")
            try db.execute(sql: "UPDATE events SET payload = '{\"seconds\":99,\"stage\":\"predict\"}' WHERE id = 5")
        }
        #expect(try log.verify() == .broken(eventID: 5, reason: "content does not match its hash"))

        let (log2, dir2) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir2) }
        for i in 0..<2 { try Self.recordCase(log2, "case-\(i)") }
        let queue2 = try DatabaseQueue(path: log2.path)
        try queue2.write { db in
            try db.execute(sql: "DROP TRIGGER cases_no_update")
            try db.execute(sql: "UPDATE cases SET status = 'SUCCEEDED_EDITED' WHERE case_id = 'case-1'")
        }
        guard case .broken(let id, let reason) = try log2.verify() else { Issue.record("tampering not detected"); return }
        #expect(id == 6 && reason.contains("status differs"))
    }

    /// #18: pseudonyms are HMAC-SHA256 under a key outside the database: stable, keyed (another key gives another
    /// pseudonym), not the salted hash of the database's own salt, and without a key nothing is pseudonymised.
    @Test func pseudonymsAreKeyedAndCannotBeRecomputedFromTheDatabase() throws {
        let dir = try SharedData.temporaryDirectory("audit-pseudonym")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("k1.key").path
        let key = try PseudonymKey.create(at: keyPath)
        let log = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: AuditKeys(pseudonym: key))
        let a = try log.pseudonym("PATIENT-42"), b = try log.pseudonym("PATIENT-42")
        #expect(a == b && a.value.count == 64 && a.value.allSatisfy(\.isHexDigit) && !a.value.contains("PATIENT"))
        #expect(a.form == "hmac-sha256" && a.keyID == key.id && a.keyID.count == 16)
        // The key file is 0600, and a key readable by others is refused.
        let mode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyPath)
        #expect(throws: KeyFileError.self) { try PseudonymKey(contentsOf: keyPath) }
        // Another key, another pseudonym; the database's own salt does not give it either.
        let other = try PseudonymKey.create(at: dir.appendingPathComponent("k2.key").path)
        #expect(other.pseudonym("PATIENT-42") != a.value)
        #expect(try log.legacySaltedPseudonym("PATIENT-42") != a.value)
        // Nothing of the key is in the database file.
        let raw = try String(contentsOfFile: keyPath, encoding: .utf8).split(separator: " ")[1].trimmingCharacters(in: .whitespacesAndNewlines)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: log.path))
        let keyBytes = try #require(Data(base64Encoded: raw))
        #expect(bytes.range(of: Data(raw.utf8)) == nil && bytes.range(of: keyBytes) == nil)
        // Without a key: a clear error, no pseudonym.
        let (keyless, dir2) = try Self.freshLog()
        defer { try? FileManager.default.removeItem(at: dir2) }
        #expect { try keyless.pseudonym("PATIENT-42") } throws: { "\($0)".contains("PSEUDONYM_KEY_MISSING") }
    }
}
