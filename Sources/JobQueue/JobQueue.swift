import Foundation
import PostgresDB

/// One job of the shared queue: a ready series waiting in the shared spool, and who holds it.
public struct Job: Sendable, Equatable {
    public enum State: String, Sendable { case queued, running, done, failed }
    public var id: String
    public var seriesUID: String
    /// The folder (shared storage) holding the series' files and `claim.json`.
    public var spool: String
    public var state: State
    /// Attempts started so far (the current one included while running).
    public var attempts: Int
    public var maxAttempts: Int
    public var node: String?
    /// Fences a holder: every claim gets a new token, and only the holder of the current token may renew or end it.
    public var leaseToken: Int64?
    /// The node that held the job before this claim, when its lease ran out (a dead or cut-off worker).
    public var takenOverFrom: String?
}

/// A node as `nnseg status` lists it.
public struct ClusterNode: Sendable, Equatable {
    public var name: String
    public var role: String
    public var pid: Int
    public var startedAt: String
    public var lastSeen: String
    /// Seconds since the node's last heartbeat (by the database's clock).
    public var silentSeconds: Double
}

/// The job queue of several nodes in the shared PostgreSQL database (#19): ready series become jobs; a worker on any
/// node claims the oldest with `SELECT … FOR UPDATE SKIP LOCKED` (two workers never wait on or get the same row) and
/// holds it under a lease that its heartbeat renews. A worker that dies stops renewing; once the lease has run out
/// any node takes the job over (the attempt is counted; ``Job/takenOverFrom`` names the node that lost it). A
/// job that used up its attempts is returned to the caller as exhausted instead of being run again. All times are
/// the database's (`now()`): nodes' clocks do not matter.
public final class JobQueue: @unchecked Sendable {
    public let db: PostgresDB
    /// This node's name (host:pid by default).
    public let node: String

    public init(db: PostgresDB, node: String) throws {
        self.db = db
        self.node = node
        try migrate()
    }

    public convenience init(url: String, node: String) throws {
        try self.init(db: PostgresDB(url: url), node: node)
    }

    /// The default node name: host name and process ID.
    public static var defaultNodeName: String { "\(ProcessInfo.processInfo.hostName):\(getpid())" }

    static let migrationLock: Int64 = 0x6E6E_7365_672D_6A71

    func migrate() throws {
        try db.transaction(advisoryLock: Self.migrationLock) {
            try db.execute("""
                CREATE TABLE IF NOT EXISTS jobs (
                    id TEXT PRIMARY KEY,
                    series_uid TEXT NOT NULL,
                    spool TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    max_attempts INTEGER NOT NULL,
                    node TEXT,
                    lease_token BIGINT,
                    lease_expires TIMESTAMPTZ,
                    enqueued_by TEXT NOT NULL,
                    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    started_at TIMESTAMPTZ,
                    finished_at TIMESTAMPTZ,
                    outcome TEXT
                )
                """)
            try db.execute("CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (enqueued_at) WHERE state IN ('queued', 'running')")
            try db.execute("CREATE SEQUENCE IF NOT EXISTS job_lease_tokens")
            try db.execute("""
                CREATE TABLE IF NOT EXISTS nodes (
                    name TEXT PRIMARY KEY,
                    role TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """)
        }
    }

    // MARK: Nodes

    /// Registers this node (or refreshes its row) — called at start and with every heartbeat.
    public func heartbeatNode(role: String) throws {
        try db.execute("""
            INSERT INTO nodes (name, role, pid) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE SET last_seen = now(), role = EXCLUDED.role
            """, [.text(node), .text(role), .int(Int64(getpid()))])
    }

    public func nodes() throws -> [ClusterNode] {
        try db.query("""
            SELECT name, role, pid, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
                   to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS seen,
                   EXTRACT(EPOCH FROM now() - last_seen)::float8 AS silent
            FROM nodes ORDER BY name
            """).map { r in
            ClusterNode(name: try r.requiredString("name"), role: try r.requiredString("role"), pid: Int(try r.requiredInt("pid")),
                        startedAt: try r.requiredString("started"), lastSeen: try r.requiredString("seen"), silentSeconds: try r.double("silent") ?? 0)
        }
    }

    // MARK: Jobs

    /// Adds a ready series. The ID is the case ID; enqueuing the same ID twice is refused by the primary key.
    public func enqueue(id: String, seriesUID: String, spool: String, maxAttempts: Int) throws {
        try db.execute("INSERT INTO jobs (id, series_uid, spool, state, max_attempts, enqueued_by) VALUES ($1, $2, $3, 'queued', $4, $5)",
                       [.text(id), .text(seriesUID), .text(spool), .int(Int64(maxAttempts)), .text(node)])
    }

    public enum Claimed: Sendable, Equatable {
        /// Run it: this node holds the lease (``Job/leaseToken``).
        case run(Job)
        /// Its lease ran out after its last allowed attempt: the caller quarantines it (``finish(_:outcome:state:)``
        /// with the token it carries).
        case exhausted(Job)
    }

    /// Claims the oldest waiting job — queued, or running under a lease that has run out — for `lease` seconds;
    /// nil when there is none.
    public func claim(lease: TimeInterval) throws -> Claimed? {
        try db.transaction {
            guard let row = try db.queryOne("""
                SELECT id, state, attempts, max_attempts, node FROM jobs
                WHERE state = 'queued' OR (state = 'running' AND lease_expires < now())
                ORDER BY enqueued_at, id
                LIMIT 1 FOR UPDATE SKIP LOCKED
                """) else { return nil }
            let id = try row.requiredString("id")
            let wasRunning = try row.requiredString("state") == Job.State.running.rawValue
            let previous = wasRunning ? try row.string("node") : nil
            let exhausted = try row.requiredInt("attempts") >= row.requiredInt("max_attempts")
            let updated = try db.queryOne("""
                UPDATE jobs SET state = 'running', attempts = attempts + $2, node = $3, lease_token = nextval('job_lease_tokens'),
                    lease_expires = now() + make_interval(secs => $4), started_at = COALESCE(started_at, now())
                WHERE id = $1
                RETURNING id, series_uid, spool, state, attempts, max_attempts, node, lease_token
                """, [.text(id), .int(exhausted ? 0 : 1), .text(node), .double(lease)])
            guard let updated else { return nil }
            var job = try Self.job(updated)
            job.takenOverFrom = previous
            return exhausted ? .exhausted(job) : .run(job)
        }
    }

    static func job(_ r: SQLRow) throws -> Job {
        Job(id: try r.requiredString("id"), seriesUID: try r.requiredString("series_uid"), spool: try r.requiredString("spool"),
            state: Job.State(rawValue: try r.requiredString("state")) ?? .queued, attempts: Int(try r.requiredInt("attempts")),
            maxAttempts: Int(try r.requiredInt("max_attempts")), node: try r.string("node"), leaseToken: try r.int("lease_token"),
            takenOverFrom: nil)
    }

    /// Extends the lease of a job this node holds; false when the lease was lost (taken over after running out):
    /// the holder must stop working on it.
    public func renew(_ job: Job, lease: TimeInterval) throws -> Bool {
        try db.execute("""
            UPDATE jobs SET lease_expires = now() + make_interval(secs => $3)
            WHERE id = $1 AND lease_token = $2 AND state = 'running'
            """, [.text(job.id), .int(job.leaseToken), .double(lease)]) == 1
    }

    /// Ends a job this node holds (done, or failed: quarantined); false when the lease was lost — another node
    /// holds the job now and this node's result must not count.
    @discardableResult
    public func finish(_ job: Job, outcome: String, state: Job.State) throws -> Bool {
        try db.execute("""
            UPDATE jobs SET state = $3, outcome = $4, finished_at = now(), lease_expires = NULL
            WHERE id = $1 AND lease_token = $2 AND state = 'running'
            """, [.text(job.id), .int(job.leaseToken), .text(state.rawValue), .text(outcome)]) == 1
    }

    /// Gives a held job back to the queue at once (a worker stopping on request); the attempt stays counted.
    @discardableResult
    public func release(_ job: Job) throws -> Bool {
        try db.execute("""
            UPDATE jobs SET state = 'queued', node = NULL, lease_expires = NULL
            WHERE id = $1 AND lease_token = $2 AND state = 'running'
            """, [.text(job.id), .int(job.leaseToken)]) == 1
    }

    public func job(_ id: String) throws -> Job? {
        try db.queryOne("SELECT id, series_uid, spool, state, attempts, max_attempts, node, lease_token FROM jobs WHERE id = $1",
                        [.text(id)]).map(Self.job)
    }

    public struct Depth: Sendable, Equatable {
        public var queued = 0, running = 0, expired = 0, done = 0, failed = 0

        public init(queued: Int = 0, running: Int = 0, expired: Int = 0, done: Int = 0, failed: Int = 0) {
            self.queued = queued
            self.running = running
            self.expired = expired
            self.done = done
            self.failed = failed
        }
    }

    /// How many jobs wait, run (and of those, how many under a lease that has run out), ended.
    public func depth() throws -> Depth {
        var d = Depth()
        for r in try db.query("""
            SELECT state, (state = 'running' AND lease_expires < now()) AS expired, COUNT(*) AS n FROM jobs GROUP BY 1, 2
            """) {
            let n = Int(try r.requiredInt("n"))
            switch try r.requiredString("state") {
            case "queued": d.queued += n
            case "running":
                d.running += n
                if try r.bool("expired") == true { d.expired += n }
            case "done": d.done += n
            default: d.failed += n
            }
        }
        return d
    }

    /// Running jobs with their holders and how long their leases still run (negative: run out).
    public func leases() throws -> [(job: String, node: String, attempts: Int, secondsLeft: Double)] {
        try db.query("""
            SELECT id, node, attempts, EXTRACT(EPOCH FROM lease_expires - now())::float8 AS left_s FROM jobs
            WHERE state = 'running' ORDER BY enqueued_at
            """).map { (try $0.requiredString("id"), try $0.string("node") ?? "", Int(try $0.requiredInt("attempts")), try $0.double("left_s") ?? 0) }
    }
}
