import DICOMNetwork
import Foundation
import GRDB
import PostgresDB

/// How often and how long an outbox item is retried.
public struct RetryPolicy: Sendable, Equatable {
    /// Delay after the first failed attempt; doubles with each further one, up to `maximumDelay`.
    public var firstDelay: TimeInterval
    public var maximumDelay: TimeInterval
    /// Attempts after which an item is FAILED (an operator can retry it).
    public var maximumAttempts: Int

    public init(firstDelay: TimeInterval = 10, maximumDelay: TimeInterval = 3600, maximumAttempts: Int = 50) {
        self.firstDelay = firstDelay
        self.maximumDelay = maximumDelay
        self.maximumAttempts = maximumAttempts
    }

    /// Seconds to wait after `attempts` failed attempts.
    public func delay(after attempts: Int) -> TimeInterval {
        min(maximumDelay, firstDelay * pow(2, Double(max(0, attempts - 1))))
    }
}

/// One case's outputs for one destination: sent in one association.
public struct OutboxItem: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        case pending = "PENDING", sent = "SENT", failed = "FAILED", cancelled = "CANCELLED"
    }
    public var id: Int64
    public var caseID: String
    public var destination: StoreDestination
    public var files: [String]
    public var state: State
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastError: String?
    public var createdAt: Date
    public var updatedAt: Date
}

public struct OutboxError: Error, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The outbox database cannot be opened or written.
        case unavailable = "OUTBOX_UNAVAILABLE"
        /// No outbox item with that ID.
        case itemNotFound = "OUTBOX_ITEM_NOT_FOUND"
        /// The item is in a state the operation does not apply to (a SENT item cannot be retried).
        case wrongState = "OUTBOX_WRONG_STATE"
    }
    public let code: Code
    public let detail: String
    public var description: String { "\(code.rawValue): \(detail)" }
}

/// The persistent outbox (issue #15): what is to be sent where, with attempts and the time of the next one, so
/// retries with exponential backoff survive restarts. The audit log records every attempt; this holds the mutable
/// state the audit log must not.
///
/// Two stores behind one interface: a SQLite file beside a node's audit log (one node), or — with a `postgres://`
/// location — a table in the cluster's database shared by every node (#19). There, ``due(now:)`` claims the items it
/// returns: each one's next attempt moves `sendLease` seconds ahead (database clock), so no other node sends it
/// meanwhile; a node that dies mid-send leaves it due again once that has passed (a C-STORE of the same instances
/// twice is harmless: the PACS keeps one copy). ``enqueue`` is idempotent per case and destination on both.
public final class Outbox: @unchecked Sendable {
    public let path: String
    public let policy: RetryPolicy
    /// Seconds a shared outbox's claimed item is reserved for the node sending it.
    public let sendLease: TimeInterval
    let store: any OutboxStore

    /// Whether the outbox is the cluster's shared one (PostgreSQL).
    public var isShared: Bool { store is PostgresOutboxStore }

    public init(path: String, policy: RetryPolicy = RetryPolicy(), sendLease: TimeInterval = 120) throws {
        self.path = path
        self.policy = policy
        self.sendLease = sendLease
        do {
            if PostgresLocation.isPostgres(path) {
                store = try PostgresOutboxStore(db: PostgresDB(url: path))
            } else {
                store = try SQLiteOutboxStore(path: path)
            }
        } catch {
            throw OutboxError(code: .unavailable, detail: "\(PostgresLocation.isPostgres(path) ? ((try? PostgresLocation(url: path).description) ?? "postgres://…") : path): \(error)")
        }
    }

    /// When the outbox was created: cases finished before it are not sent (enabling routing does not send
    /// the history).
    public func createdAt() throws -> Date { try store.createdAt() }

    /// Queues a case's files for a destination once; false when it was queued before (by any node).
    @discardableResult
    public func enqueue(caseID: String, destination: StoreDestination, files: [String], now: Date = Date()) throws -> Bool {
        let destinationText = String(decoding: try JSONEncoder().encode(destination), as: UTF8.self)
        let filesText = String(decoding: try JSONEncoder().encode(files), as: UTF8.self)
        return try store.enqueue(caseID: caseID, destinationName: destination.name, destination: destinationText, files: filesText, now: now)
    }

    public func isQueued(caseID: String) throws -> Bool { try store.isQueued(caseID: caseID) }

    /// Pending items whose next attempt is due, oldest first — on a shared outbox, claimed for this node for
    /// `sendLease` seconds.
    public func due(now: Date = Date()) throws -> [OutboxItem] { try store.due(now: now, lease: sendLease) }

    public func items(state: OutboxItem.State? = nil, limit: Int = 100) throws -> [OutboxItem] { try store.items(state: state, limit: limit) }

    /// A case's items (every destination), oldest first.
    public func items(caseID: String) throws -> [OutboxItem] { try store.items(caseID: caseID) }

    public func item(_ id: Int64) throws -> OutboxItem {
        guard let item = try store.item(id) else { throw OutboxError(code: .itemNotFound, detail: "no outbox item \(id)") }
        return item
    }

    /// Counts by state.
    public func depth() throws -> [OutboxItem.State: Int] { try store.depth() }

    /// Records an attempt: SENT, or PENDING again after the backoff, or FAILED past the attempt limit.
    @discardableResult
    public func recordAttempt(_ id: Int64, error: String?, now: Date = Date()) throws -> OutboxItem {
        try store.recordAttempt(id, error: error, policy: policy, now: now)
        return try item(id)
    }

    /// An operator's retry: a FAILED or CANCELLED (or waiting PENDING) item is due now.
    public func retry(_ id: Int64, now: Date = Date()) throws {
        let current = try item(id)
        guard current.state != .sent else { throw OutboxError(code: .wrongState, detail: "outbox item \(id) was sent already") }
        try store.setState(id, .pending, dueNow: true, now: now)
    }

    public func cancel(_ id: Int64, now: Date = Date()) throws {
        let current = try item(id)
        guard current.state == .pending || current.state == .failed else {
            throw OutboxError(code: .wrongState, detail: "outbox item \(id) is \(current.state.rawValue)")
        }
        try store.setState(id, .cancelled, dueNow: false, now: now)
    }
}

/// Where an outbox keeps its items. Times are seconds since 1970; the PostgreSQL store uses the database's clock
/// (one clock for every node) and ignores the `now` it is given.
protocol OutboxStore: Sendable {
    func createdAt() throws -> Date
    func enqueue(caseID: String, destinationName: String, destination: String, files: String, now: Date) throws -> Bool
    func isQueued(caseID: String) throws -> Bool
    func due(now: Date, lease: TimeInterval) throws -> [OutboxItem]
    func items(state: OutboxItem.State?, limit: Int) throws -> [OutboxItem]
    func items(caseID: String) throws -> [OutboxItem]
    func item(_ id: Int64) throws -> OutboxItem?
    func depth() throws -> [OutboxItem.State: Int]
    func recordAttempt(_ id: Int64, error: String?, policy: RetryPolicy, now: Date) throws
    func setState(_ id: Int64, _ state: OutboxItem.State, dueNow: Bool, now: Date) throws
}

extension OutboxItem {
    /// An item from its stored columns (destination and files as JSON).
    init(id: Int64, caseID: String, destination: String, files: String, state: String, attempts: Int, nextAttemptAt: Double,
         lastError: String?, createdAt: Double, updatedAt: Double) throws {
        self.init(id: id, caseID: caseID, destination: try JSONDecoder().decode(StoreDestination.self, from: Data(destination.utf8)),
                  files: try JSONDecoder().decode([String].self, from: Data(files.utf8)), state: State(rawValue: state) ?? .pending,
                  attempts: attempts, nextAttemptAt: Date(timeIntervalSince1970: nextAttemptAt), lastError: lastError,
                  createdAt: Date(timeIntervalSince1970: createdAt), updatedAt: Date(timeIntervalSince1970: updatedAt))
    }
}

/// One node's outbox: a SQLite file (GRDB).
final class SQLiteOutboxStore: OutboxStore, @unchecked Sendable {
    let queue: DatabaseQueue

    init(path: String) throws {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE items (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    case_id TEXT NOT NULL,
                    destination_name TEXT NOT NULL,
                    destination TEXT NOT NULL,
                    files TEXT NOT NULL,
                    state TEXT NOT NULL,
                    attempts INTEGER NOT NULL,
                    next_attempt_at REAL NOT NULL,
                    last_error TEXT,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    UNIQUE (case_id, destination_name)
                );
                CREATE INDEX items_due ON items(state, next_attempt_at);
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('created_at', ?)", arguments: [Date().timeIntervalSince1970])
        }
        try migrator.migrate(queue)
    }

    func createdAt() throws -> Date {
        try queue.read { db in
            Date(timeIntervalSince1970: Double(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'created_at'") ?? "0") ?? 0)
        }
    }

    func enqueue(caseID: String, destinationName: String, destination: String, files: String, now: Date) throws -> Bool {
        let t = now.timeIntervalSince1970
        return try queue.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO items (case_id, destination_name, destination, files, state, attempts, next_attempt_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?, ?)
                """, arguments: [caseID, destinationName, destination, files, t, t, t])
            return db.changesCount > 0
        }
    }

    func isQueued(caseID: String) throws -> Bool {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM items WHERE case_id = ?", arguments: [caseID]) ?? 0 > 0 }
    }

    func due(now: Date, lease: TimeInterval) throws -> [OutboxItem] {
        try fetch("WHERE state = 'PENDING' AND next_attempt_at <= ? ORDER BY next_attempt_at, id", [now.timeIntervalSince1970])
    }

    func items(state: OutboxItem.State?, limit: Int) throws -> [OutboxItem] {
        if let state { return try fetch("WHERE state = ? ORDER BY id DESC LIMIT ?", [state.rawValue, limit]) }
        return try fetch("ORDER BY id DESC LIMIT ?", [limit])
    }

    func item(_ id: Int64) throws -> OutboxItem? { try fetch("WHERE id = ?", [id]).first }

    func items(caseID: String) throws -> [OutboxItem] { try fetch("WHERE case_id = ? ORDER BY id", [caseID]) }

    func depth() throws -> [OutboxItem.State: Int] {
        try queue.read { db in
            var counts: [OutboxItem.State: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM items GROUP BY state") {
                if let state = OutboxItem.State(rawValue: row["state"]) { counts[state] = row["n"] }
            }
            return counts
        }
    }

    func recordAttempt(_ id: Int64, error: String?, policy: RetryPolicy, now: Date) throws {
        try queue.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT attempts FROM items WHERE id = ?", arguments: [id]) else {
                throw OutboxError(code: .itemNotFound, detail: "no outbox item \(id)")
            }
            let attempts = (row["attempts"] as Int) + 1
            let state: OutboxItem.State = error == nil ? .sent : (attempts >= policy.maximumAttempts ? .failed : .pending)
            let next = now.addingTimeInterval(error == nil ? 0 : policy.delay(after: attempts))
            try db.execute(sql: "UPDATE items SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
                           arguments: [state.rawValue, attempts, next.timeIntervalSince1970, error, now.timeIntervalSince1970, id])
        }
    }

    func setState(_ id: Int64, _ state: OutboxItem.State, dueNow: Bool, now: Date) throws {
        let t = now.timeIntervalSince1970
        try queue.write { db in
            if dueNow {
                try db.execute(sql: "UPDATE items SET state = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?", arguments: [state.rawValue, t, t, id])
            } else {
                try db.execute(sql: "UPDATE items SET state = ?, updated_at = ? WHERE id = ?", arguments: [state.rawValue, t, id])
            }
        }
    }

    func fetch(_ clause: String, _ arguments: StatementArguments) throws -> [OutboxItem] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM items " + clause, arguments: arguments).map { row in
                try OutboxItem(id: row["id"], caseID: row["case_id"], destination: row["destination"], files: row["files"], state: row["state"],
                               attempts: row["attempts"], nextAttemptAt: row["next_attempt_at"], lastError: row["last_error"],
                               createdAt: row["created_at"], updatedAt: row["updated_at"])
            }
        }
    }
}

/// The cluster's outbox: a table in its PostgreSQL database (#19), every node sending from it.
final class PostgresOutboxStore: OutboxStore, @unchecked Sendable {
    let db: PostgresDB
    static let now = "extract(epoch from clock_timestamp())"

    init(db: PostgresDB) throws {
        self.db = db
        // Created under an advisory lock: nodes starting together must not race on CREATE.
        try db.transaction(advisoryLock: 0x6e6e_7365_6f62) {
            try db.execute("""
                CREATE TABLE IF NOT EXISTS outbox_items (
                    id BIGSERIAL PRIMARY KEY,
                    case_id TEXT NOT NULL,
                    destination_name TEXT NOT NULL,
                    destination TEXT NOT NULL,
                    files TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('PENDING', 'SENT', 'FAILED', 'CANCELLED')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at DOUBLE PRECISION NOT NULL,
                    last_error TEXT,
                    claimed_by TEXT,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    UNIQUE (case_id, destination_name)
                )
                """)
            try db.execute("CREATE INDEX IF NOT EXISTS outbox_items_due ON outbox_items (next_attempt_at) WHERE state = 'PENDING'")
            try db.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            try db.execute("INSERT INTO outbox_meta (key, value) VALUES ('created_at', \(Self.now)::text) ON CONFLICT (key) DO NOTHING")
        }
    }

    func createdAt() throws -> Date {
        let text = try db.queryOne("SELECT value FROM outbox_meta WHERE key = 'created_at'")?.string("value") ?? "0"
        return Date(timeIntervalSince1970: Double(text) ?? 0)
    }

    func enqueue(caseID: String, destinationName: String, destination: String, files: String, now: Date) throws -> Bool {
        try db.execute("""
            INSERT INTO outbox_items (case_id, destination_name, destination, files, state, next_attempt_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, 'PENDING', \(Self.now), \(Self.now), \(Self.now)) ON CONFLICT (case_id, destination_name) DO NOTHING
            """, [.text(caseID), .text(destinationName), .text(destination), .text(files)]) > 0
    }

    func isQueued(caseID: String) throws -> Bool {
        try db.queryOne("SELECT 1 AS one FROM outbox_items WHERE case_id = $1 LIMIT 1", [.text(caseID)]) != nil
    }

    func due(now: Date, lease: TimeInterval) throws -> [OutboxItem] {
        try rows(db.query("""
            UPDATE outbox_items SET next_attempt_at = \(Self.now) + $1, claimed_by = $2, updated_at = \(Self.now)
            WHERE id IN (SELECT id FROM outbox_items WHERE state = 'PENDING' AND next_attempt_at <= \(Self.now)
                         ORDER BY next_attempt_at, id LIMIT 16 FOR UPDATE SKIP LOCKED)
            RETURNING *
            """, [.double(lease), .text("\(ProcessInfo.processInfo.hostName):\(getpid())")]))
            .sorted { ($0.nextAttemptAt, $0.id) < ($1.nextAttemptAt, $1.id) }
    }

    func items(state: OutboxItem.State?, limit: Int) throws -> [OutboxItem] {
        if let state {
            return try rows(db.query("SELECT * FROM outbox_items WHERE state = $1 ORDER BY id DESC LIMIT $2", [.text(state.rawValue), .int(Int64(limit))]))
        }
        return try rows(db.query("SELECT * FROM outbox_items ORDER BY id DESC LIMIT $1", [.int(Int64(limit))]))
    }

    func item(_ id: Int64) throws -> OutboxItem? { try rows(db.query("SELECT * FROM outbox_items WHERE id = $1", [.int(id)])).first }

    func items(caseID: String) throws -> [OutboxItem] {
        try rows(db.query("SELECT * FROM outbox_items WHERE case_id = $1 ORDER BY id", [.text(caseID)]))
    }

    func depth() throws -> [OutboxItem.State: Int] {
        var counts: [OutboxItem.State: Int] = [:]
        for row in try db.query("SELECT state, count(*) AS n FROM outbox_items GROUP BY state") {
            if let state = OutboxItem.State(rawValue: try row.requiredString("state")) { counts[state] = Int(try row.requiredInt("n")) }
        }
        return counts
    }

    func recordAttempt(_ id: Int64, error: String?, policy: RetryPolicy, now: Date) throws {
        try db.transaction {
            guard let row = try db.queryOne("SELECT attempts FROM outbox_items WHERE id = $1 FOR UPDATE", [.int(id)]) else {
                throw OutboxError(code: .itemNotFound, detail: "no outbox item \(id)")
            }
            let attempts = Int(try row.requiredInt("attempts")) + 1
            let state: OutboxItem.State = error == nil ? .sent : (attempts >= policy.maximumAttempts ? .failed : .pending)
            try db.execute("""
                UPDATE outbox_items SET state = $1, attempts = $2, next_attempt_at = \(Self.now) + $3, last_error = $4, claimed_by = NULL,
                    updated_at = \(Self.now) WHERE id = $5
                """, [.text(state.rawValue), .int(Int64(attempts)), .double(error == nil ? 0 : policy.delay(after: attempts)), .text(error), .int(id)])
        }
    }

    func setState(_ id: Int64, _ state: OutboxItem.State, dueNow: Bool, now: Date) throws {
        try db.execute("""
            UPDATE outbox_items SET state = $1, updated_at = \(Self.now)\(dueNow ? ", next_attempt_at = \(Self.now)" : "") WHERE id = $2
            """, [.text(state.rawValue), .int(id)])
    }

    func rows(_ rows: [SQLRow]) throws -> [OutboxItem] {
        try rows.map { r in
            try OutboxItem(id: r.requiredInt("id"), caseID: r.requiredString("case_id"), destination: r.requiredString("destination"),
                           files: r.requiredString("files"), state: r.requiredString("state"), attempts: Int(r.requiredInt("attempts")),
                           nextAttemptAt: r.double("next_attempt_at") ?? 0, lastError: r.string("last_error"),
                           createdAt: r.double("created_at") ?? 0, updatedAt: r.double("updated_at") ?? 0)
        }
    }
}
