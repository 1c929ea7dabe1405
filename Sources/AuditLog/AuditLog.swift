import CaseIdentity
import Digest
import Foundation
import GRDB
import JSON
import PostgresDB

/// A failure of the audit log (names the database file).
public struct AuditLogError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let detail: String
    public var description: String { "AUDIT_LOG: \(path): \(detail)" }
}

/// One recorded event. Events form a hash chain: `hash = SHA-256(previousHash | id | caseID | kind |
/// recordedAt | payload)`, so editing or removing any row breaks every later hash.
public struct AuditEvent: Codable, Equatable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "events"
    public var id: Int64?
    public var caseID: String
    public var kind: String
    public var recordedAt: String
    /// Canonical JSON (sorted keys).
    public var payload: String
    public var previousHash: String
    public var hash: String

    enum CodingKeys: String, CodingKey {
        case id, caseID = "case_id", kind, recordedAt = "recorded_at", payload, previousHash = "previous_hash", hash
    }

    static func digest(previous: String, id: Int64, caseID: String, kind: String, recordedAt: String, payload: String) -> String {
        SHA256.hash(Array("\(previous)|\(id)|\(caseID)|\(kind)|\(recordedAt)|\(payload)".utf8)).hex
    }
}

/// One case as the summary queries see it (written once, when the case ends).
public struct AuditCase: Codable, Equatable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "cases"
    public var caseID: String
    public var startedAt: String
    public var finishedAt: String
    /// A ``CaseStatus`` raw value (SUCCEEDED, FAILED, …), as stored.
    public var status: String
    public var model: String
    public var seriesInstanceUID: String
    public var profile: String
    public var error: String?
    /// The event holding the same summary (its hash seals this row).
    public var summaryEventID: Int64

    /// The status as the enum (nil only for a value written by a newer version).
    public var caseStatus: CaseStatus? { CaseStatus(rawValue: status) }

    enum CodingKeys: String, CodingKey {
        case caseID = "case_id", startedAt = "started_at", finishedAt = "finished_at", status, model
        case seriesInstanceUID = "series_uid", profile, error, summaryEventID = "summary_event_id"
    }
}

/// An audit payload value: the project's JSON value type (its canonical text is what the chain seals).
public typealias AuditValue = JSONValue

/// The append-only, tamper-evident audit journal: an SQLite file (GRDB, WAL; the embedded default) or, for several
/// nodes, a PostgreSQL database (`postgres://…`, #19) with the same tables and rules. UPDATE and DELETE are refused
/// by triggers; `verify()` walks the hash chain and names the first broken row.
///
/// ```swift
/// let log = try AuditLog(path: "/var/lib/nnseg/audit.sqlite")          // or "postgres://nnseg@db:5432/nnseg"
/// try log.append(caseID: id, kind: "case_started", payload: ["profile": .string("hippocampus")])
/// ```
public final class AuditLog: @unchecked Sendable {
    /// The SQLite file, or the PostgreSQL URL without its password.
    public let path: String
    let store: any AuditStore
    /// Keys kept outside the database: the pseudonym key and the signing key (#18).
    public let keys: AuditKeys

    /// Whether the log is in PostgreSQL (shared by several nodes).
    public let isShared: Bool

    /// - Parameter path: an SQLite file (made with its folder if missing) or a `postgres://` URL (``PostgresLocation``).
    public init(path: String, keys: AuditKeys = AuditKeys()) throws {
        self.keys = keys
        if PostgresLocation.isPostgres(path) {
            isShared = true
            let location: PostgresLocation
            do { location = try PostgresLocation(url: path) } catch { throw AuditLogError(path: "postgres", detail: "\(error)") }
            self.path = location.description
            do {
                store = try PostgresAuditStore(db: PostgresDB(location: location))
            } catch {
                throw AuditLogError(path: location.description, detail: "cannot open (\(error))")
            }
            return
        }
        isShared = false
        self.path = path
        do {
            try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            let pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            store = SQLiteAuditStore(pool: pool)
        } catch let error as AuditLogError {
            throw error
        } catch {
            throw AuditLogError(path: path, detail: "cannot open (\(error))")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    case_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    recorded_at TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    previous_hash TEXT NOT NULL,
                    hash TEXT NOT NULL
                );
                CREATE INDEX events_case ON events(case_id);
                CREATE TABLE cases (
                    case_id TEXT PRIMARY KEY,
                    started_at TEXT NOT NULL,
                    finished_at TEXT NOT NULL,
                    status TEXT NOT NULL,
                    model TEXT NOT NULL,
                    series_uid TEXT NOT NULL,
                    profile TEXT NOT NULL,
                    error TEXT,
                    summary_event_id INTEGER NOT NULL REFERENCES events(id)
                );
                CREATE INDEX cases_started ON cases(started_at);
                CREATE INDEX cases_status ON cases(status);
                CREATE INDEX cases_model ON cases(model);
                CREATE INDEX cases_series ON cases(series_uid);
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'audit log is append-only: events cannot be changed'); END;
                CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'audit log is append-only: events cannot be deleted'); END;
                CREATE TRIGGER cases_no_update BEFORE UPDATE ON cases BEGIN SELECT RAISE(ABORT, 'audit log is append-only: cases cannot be changed'); END;
                CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases BEGIN SELECT RAISE(ABORT, 'audit log is append-only: cases cannot be deleted'); END;
                CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'audit log metadata is fixed'); END;
                """)
        }
        // #18: Ed25519 seals of the chain head — one per closed case, and a checkpoint every N events. A log of v1
        // opens, verifies and continues: its cases simply have no seals (reported as unsealed).
        m.registerMigration("v2-seals") { db in
            try db.execute(sql: """
                CREATE TABLE seals (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    case_id TEXT,
                    first_event_id INTEGER,
                    chain_head TEXT NOT NULL,
                    key_id TEXT NOT NULL,
                    signature TEXT NOT NULL
                );
                CREATE INDEX seals_event ON seals(event_id);
                CREATE TRIGGER seals_no_update BEFORE UPDATE ON seals BEGIN SELECT RAISE(ABORT, 'audit log is append-only: seals cannot be changed'); END;
                CREATE TRIGGER seals_no_delete BEFORE DELETE ON seals BEGIN SELECT RAISE(ABORT, 'audit log is append-only: seals cannot be deleted'); END;
                """)
        }
        return m
    }

    /// A per-database random salt for hashing patient identifiers (created once).
    public func identifierSalt() throws -> String {
        try store.write { db in
            if let salt = try db.meta("identifier_salt") { return salt }
            let salt = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            try db.insertMeta("identifier_salt", salt)
            return salt
        }
    }

    /// The pseudonym of a patient identifier: HMAC-SHA256 under the site's key (``AuditKeys/pseudonym``), which the
    /// database does not hold — so nobody with the file alone can recompute it or test medical record numbers.
    /// Throws `PSEUDONYM_KEY_MISSING` without a key: nothing is pseudonymised with a weaker scheme instead.
    public func pseudonym(_ identifier: String) throws -> (value: String, form: String, keyID: String) {
        guard let key = keys.pseudonym else {
            throw AuditLogError(path: path, detail: "PSEUDONYM_KEY_MISSING: no pseudonym key (audit.pseudonymKey in the profile or site "
                                + "configuration, or NNSEG_PSEUDONYM_KEY; `nnseg keys init --pseudonym-key FILE` makes one)")
        }
        return (key.pseudonym(identifier), "hmac-sha256", key.id)
    }

    /// The pseudonym form of versions before #18: SHA-256 of a per-database salt and the identifier (the salt sits
    /// in the same file — anyone holding it can test identifiers). Kept only so such rows can be recognised.
    public func legacySaltedPseudonym(_ identifier: String) throws -> String {
        SHA256.hash(Array((try identifierSalt() + "|" + identifier).utf8)).hex
    }

    /// Appends an event to the chain; returns it with its id and hash.
    @discardableResult
    public func append(caseID: String, kind: String, payload: [String: AuditValue], at date: Date = Date()) throws -> AuditEvent {
        let text = JSONValue.object(JSONObject(payload)).canonicalJSON
        let recordedAt = Self.timestamp(date)
        return try store.write { db in
            let last = try db.lastEvent()
            let previous = last?.hash ?? "genesis"
            let id = (last?.id ?? 0) + 1
            let hash = AuditEvent.digest(previous: previous, id: id, caseID: caseID, kind: kind, recordedAt: recordedAt, payload: text)
            let event = AuditEvent(id: id, caseID: caseID, kind: kind, recordedAt: recordedAt, payload: text, previousHash: previous, hash: hash)
            try db.insert(event)
            if let signing = keys.signing, keys.checkpointEvery > 0, id % Int64(keys.checkpointEvery) == 0 {
                try db.insert(AuditSeal.make(kind: .checkpoint, eventID: id, chainHead: hash, caseID: nil, firstEventID: nil, key: signing))
            }
            return event
        }
    }

    /// What closes a case (see ``finish(_:)``).
    public struct CaseSummary: Sendable {
        public var caseID: String
        public var startedAt: Date
        public var finishedAt: Date
        public var status: CaseStatus
        public var model: String
        public var seriesInstanceUID: String
        public var profile: String
        public var error: String?

        public init(caseID: String, startedAt: Date, finishedAt: Date = Date(), status: CaseStatus, model: String,
                    seriesInstanceUID: String, profile: String, error: String? = nil) {
            self.caseID = caseID
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.status = status
            self.model = model
            self.seriesInstanceUID = seriesInstanceUID
            self.profile = profile
            self.error = error
        }
    }

    /// Closes a case: a `case_summary` event plus its `cases` row, in one transaction.
    @discardableResult
    public func finish(caseID: String, startedAt: Date, status: CaseStatus, model: String, seriesInstanceUID: String,
                       profile: String, error: String?, at date: Date = Date()) throws -> AuditReceipt? {
        try finish([CaseSummary(caseID: caseID, startedAt: startedAt, finishedAt: date, status: status, model: model,
                                seriesInstanceUID: seriesInstanceUID, profile: profile, error: error)]).first
    }

    /// Closes several cases in one transaction (imports, benchmarks). With a signing key each case is sealed (its
    /// summary event's hash signed) and its receipt returned, and appended to the anchor file when there is one.
    @discardableResult
    public func finish(_ summaries: [CaseSummary]) throws -> [AuditReceipt] {
        let receipts: [AuditReceipt] = try store.write { db in
            var receipts: [AuditReceipt] = []
            let last = try db.lastEvent()
            var previous = last?.hash ?? "genesis"
            var id = (last?.id ?? 0)
            for s in summaries {
                var payload: [String: AuditValue] = [
                    "started_at": .string(Self.timestamp(s.startedAt)), "finished_at": .string(Self.timestamp(s.finishedAt)),
                    "status": .string(s.status.rawValue), "model": .string(s.model), "series_uid": .string(s.seriesInstanceUID),
                    "profile": .string(s.profile),
                ]
                if let error = s.error { payload["error"] = .string(error) }
                let text = JSONValue.object(JSONObject(payload)).canonicalJSON
                let recordedAt = Self.timestamp(s.finishedAt)
                id += 1
                let hash = AuditEvent.digest(previous: previous, id: id, caseID: s.caseID, kind: "case_summary", recordedAt: recordedAt, payload: text)
                try db.insert(AuditEvent(id: id, caseID: s.caseID, kind: "case_summary", recordedAt: recordedAt, payload: text, previousHash: previous,
                                         hash: hash))
                try db.insert(AuditCase(caseID: s.caseID, startedAt: Self.timestamp(s.startedAt), finishedAt: recordedAt, status: s.status.rawValue,
                                        model: s.model, seriesInstanceUID: s.seriesInstanceUID, profile: s.profile, error: s.error, summaryEventID: id))
                if let signing = keys.signing {
                    let first = try db.firstEventID(caseID: s.caseID) ?? id
                    let seal = try AuditSeal.make(kind: .case, eventID: id, chainHead: hash, caseID: s.caseID, firstEventID: first, key: signing)
                    try db.insert(seal)
                    receipts.append(AuditReceipt(seal: seal, recordedAt: recordedAt))
                }
                previous = hash
            }
            return receipts
        }
        if let anchor = keys.anchor, !receipts.isEmpty {
            try AuditReceipt.append(receipts, toAnchor: anchor, log: path)
        }
        return receipts
    }

    public struct Filter: Sendable {
        public var since: Date?
        public var until: Date?
        public var status: String?
        public var model: String?
        public var seriesInstanceUID: String?
        public var caseID: String?
        /// The patient ID as the log stores it (the pseudonym, unless the profile stores identifiers).
        public var patientID: String?
        public var limit: Int?
        /// Rows skipped before `limit` (paging; with a limit only).
        public var offset: Int = 0

        public init(since: Date? = nil, until: Date? = nil, status: String? = nil, model: String? = nil,
                    seriesInstanceUID: String? = nil, caseID: String? = nil, patientID: String? = nil, limit: Int? = nil, offset: Int = 0) {
            self.patientID = patientID
            self.offset = offset
            self.since = since
            self.until = until
            self.status = status
            self.model = model
            self.seriesInstanceUID = seriesInstanceUID
            self.caseID = caseID
            self.limit = limit
        }
    }

    public func cases(_ filter: Filter = Filter()) throws -> [AuditCase] {
        try store.read { db in try db.cases(filter) }
    }

    /// How many cases ended with each status.
    public func caseCounts() throws -> [String: Int] { try store.read { db in try db.caseCounts() } }

    /// The case row of one case (nil: not closed yet, or never seen).
    public func caseRow(_ caseID: String) throws -> AuditCase? {
        try cases(Filter(caseID: caseID)).first
    }

    /// The receipt of a recorded, signed case (as ``finish`` returned it) — to put beside outputs whose writer stopped
    /// before it could (a cluster node taking over a case, #19).
    public func receipt(caseID: String) throws -> AuditReceipt? {
        guard let row = try caseRow(caseID) else { return nil }
        return try store.read { db in try db.caseSeal(eventID: row.summaryEventID) }.map { AuditReceipt(seal: $0, recordedAt: row.finishedAt) }
    }

    public func events(caseID: String) throws -> [AuditEvent] {
        try store.read { db in try db.events(caseID: caseID) }
    }

    /// Events of one kind after an event id, in id order (a reader following the log: metrics, the console).
    public func events(kind: String, after id: Int64, limit: Int = 1000) throws -> [AuditEvent] {
        try store.read { db in try db.events(kind: kind, afterID: id, limit: limit) }
    }

    /// How many events of each of these kinds the log holds.
    public func eventCounts(kinds: [String]) throws -> [String: Int] {
        guard !kinds.isEmpty else { return [:] }
        return try store.read { db in try db.eventCounts(kinds: kinds) }
    }

    public enum Verification: Equatable, Sendable {
        case intact(events: Int)
        /// The first event whose stored hash, link or content does not check out.
        case broken(eventID: Int64, reason: String)
    }

    /// Walks the whole chain (and checks every case row against its sealed summary).
    public func verify() throws -> Verification {
        try store.read { db in
            var previous = "genesis"
            var expectedID: Int64 = 1
            var count = 0
            var broken: Verification?
            try db.forEachEvent { e in
                let id = e.id ?? -1
                if id != expectedID { broken = .broken(eventID: expectedID, reason: "event \(expectedID) is missing (next is \(id))"); return false }
                if e.previousHash != previous { broken = .broken(eventID: id, reason: "previous_hash does not match event \(id - 1)"); return false }
                let recomputed = AuditEvent.digest(previous: previous, id: id, caseID: e.caseID, kind: e.kind, recordedAt: e.recordedAt, payload: e.payload)
                if recomputed != e.hash { broken = .broken(eventID: id, reason: "content does not match its hash"); return false }
                previous = e.hash
                expectedID += 1
                count += 1
                return true
            }
            if let broken { return broken }
            // Case rows must equal the summary event that seals them.
            for c in try db.allCases() {
                guard let e = try db.event(id: c.summaryEventID), e.kind == "case_summary", e.caseID == c.caseID,
                      let payload = AuditValue.parse(e.payload)?.object else {
                    return .broken(eventID: c.summaryEventID, reason: "case \(c.caseID) has no sealing summary event")
                }
                let fields: [(String, String?)] = [("status", c.status), ("model", c.model), ("series_uid", c.seriesInstanceUID),
                                                   ("profile", c.profile), ("finished_at", c.finishedAt), ("started_at", c.startedAt),
                                                   ("error", c.error)]
                for (key, value) in fields where payload[key]?.string != value {
                    return .broken(eventID: c.summaryEventID, reason: "case \(c.caseID): \(key) differs from its sealed summary")
                }
            }
            return .intact(events: count)
        }
    }

    static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}
