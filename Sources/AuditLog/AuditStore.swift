import Foundation
import GRDB
import PostgresDB

/// What the audit log reads from its database (SQLite file or PostgreSQL): the same tables and the same
/// semantics on both (``SQLiteAuditStore``, ``PostgresAuditStore``).
protocol AuditReading {
    func lastEvent() throws -> AuditEvent?
    func event(id: Int64) throws -> AuditEvent?
    func events(caseID: String) throws -> [AuditEvent]
    /// Events of one kind after an id, in id order, at most `limit`.
    func events(kind: String, afterID: Int64, limit: Int) throws -> [AuditEvent]
    /// How many events of each kind.
    func eventCounts(kinds: [String]) throws -> [String: Int]
    /// Every event in id order, in pages (a log of a million events is not held in memory); `body` returns false to stop.
    func forEachEvent(_ body: (AuditEvent) throws -> Bool) throws
    func cases(_ filter: AuditLog.Filter) throws -> [AuditCase]
    /// Case rows by status.
    func caseCounts() throws -> [String: Int]
    /// Every case row, in the order of their summary events.
    func allCases() throws -> [AuditCase]
    func seals() throws -> [AuditSeal]
    /// The case seal of a case summary event, if the case was signed.
    func caseSeal(eventID: Int64) throws -> AuditSeal?
    func countEvents() throws -> Int
    func countCases() throws -> Int
    /// (id, case_id) of every `case_summary` event, in id order.
    func summaryEvents() throws -> [(id: Int64, caseID: String)]
    func firstEventID(caseID: String) throws -> Int64?
    func meta(_ key: String) throws -> String?
}

/// What a write transaction adds (nothing is ever changed or removed: the database refuses it).
protocol AuditWriting: AuditReading {
    func insert(_ event: AuditEvent) throws
    func insert(_ row: AuditCase) throws
    func insert(_ seal: AuditSeal) throws
    func insertMeta(_ key: String, _ value: String) throws
}

protocol AuditStore: Sendable {
    /// A write transaction: writers are serialised (the chain's next id and previous hash are read inside it).
    func write<T>(_ body: (any AuditWriting) throws -> T) throws -> T
    /// A consistent read.
    func read<T>(_ body: (any AuditReading) throws -> T) throws -> T
}

// MARK: SQLite (GRDB): the embedded default

struct SQLiteAuditStore: AuditStore {
    let pool: DatabasePool

    func write<T>(_ body: (any AuditWriting) throws -> T) throws -> T {
        try pool.write { db in try body(SQLiteAuditAccess(db: db)) }
    }

    func read<T>(_ body: (any AuditReading) throws -> T) throws -> T {
        try pool.read { db in try body(SQLiteAuditAccess(db: db)) }
    }
}

struct SQLiteAuditAccess: AuditWriting {
    let db: Database

    func lastEvent() throws -> AuditEvent? { try AuditEvent.order(Column("id").desc).fetchOne(db) }
    func event(id: Int64) throws -> AuditEvent? { try AuditEvent.fetchOne(db, key: id) }
    func events(caseID: String) throws -> [AuditEvent] { try AuditEvent.filter(Column("case_id") == caseID).order(Column("id")).fetchAll(db) }

    func events(kind: String, afterID: Int64, limit: Int) throws -> [AuditEvent] {
        try AuditEvent.filter(Column("kind") == kind && Column("id") > afterID).order(Column("id")).limit(limit).fetchAll(db)
    }

    func eventCounts(kinds: [String]) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT kind, COUNT(*) AS n FROM events WHERE kind IN (\(kinds.map { _ in "?" }.joined(separator: ","))) GROUP BY kind",
                                    arguments: StatementArguments(kinds)) {
            counts[row["kind"]] = row["n"]
        }
        return counts
    }

    func forEachEvent(_ body: (AuditEvent) throws -> Bool) throws {
        let cursor = try AuditEvent.order(Column("id")).fetchCursor(db)
        while let e = try cursor.next() { if try !body(e) { return } }
    }

    func cases(_ filter: AuditLog.Filter) throws -> [AuditCase] {
        var request = AuditCase.all()
        if let since = filter.since { request = request.filter(Column("started_at") >= AuditLog.timestamp(since)) }
        if let until = filter.until { request = request.filter(Column("started_at") < AuditLog.timestamp(until)) }
        if let status = filter.status { request = request.filter(Column("status") == status) }
        if let model = filter.model { request = request.filter(Column("model") == model) }
        if let series = filter.seriesInstanceUID { request = request.filter(Column("series_uid") == series) }
        if let caseID = filter.caseID { request = request.filter(Column("case_id") == caseID) }
        if let patient = filter.patientID {
            request = request.filter(sql: "case_id IN (SELECT case_id FROM events WHERE kind = 'input_series' AND json_extract(payload, '$.patient_id') = ?)",
                                     arguments: [patient])
        }
        request = request.order(Column("started_at").desc, Column("case_id"))
        if let limit = filter.limit { request = request.limit(limit, offset: filter.offset > 0 ? filter.offset : nil) }
        return try request.fetchAll(db)
    }

    func caseCounts() throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM cases GROUP BY status").map { ($0["status"], $0["n"]) })
    }

    func allCases() throws -> [AuditCase] { try AuditCase.order(Column("summary_event_id")).fetchAll(db) }
    func seals() throws -> [AuditSeal] { try AuditSeal.order(Column("id")).fetchAll(db) }
    func caseSeal(eventID: Int64) throws -> AuditSeal? {
        try AuditSeal.filter(Column("event_id") == eventID && Column("kind") == AuditSeal.Kind.case.rawValue).fetchOne(db)
    }
    func countEvents() throws -> Int { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events") ?? 0 }
    func countCases() throws -> Int { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM cases") ?? 0 }

    func summaryEvents() throws -> [(id: Int64, caseID: String)] {
        try Row.fetchAll(db, sql: "SELECT id, case_id FROM events WHERE kind = 'case_summary' ORDER BY id").map { ($0["id"], $0["case_id"]) }
    }

    func firstEventID(caseID: String) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT MIN(id) FROM events WHERE case_id = ?", arguments: [caseID])
    }

    func meta(_ key: String) throws -> String? { try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }

    func insert(_ event: AuditEvent) throws { try event.insert(db) }
    func insert(_ row: AuditCase) throws { try row.insert(db) }
    func insert(_ seal: AuditSeal) throws { try seal.insert(db) }
    func insertMeta(_ key: String, _ value: String) throws {
        try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
    }
}

// MARK: PostgreSQL: several nodes, one log (#19)

/// The audit log in PostgreSQL: the same tables as the SQLite file, append-only by triggers (UPDATE, DELETE and
/// TRUNCATE raise), and one hash chain for every node. Writers are serialised by a transaction-level advisory lock
/// (``PostgresAuditStore/chainLock``) taken before the chain head is read: the next event's id and previous hash
/// come from the committed head, so concurrent writers on any node append one after another and the chain
/// verifies exactly as the single-node one does. (Per-node chains joined by signed checkpoints would let nodes
/// write without waiting, but an auditor would then have to merge chains; a case writes a few dozen events, so
/// the wait is milliseconds — one chain is kept.)
final class PostgresAuditStore: AuditStore, @unchecked Sendable {
    /// The advisory lock key of the audit chain ("nnseg-au" in ASCII).
    static let chainLock: Int64 = 0x6E6E_7365_672D_6175
    /// The advisory lock key that serialises schema migrations of a new database.
    static let migrationLock: Int64 = 0x6E6E_7365_672D_6D67
    let db: PostgresDB

    init(db: PostgresDB) throws {
        self.db = db
        try migrate()
    }

    func write<T>(_ body: (any AuditWriting) throws -> T) throws -> T {
        try db.transaction(advisoryLock: Self.chainLock) { try body(PostgresAuditAccess(db: db)) }
    }

    func read<T>(_ body: (any AuditReading) throws -> T) throws -> T {
        try db.transaction {
            try db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return try body(PostgresAuditAccess(db: db))
        }
    }

    /// The schema, created once (migrations named as in the SQLite file; applied under an advisory lock, so nodes
    /// starting together do not race).
    func migrate() throws {
        try db.transaction(advisoryLock: Self.migrationLock) {
            try db.execute("CREATE TABLE IF NOT EXISTS nnseg_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            let applied = Set(try db.query("SELECT name FROM nnseg_migrations").map { try $0.requiredString("name") })
            for (name, statements) in Self.migrations where !applied.contains(name) {
                for sql in statements { try db.execute(sql) }
                try db.execute("INSERT INTO nnseg_migrations (name) VALUES ($1)", [.text(name)])
            }
        }
    }

    static let migrations: [(String, [String])] = [
        ("v1", [
            """
            CREATE TABLE events (id BIGINT PRIMARY KEY, case_id TEXT NOT NULL, kind TEXT NOT NULL, recorded_at TEXT NOT NULL,
                payload TEXT NOT NULL, previous_hash TEXT NOT NULL, hash TEXT NOT NULL)
            """,
            "CREATE INDEX events_case ON events(case_id)",
            "CREATE INDEX events_kind ON events(kind)",
            """
            CREATE TABLE cases (case_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT NOT NULL, status TEXT NOT NULL,
                model TEXT NOT NULL, series_uid TEXT NOT NULL, profile TEXT NOT NULL, error TEXT,
                summary_event_id BIGINT NOT NULL REFERENCES events(id))
            """,
            "CREATE INDEX cases_started ON cases(started_at)",
            "CREATE INDEX cases_status ON cases(status)",
            "CREATE INDEX cases_model ON cases(model)",
            "CREATE INDEX cases_series ON cases(series_uid)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """
            CREATE FUNCTION nnseg_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit log is append-only: % cannot be changed or removed', TG_TABLE_NAME;
            END $$
            """,
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION nnseg_append_only()",
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION nnseg_append_only()",
            "CREATE TRIGGER cases_append_only BEFORE UPDATE OR DELETE ON cases FOR EACH ROW EXECUTE FUNCTION nnseg_append_only()",
            "CREATE TRIGGER cases_no_truncate BEFORE TRUNCATE ON cases FOR EACH STATEMENT EXECUTE FUNCTION nnseg_append_only()",
            "CREATE TRIGGER meta_fixed BEFORE UPDATE OR DELETE ON meta FOR EACH ROW EXECUTE FUNCTION nnseg_append_only()",
        ]),
        ("v2-seals", [
            """
            CREATE TABLE seals (id BIGSERIAL PRIMARY KEY, event_id BIGINT NOT NULL, kind TEXT NOT NULL, case_id TEXT,
                first_event_id BIGINT, chain_head TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)
            """,
            "CREATE INDEX seals_event ON seals(event_id)",
            "CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals FOR EACH ROW EXECUTE FUNCTION nnseg_append_only()",
            "CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals FOR EACH STATEMENT EXECUTE FUNCTION nnseg_append_only()",
        ]),
    ]
}

struct PostgresAuditAccess: AuditWriting {
    let db: PostgresDB
    static let eventColumns = "id, case_id, kind, recorded_at, payload, previous_hash, hash"
    static let caseColumns = "case_id, started_at, finished_at, status, model, series_uid, profile, error, summary_event_id"

    static func event(_ r: SQLRow) throws -> AuditEvent {
        AuditEvent(id: try r.requiredInt("id"), caseID: try r.requiredString("case_id"), kind: try r.requiredString("kind"),
                   recordedAt: try r.requiredString("recorded_at"), payload: try r.requiredString("payload"),
                   previousHash: try r.requiredString("previous_hash"), hash: try r.requiredString("hash"))
    }

    static func auditCase(_ r: SQLRow) throws -> AuditCase {
        AuditCase(caseID: try r.requiredString("case_id"), startedAt: try r.requiredString("started_at"), finishedAt: try r.requiredString("finished_at"),
                  status: try r.requiredString("status"), model: try r.requiredString("model"), seriesInstanceUID: try r.requiredString("series_uid"),
                  profile: try r.requiredString("profile"), error: try r.string("error"), summaryEventID: try r.requiredInt("summary_event_id"))
    }

    func lastEvent() throws -> AuditEvent? {
        try db.queryOne("SELECT \(Self.eventColumns) FROM events ORDER BY id DESC LIMIT 1").map(Self.event)
    }

    func event(id: Int64) throws -> AuditEvent? {
        try db.queryOne("SELECT \(Self.eventColumns) FROM events WHERE id = $1", [.int(id)]).map(Self.event)
    }

    func events(caseID: String) throws -> [AuditEvent] {
        try db.query("SELECT \(Self.eventColumns) FROM events WHERE case_id = $1 ORDER BY id", [.text(caseID)]).map(Self.event)
    }

    func events(kind: String, afterID: Int64, limit: Int) throws -> [AuditEvent] {
        try db.query("SELECT \(Self.eventColumns) FROM events WHERE kind = $1 AND id > $2 ORDER BY id LIMIT \(max(0, limit))",
                     [.text(kind), .int(afterID)]).map(Self.event)
    }

    func eventCounts(kinds: [String]) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        let places = kinds.indices.map { "$\($0 + 1)" }.joined(separator: ",")
        for r in try db.query("SELECT kind, count(*) AS n FROM events WHERE kind IN (\(places)) GROUP BY kind", kinds.map { .text($0) }) {
            counts[try r.requiredString("kind")] = Int(try r.requiredInt("n"))
        }
        return counts
    }

    func forEachEvent(_ body: (AuditEvent) throws -> Bool) throws {
        var after: Int64 = Int64.min
        while true {
            let page = try db.query("SELECT \(Self.eventColumns) FROM events WHERE id > $1 ORDER BY id LIMIT 5000", [.int(after)]).map(Self.event)
            for e in page {
                if try !body(e) { return }
                after = e.id ?? after
            }
            if page.count < 5000 { return }
        }
    }

    func cases(_ filter: AuditLog.Filter) throws -> [AuditCase] {
        var clauses: [String] = [], binds: [SQLValue] = []
        func add(_ clause: String, _ value: String) {
            binds.append(.text(value))
            clauses.append(clause.replacingOccurrences(of: "?", with: "$\(binds.count)"))
        }
        if let since = filter.since { add("started_at >= ?", AuditLog.timestamp(since)) }
        if let until = filter.until { add("started_at < ?", AuditLog.timestamp(until)) }
        if let status = filter.status { add("status = ?", status) }
        if let model = filter.model { add("model = ?", model) }
        if let series = filter.seriesInstanceUID { add("series_uid = ?", series) }
        if let caseID = filter.caseID { add("case_id = ?", caseID) }
        if let patient = filter.patientID {
            add("case_id IN (SELECT case_id FROM events WHERE kind = 'input_series' AND payload::json->>'patient_id' = ?)", patient)
        }
        var sql = "SELECT \(Self.caseColumns) FROM cases"
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        sql += " ORDER BY started_at DESC, case_id"
        if let limit = filter.limit { sql += " LIMIT \(max(0, limit)) OFFSET \(max(0, filter.offset))" }
        return try db.query(sql, binds).map(Self.auditCase)
    }

    func caseCounts() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for r in try db.query("SELECT status, count(*) AS n FROM cases GROUP BY status") { counts[try r.requiredString("status")] = Int(try r.requiredInt("n")) }
        return counts
    }

    func allCases() throws -> [AuditCase] {
        try db.query("SELECT \(Self.caseColumns) FROM cases ORDER BY summary_event_id").map(Self.auditCase)
    }

    func seals() throws -> [AuditSeal] { try sealRows("ORDER BY id") }
    func caseSeal(eventID: Int64) throws -> AuditSeal? { try sealRows("WHERE event_id = $1 AND kind = 'case'", [.int(eventID)]).first }

    func sealRows(_ clause: String, _ binds: [SQLValue] = []) throws -> [AuditSeal] {
        try db.query("SELECT id, event_id, kind, case_id, first_event_id, chain_head, key_id, signature FROM seals " + clause, binds).map { r in
            guard let kind = AuditSeal.Kind(rawValue: try r.requiredString("kind")) else {
                throw PostgresDBError(location: db.location.description, detail: "seal \(try r.requiredInt("id")) has an unknown kind")
            }
            return AuditSeal(id: try r.int("id"), eventID: try r.requiredInt("event_id"), kind: kind, caseID: try r.string("case_id"),
                             firstEventID: try r.int("first_event_id"), chainHead: try r.requiredString("chain_head"),
                             keyID: try r.requiredString("key_id"), signature: try r.requiredString("signature"))
        }
    }

    func countEvents() throws -> Int { Int(try db.queryOne("SELECT COUNT(*) AS n FROM events")?.int("n") ?? 0) }
    func countCases() throws -> Int { Int(try db.queryOne("SELECT COUNT(*) AS n FROM cases")?.int("n") ?? 0) }

    func summaryEvents() throws -> [(id: Int64, caseID: String)] {
        try db.query("SELECT id, case_id FROM events WHERE kind = 'case_summary' ORDER BY id").map { (try $0.requiredInt("id"), try $0.requiredString("case_id")) }
    }

    func firstEventID(caseID: String) throws -> Int64? {
        try db.queryOne("SELECT MIN(id) AS first FROM events WHERE case_id = $1", [.text(caseID)])?.int("first")
    }

    func meta(_ key: String) throws -> String? { try db.queryOne("SELECT value FROM meta WHERE key = $1", [.text(key)])?.string("value") }

    func insert(_ e: AuditEvent) throws {
        try db.execute("INSERT INTO events (\(Self.eventColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
            .int(e.id), .text(e.caseID), .text(e.kind), .text(e.recordedAt), .text(e.payload), .text(e.previousHash), .text(e.hash),
        ])
    }

    func insert(_ c: AuditCase) throws {
        try db.execute("INSERT INTO cases (\(Self.caseColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", [
            .text(c.caseID), .text(c.startedAt), .text(c.finishedAt), .text(c.status), .text(c.model), .text(c.seriesInstanceUID),
            .text(c.profile), .text(c.error), .int(c.summaryEventID),
        ])
    }

    func insert(_ s: AuditSeal) throws {
        try db.execute("""
            INSERT INTO seals (event_id, kind, case_id, first_event_id, chain_head, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7)
            """, [.int(s.eventID), .text(s.kind.rawValue), .text(s.caseID), .int(s.firstEventID), .text(s.chainHead), .text(s.keyID), .text(s.signature)])
    }

    func insertMeta(_ key: String, _ value: String) throws {
        try db.execute("INSERT INTO meta (key, value) VALUES ($1, $2)", [.text(key), .text(value)])
    }
}
