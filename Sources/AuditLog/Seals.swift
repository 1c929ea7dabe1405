import Digest
import Foundation
import GRDB
import JSON

/// The keys an audit log works with, all kept outside the database (#18): the pseudonym key (HMAC-SHA256 of
/// patient identifiers), the Ed25519 signing key (seals, receipts), where the anchor file is, and how often a
/// checkpoint seal is made.
public struct AuditKeys: Sendable {
    public var pseudonym: PseudonymKey?
    public var signing: SigningKey?
    /// An append-only file with one line per sealed case (its receipt): evidence outside the database.
    public var anchor: URL?
    /// A checkpoint seal of the chain head every this many events (0: none) — covers cases still running.
    public var checkpointEvery: Int

    public init(pseudonym: PseudonymKey? = nil, signing: SigningKey? = nil, anchor: URL? = nil, checkpointEvery: Int = 1000) {
        self.pseudonym = pseudonym
        self.signing = signing
        self.anchor = anchor
        self.checkpointEvery = checkpointEvery
    }

    /// The keys named by a configuration (paths; nil: not configured), each falling back to its environment
    /// variable: `NNSEG_PSEUDONYM_KEY`, `NNSEG_SIGNING_KEY`, `NNSEG_AUDIT_ANCHOR`.
    public static func load(pseudonymKey: String?, signingKey: String?, anchor: String?,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AuditKeys {
        func pick(_ configured: String?, _ variable: String) -> String? {
            if let configured, !configured.isEmpty { return configured }
            if let value = environment[variable], !value.isEmpty { return value }
            return nil
        }
        return AuditKeys(pseudonym: try pick(pseudonymKey, "NNSEG_PSEUDONYM_KEY").map { try PseudonymKey(contentsOf: $0) },
                         signing: try pick(signingKey, "NNSEG_SIGNING_KEY").map { try SigningKey(contentsOf: $0) },
                         anchor: pick(anchor, "NNSEG_AUDIT_ANCHOR").map { URL(fileURLWithPath: $0) })
    }
}

/// An Ed25519 signature of the chain head at one event: a closed case (its summary event) or a checkpoint.
/// Whoever rewrites the chain (edits an event and recomputes every hash after it) cannot make these again
/// without the private key, which the database does not hold.
public struct AuditSeal: Codable, Equatable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "seals"
    public enum Kind: String, Codable, Sendable { case `case`, checkpoint }
    public var id: Int64?
    public var eventID: Int64
    public var kind: Kind
    public var caseID: String?
    public var firstEventID: Int64?
    public var chainHead: String
    public var keyID: String
    /// Lower-case hex of the 64-byte Ed25519 signature of ``message``.
    public var signature: String

    enum CodingKeys: String, CodingKey {
        case id, eventID = "event_id", kind, caseID = "case_id", firstEventID = "first_event_id", chainHead = "chain_head"
        case keyID = "key_id", signature
    }

    /// What is signed: the kind, the event, the chain head there and (cases) the case's first event.
    public static func message(kind: Kind, eventID: Int64, chainHead: String, caseID: String?, firstEventID: Int64?) -> String {
        "nnseg audit seal v1|\(kind.rawValue)|\(eventID)|\(chainHead)|\(caseID ?? "")|\(firstEventID.map(String.init) ?? "")"
    }

    public var message: String { Self.message(kind: kind, eventID: eventID, chainHead: chainHead, caseID: caseID, firstEventID: firstEventID) }

    static func make(kind: Kind, eventID: Int64, chainHead: String, caseID: String?, firstEventID: Int64?, key: SigningKey) throws -> AuditSeal {
        let text = message(kind: kind, eventID: eventID, chainHead: chainHead, caseID: caseID, firstEventID: firstEventID)
        return AuditSeal(id: nil, eventID: eventID, kind: kind, caseID: caseID, firstEventID: firstEventID, chainHead: chainHead,
                         keyID: key.id, signature: try key.sign(text))
    }
}

/// A case's receipt: its event range, the chain head after it and the seal's signature — kept outside the
/// database (`receipt.json` in the case's output folder, a line of the anchor file), so a case removed from the
/// log (or a log truncated or emptied) is still known to have existed.
public struct AuditReceipt: Codable, Equatable, Sendable {
    public var caseID: String
    public var firstEventID: Int64
    public var eventID: Int64
    public var chainHead: String
    public var keyID: String
    public var signature: String
    public var recordedAt: String

    enum CodingKeys: String, CodingKey {
        case caseID = "case_id", firstEventID = "first_event_id", eventID = "event_id", chainHead = "chain_head", keyID = "key_id"
        case signature, recordedAt = "recorded_at"
    }

    init(seal: AuditSeal, recordedAt: String) {
        caseID = seal.caseID ?? ""
        firstEventID = seal.firstEventID ?? seal.eventID
        eventID = seal.eventID
        chainHead = seal.chainHead
        keyID = seal.keyID
        signature = seal.signature
        self.recordedAt = recordedAt
    }

    public var message: String {
        AuditSeal.message(kind: .case, eventID: eventID, chainHead: chainHead, caseID: caseID, firstEventID: firstEventID)
    }

    /// Canonical JSON (sorted keys), one line.
    public var json: String {
        JSONValue.object(JSONObject([
            "case_id": .string(caseID), "first_event_id": .int(firstEventID), "event_id": .int(eventID), "chain_head": .string(chainHead),
            "key_id": .string(keyID), "signature": .string(signature), "recorded_at": .string(recordedAt),
        ])).canonicalJSON
    }

    public init?(json text: String) {
        guard let o = JSONValue.parse(text)?.object, let caseID = o["case_id"]?.string, let first = o["first_event_id"]?.int,
              let event = o["event_id"]?.int, let head = o["chain_head"]?.string, let key = o["key_id"]?.string,
              let signature = o["signature"]?.string else { return nil }
        self.caseID = caseID
        firstEventID = Int64(first)
        eventID = Int64(event)
        chainHead = head
        keyID = key
        self.signature = signature
        recordedAt = o["recorded_at"]?.string ?? ""
    }

    /// Writes `receipt.json` into a case's folder.
    public func write(to folder: URL) throws {
        try Data((json + "\n").utf8).write(to: folder.appendingPathComponent("receipt.json"), options: .atomic)
    }

    /// Appends receipts to the anchor file (O_APPEND, one line each, flushed to disk).
    static func append(_ receipts: [AuditReceipt], toAnchor anchor: URL, log: String) throws {
        let fd = open(anchor.path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw AuditLogError(path: log, detail: "cannot open the anchor file \(anchor.path) (errno \(errno))") }
        defer { close(fd) }
        let bytes = Array(receipts.map { $0.json + "\n" }.joined().utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw AuditLogError(path: log, detail: "cannot append to the anchor file \(anchor.path) (errno \(errno))")
        }
    }

    /// The receipts of an anchor file; a line that is not a receipt is reported by its number.
    public static func readAnchor(_ url: URL) throws -> (receipts: [AuditReceipt], badLines: [Int]) {
        let text = try String(contentsOf: url, encoding: .utf8)
        var receipts: [AuditReceipt] = [], bad: [Int] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if let r = AuditReceipt(json: String(line)) { receipts.append(r) } else { bad.append(i + 1) }
        }
        return (receipts, bad)
    }

    /// Every `receipt.json` under a folder (recursively).
    public static func readReceipts(under folder: URL) throws -> [(url: URL, receipt: AuditReceipt?)] {
        guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return [] }
        var found: [(URL, AuditReceipt?)] = []
        for case let url as URL in walker where url.lastPathComponent == "receipt.json" {
            found.append((url, (try? String(contentsOf: url, encoding: .utf8)).flatMap { AuditReceipt(json: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }))
        }
        return found.sorted { $0.0.path < $1.0.path }
    }
}

/// What `audit verify` is given besides the database: the public key, receipts and anchor lines.
public struct AuditEvidence: Sendable {
    public var publicKey: VerifyingKey?
    public var receipts: [(source: String, receipt: AuditReceipt?)]
    public var anchor: [(line: Int, receipt: AuditReceipt?)]
    /// Cases without a seal are counted, not reported (logs written before signing began).
    public var allowUnsealed: Bool

    public init(publicKey: VerifyingKey? = nil, receipts: [(source: String, receipt: AuditReceipt?)] = [],
                anchor: [(line: Int, receipt: AuditReceipt?)] = [], allowUnsealed: Bool = false) {
        self.publicKey = publicKey
        self.receipts = receipts
        self.anchor = anchor
        self.allowUnsealed = allowUnsealed
    }
}

/// One thing that does not check out, and which mechanism found it.
public struct AuditFinding: Equatable, Sendable, CustomStringConvertible {
    public enum Mechanism: String, Sendable {
        case chain, caseRow = "case-row", signature, receipt, anchor
    }
    public var mechanism: Mechanism
    public var eventID: Int64?
    public var detail: String
    public var description: String { "[\(mechanism.rawValue)] " + (eventID.map { "event \($0): " } ?? "") + detail }
}

public struct AuditVerifyReport: Sendable {
    public var events = 0
    public var cases = 0
    public var sealedCases = 0
    public var checkpoints = 0
    public var unsealedCases = 0
    public var receiptsChecked = 0
    public var anchorLinesChecked = 0
    public var findings: [AuditFinding] = []
    public var intact: Bool { findings.isEmpty }
    public func caught(by mechanism: AuditFinding.Mechanism) -> Bool { findings.contains { $0.mechanism == mechanism } }
}

extension AuditLog {
    /// Verifies the chain and case rows (as ``verify()``), then with a public key every seal (each signature, and
    /// that the event it names still has the hash it signed) and that every case is sealed, then every receipt and
    /// anchor line against the log (the case's events are there and the chain head at its last event is the one
    /// signed). Each finding names the mechanism that caught it.
    public func verify(_ evidence: AuditEvidence) throws -> AuditVerifyReport {
        var report = AuditVerifyReport()
        switch try verify() {
        case .intact(let n):
            report.events = n
        case .broken(let id, let reason):
            report.findings.append(AuditFinding(mechanism: reason.hasPrefix("case ") ? .caseRow : .chain, eventID: id, detail: reason))
        }
        try store.read { db in
            report.cases = try db.countCases()
            if report.events == 0 { report.events = try db.countEvents() }
            let eventAt = { (id: Int64) throws -> AuditEvent? in try db.event(id: id) }
            if let key = evidence.publicKey {
                var sealedSummaries = Set<Int64>()
                for seal in try db.seals() {
                    func finding(_ detail: String) { report.findings.append(AuditFinding(mechanism: .signature, eventID: seal.eventID, detail: detail)) }
                    guard seal.keyID == key.id else { finding("\(seal.kind.rawValue) seal made with key \(seal.keyID), not \(key.id)"); continue }
                    guard key.isValid(signature: seal.signature, for: seal.message) else { finding("\(seal.kind.rawValue) seal's signature does not verify"); continue }
                    guard let event = try eventAt(seal.eventID) else { finding("signed event is missing from the log"); continue }
                    guard event.hash == seal.chainHead else { finding("the chain head here is not the one signed (the chain was rewritten)"); continue }
                    if seal.kind == .case {
                        guard event.kind == "case_summary", event.caseID == seal.caseID else { finding("the signed case summary is not here"); continue }
                        sealedSummaries.insert(seal.eventID)
                        report.sealedCases += 1
                    } else {
                        report.checkpoints += 1
                    }
                }
                for (id, caseID) in try db.summaryEvents() {
                    guard !sealedSummaries.contains(id) else { continue }
                    report.unsealedCases += 1
                    if !evidence.allowUnsealed {
                        report.findings.append(AuditFinding(mechanism: .signature, eventID: id, detail: "case \(caseID) is not signed"))
                    }
                }
            }
            func check(_ receipt: AuditReceipt, mechanism: AuditFinding.Mechanism, source: String) throws {
                func finding(_ detail: String) { report.findings.append(AuditFinding(mechanism: mechanism, eventID: receipt.eventID, detail: "\(source): \(detail)")) }
                if let key = evidence.publicKey {
                    guard receipt.keyID == key.id, key.isValid(signature: receipt.signature, for: receipt.message) else {
                        finding("the receipt's signature does not verify"); return
                    }
                }
                guard let event = try eventAt(receipt.eventID) else {
                    finding("case \(receipt.caseID) (events \(receipt.firstEventID)–\(receipt.eventID)) is missing from the log"); return
                }
                guard event.caseID == receipt.caseID, event.kind == "case_summary" else {
                    finding("event \(receipt.eventID) is not case \(receipt.caseID)'s summary"); return
                }
                guard event.hash == receipt.chainHead else { finding("the chain head at case \(receipt.caseID) is not the one receipted"); return }
                guard let first = try eventAt(receipt.firstEventID), first.caseID == receipt.caseID else {
                    finding("case \(receipt.caseID)'s first event \(receipt.firstEventID) is missing"); return
                }
            }
            for (source, receipt) in evidence.receipts {
                report.receiptsChecked += 1
                guard let receipt else {
                    report.findings.append(AuditFinding(mechanism: .receipt, eventID: nil, detail: "\(source) is not a receipt")); continue
                }
                try check(receipt, mechanism: .receipt, source: source)
            }
            for (line, receipt) in evidence.anchor {
                report.anchorLinesChecked += 1
                guard let receipt else {
                    report.findings.append(AuditFinding(mechanism: .anchor, eventID: nil, detail: "anchor line \(line) is not a receipt")); continue
                }
                try check(receipt, mechanism: .anchor, source: "anchor line \(line)")
            }
        }
        return report
    }
}

extension AuditLog {
    /// The whole log as one JSON document an auditor can check without nnseg (`Ops/verify_audit.py`): every event
    /// with its stored text and hashes, every seal with its signature and signed message, every case row.
    public func exportDocument() throws -> String {
        try store.read { db in
            var events: [JSONValue] = []
            try db.forEachEvent { e in
                events.append(.object(JSONObject([
                    "id": .int(e.id ?? 0), "case_id": .string(e.caseID), "kind": .string(e.kind), "recorded_at": .string(e.recordedAt),
                    "payload": .string(e.payload), "previous_hash": .string(e.previousHash), "hash": .string(e.hash),
                ])))
                return true
            }
            let seals = try db.seals().map { s -> JSONValue in
                .object(JSONObject([
                    "event_id": .int(s.eventID), "kind": .string(s.kind.rawValue), "case_id": s.caseID.map { .string($0) } ?? .null,
                    "first_event_id": s.firstEventID.map { .int($0) } ?? .null, "chain_head": .string(s.chainHead),
                    "key_id": .string(s.keyID), "signature": .string(s.signature), "message": .string(s.message),
                ]))
            }
            let cases = try db.allCases().map { c -> JSONValue in
                .object(JSONObject([
                    "case_id": .string(c.caseID), "started_at": .string(c.startedAt), "finished_at": .string(c.finishedAt),
                    "status": .string(c.status), "model": .string(c.model), "series_uid": .string(c.seriesInstanceUID),
                    "profile": .string(c.profile), "error": c.error.map { .string($0) } ?? .null, "summary_event_id": .int(c.summaryEventID),
                ]))
            }
            return JSONValue.object(JSONObject([
                "format": .string("nnseg-audit-log v1"),
                "hash": .string("sha256 of previous_hash|id|case_id|kind|recorded_at|payload, lower-case hex; the first previous_hash is 'genesis'"),
                "signature": .string("Ed25519 over the seal's message (UTF-8), lower-case hex"),
                "events": .array(events), "seals": .array(seals), "cases": .array(cases),
            ])).canonicalJSON
        }
    }
}
