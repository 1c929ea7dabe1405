import DICOMNetwork
import Foundation
import GRDB

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

/// The persistent outbox (issue #15): a SQLite database beside the audit log holding what is to be sent
/// where, with attempts and the time of the next one, so retries with exponential backoff survive restarts.
/// The audit log records every attempt; this holds the mutable state the audit log must not.
public final class Outbox: @unchecked Sendable {
    public let path: String
    public let policy: RetryPolicy
    let queue: DatabaseQueue

    public init(path: String, policy: RetryPolicy = RetryPolicy()) throws {
        self.path = path
        self.policy = policy
        do {
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
        } catch {
            throw OutboxError(code: .unavailable, detail: "\(path): \(error)")
        }
    }

    /// When the outbox was created: cases finished before it are not sent (enabling routing does not send
    /// the history).
    public func createdAt() throws -> Date {
        try queue.read { db in
            Date(timeIntervalSince1970: Double(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'created_at'") ?? "0") ?? 0)
        }
    }

    /// Queues a case's files for a destination once; false when it was queued before.
    @discardableResult
    public func enqueue(caseID: String, destination: StoreDestination, files: [String], now: Date = Date()) throws -> Bool {
        let destinationText = String(decoding: try JSONEncoder().encode(destination), as: UTF8.self)
        let filesText = String(decoding: try JSONEncoder().encode(files), as: UTF8.self)
        return try queue.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO items (case_id, destination_name, destination, files, state, attempts, next_attempt_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?, ?)
                """, arguments: [caseID, destination.name, destinationText, filesText, now.timeIntervalSince1970, now.timeIntervalSince1970,
                                 now.timeIntervalSince1970])
            return db.changesCount > 0
        }
    }

    public func isQueued(caseID: String) throws -> Bool {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM items WHERE case_id = ?", arguments: [caseID]) ?? 0 > 0 }
    }

    /// Pending items whose next attempt is due, oldest first.
    public func due(now: Date = Date()) throws -> [OutboxItem] {
        try fetch("WHERE state = 'PENDING' AND next_attempt_at <= ? ORDER BY next_attempt_at, id", [now.timeIntervalSince1970])
    }

    public func items(state: OutboxItem.State? = nil, limit: Int = 100) throws -> [OutboxItem] {
        if let state { return try fetch("WHERE state = ? ORDER BY id DESC LIMIT ?", [state.rawValue, limit]) }
        return try fetch("ORDER BY id DESC LIMIT ?", [limit])
    }

    public func item(_ id: Int64) throws -> OutboxItem {
        guard let item = try fetch("WHERE id = ?", [id]).first else { throw OutboxError(code: .itemNotFound, detail: "no outbox item \(id)") }
        return item
    }

    /// Counts by state.
    public func depth() throws -> [OutboxItem.State: Int] {
        try queue.read { db in
            var counts: [OutboxItem.State: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM items GROUP BY state") {
                if let state = OutboxItem.State(rawValue: row["state"]) { counts[state] = row["n"] }
            }
            return counts
        }
    }

    /// Records an attempt: SENT, or PENDING again after the backoff, or FAILED past the attempt limit.
    @discardableResult
    public func recordAttempt(_ id: Int64, error: String?, now: Date = Date()) throws -> OutboxItem {
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
        return try item(id)
    }

    /// An operator's retry: a FAILED or CANCELLED (or waiting PENDING) item is due now.
    public func retry(_ id: Int64, now: Date = Date()) throws {
        let current = try item(id)
        guard current.state != .sent else { throw OutboxError(code: .wrongState, detail: "outbox item \(id) was sent already") }
        try queue.write { db in
            try db.execute(sql: "UPDATE items SET state = 'PENDING', next_attempt_at = ?, updated_at = ? WHERE id = ?",
                           arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970, id])
        }
    }

    public func cancel(_ id: Int64, now: Date = Date()) throws {
        let current = try item(id)
        guard current.state == .pending || current.state == .failed else {
            throw OutboxError(code: .wrongState, detail: "outbox item \(id) is \(current.state.rawValue)")
        }
        try queue.write { db in
            try db.execute(sql: "UPDATE items SET state = 'CANCELLED', updated_at = ? WHERE id = ?", arguments: [now.timeIntervalSince1970, id])
        }
    }

    func fetch(_ clause: String, _ arguments: StatementArguments) throws -> [OutboxItem] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM items " + clause, arguments: arguments).map { row in
                let destination = try JSONDecoder().decode(StoreDestination.self, from: Data((row["destination"] as String).utf8))
                let files = try JSONDecoder().decode([String].self, from: Data((row["files"] as String).utf8))
                return OutboxItem(id: row["id"], caseID: row["case_id"], destination: destination, files: files,
                                  state: OutboxItem.State(rawValue: row["state"]) ?? .pending, attempts: row["attempts"],
                                  nextAttemptAt: Date(timeIntervalSince1970: row["next_attempt_at"]), lastError: row["last_error"],
                                  createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
            }
        }
    }
}
