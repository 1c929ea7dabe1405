import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// A failure talking to PostgreSQL. `location` is the server and database (never the password).
public struct PostgresDBError: Error, CustomStringConvertible, Equatable {
    public let location: String
    public let detail: String
    /// The server's SQLSTATE when it answered with an error (`23505` unique violation, `P0001` raised by a trigger, …).
    public let sqlState: String?
    public var description: String { "DATABASE: \(location): \(detail)" }

    public init(location: String, detail: String, sqlState: String? = nil) {
        self.location = location
        self.detail = detail
        self.sqlState = sqlState
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// The server cannot be reached or is not accepting connections now (no answer, connection exceptions 08…,
    /// shutting down / starting up 57P…) — worth waiting for, unlike a refused password or a missing database.
    public var isUnavailable: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P")
    }
}

/// Where a PostgreSQL database is: parsed from a `postgres://user:password@host:port/database?sslmode=…` URL
/// (libpq's form; `sslmode` disable (default on loopback), require, verify-full; `sslrootcert=FILE` for a private CA).
/// The password may instead come from `PGPASSWORD`.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, require, verifyFull = "verify-full" }
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    public var rootCertificate: String?

    /// The URL without the password (logs, errors, the audit log's own description).
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// Whether a database option names PostgreSQL rather than an SQLite file.
    public static func isPostgres(_ text: String) -> Bool { text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") }

    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard Self.isPostgres(text), let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
            throw PostgresDBError(location: "postgres", detail: "DATABASE_URL_INVALID: expected postgres://user[:password]@host[:port]/database")
        }
        self.host = host
        port = components.port ?? 5432
        user = components.user.flatMap { $0.removingPercentEncoding } ?? environment["PGUSER"] ?? "postgres"
        password = components.password.flatMap { $0.removingPercentEncoding } ?? environment["PGPASSWORD"]
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.isEmpty ? user : path
        var mode = TLSMode.disable
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable", "allow", "prefer": mode = .disable
                case "require": mode = .require
                case "verify-ca", "verify-full": mode = .verifyFull
                default: throw PostgresDBError(location: "postgres", detail: "DATABASE_URL_INVALID: sslmode \(item.value ?? "") (disable, require or verify-full)")
                }
            case "sslrootcert": rootCertificate = item.value
            case "application_name", "connect_timeout": continue
            default: throw PostgresDBError(location: "postgres", detail: "DATABASE_URL_INVALID: unknown parameter \(item.name)")
            }
        }
        tls = mode
    }
}

/// One value bound to a statement's `$n` placeholder.
public enum SQLValue: Sendable, Equatable {
    case text(String?)
    case int(Int64?)
    case double(Double)
    case bool(Bool)
}

/// A result row, read by column name.
public struct SQLRow: Sendable {
    let row: PostgresRow

    public func string(_ column: String) throws -> String? { try row.makeRandomAccess()[column].decode(String?.self) }
    public func int(_ column: String) throws -> Int64? { try row.makeRandomAccess()[column].decode(Int64?.self) }
    public func double(_ column: String) throws -> Double? { try row.makeRandomAccess()[column].decode(Double?.self) }
    public func bool(_ column: String) throws -> Bool? { try row.makeRandomAccess()[column].decode(Bool?.self) }

    /// A column that must not be NULL.
    public func requiredString(_ column: String) throws -> String {
        guard let value = try string(column) else { throw PostgresDBError(location: "row", detail: "column \(column) is NULL") }
        return value
    }

    public func requiredInt(_ column: String) throws -> Int64 {
        guard let value = try int(column) else { throw PostgresDBError(location: "row", detail: "column \(column) is NULL") }
        return value
    }
}

/// A blocking PostgreSQL session over postgres-nio for the project's synchronous services (the audit log, the job
/// queue): one connection, used by one caller at a time (a recursive lock, so a transaction's body can query on
/// the same thread). A connection the server closed is opened again before the next statement; a transaction
/// cut by that is rolled back by the server and its error returned.
public final class PostgresDB: @unchecked Sendable {
    public let location: PostgresLocation
    private let lock = NSRecursiveLock()
    private var connection: PostgresConnection?
    private var inTransaction = 0
    private let logger: Logger
    private static let nextID = ManagedAtomicCounter()

    public init(location: PostgresLocation, logger: Logger = Logger(label: "nnseg.postgres")) throws {
        self.location = location
        self.logger = logger
        try withLock { _ = try connected() }
    }

    public convenience init(url: String) throws {
        try self.init(location: PostgresLocation(url: url))
    }

    /// Waits until the database at `url` accepts a connection (a node started while its database is down or
    /// failing over waits instead of exiting), retrying with backoff up to 30 s and logging each wait; errors that
    /// waiting cannot cure (authentication, a missing database, a malformed URL) are thrown at once.
    public static func waitUntilReachable(url: String, logger: Logger, stop: () -> Bool = { false }) throws {
        let location = try PostgresLocation(url: url)
        var wait = 1.0
        while true {
            do {
                try PostgresDB(location: location, logger: logger).close()
                return
            } catch let error as PostgresDBError where error.isUnavailable && !stop() {
                logger.error("waiting for the database", metadata: ["database": "\(location)", "error": "\(error.detail)", "retry_in_s": "\(wait)"])
                Thread.sleep(forTimeInterval: wait)
                wait = min(30, wait * 2)
            }
        }
    }

    deinit {
        if let connection { try? connection.close().wait() }
    }

    public func close() {
        withLock {
            if let connection { try? connection.close().wait() }
            connection = nil
        }
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func connected() throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        connection = nil
        var configuration = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                             password: location.password, database: location.database, tls: .disable)
        if location.tls != .disable {
            var tls = TLSConfiguration.makeClientConfiguration()
            if location.tls == .require { tls.certificateVerification = .none }
            if let root = location.rootCertificate {
                do {
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(root))
                } catch {
                    throw PostgresDBError(location: location.description, detail: "cannot read sslrootcert \(root) (\(error))")
                }
            }
            do {
                configuration.tls = .require(try NIOSSLContext(configuration: tls))
            } catch {
                throw PostgresDBError(location: location.description, detail: "TLS setup failed (\(error))")
            }
        }
        configuration.options.connectTimeout = .seconds(10)
        do {
            let made = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                                                      id: Self.nextID.next(), logger: logger).wait()
            connection = made
            return made
        } catch {
            throw Self.wrap(error, location: location, what: "cannot connect")
        }
    }

    static func wrap(_ error: Error, location: PostgresLocation, what: String) -> PostgresDBError {
        if let error = error as? PostgresDBError { return error }
        if let psql = error as? PSQLError {
            if let info = psql.serverInfo {
                let message = info[.message] ?? "error"
                let detail = info[.detail].map { " (\($0))" } ?? ""
                return PostgresDBError(location: location.description, detail: "\(what): \(message)\(detail)", sqlState: info[.sqlState])
            }
            return PostgresDBError(location: location.description, detail: "\(what): \(psql.code)")
        }
        return PostgresDBError(location: location.description, detail: "\(what): \(error)")
    }

    private func run(_ sql: String, _ binds: [SQLValue]) throws -> PostgresQueryResult {
        try withLock {
            var bindings = PostgresBindings(capacity: binds.count)
            for value in binds {
                switch value {
                case .text(let s): if let s { bindings.append(s) } else { bindings.appendNull() }
                case .int(let i): if let i { bindings.append(i) } else { bindings.appendNull() }
                case .double(let d): bindings.append(d)
                case .bool(let b): bindings.append(b)
                }
            }
            let connection: PostgresConnection
            do {
                connection = try connected()
            } catch {
                // A transaction on a connection that went away is lost with it: say so rather than reconnect inside it.
                throw error
            }
            do {
                return try connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).wait()
            } catch {
                throw Self.wrap(error, location: location, what: String(sql.prefix(60)))
            }
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    @discardableResult
    public func execute(_ sql: String, _ binds: [SQLValue] = []) throws -> Int {
        try run(sql, binds).metadata.rows ?? 0
    }

    public func query(_ sql: String, _ binds: [SQLValue] = []) throws -> [SQLRow] {
        try run(sql, binds).rows.map { SQLRow(row: $0) }
    }

    public func queryOne(_ sql: String, _ binds: [SQLValue] = []) throws -> SQLRow? { try query(sql, binds).first }

    /// Runs `body` in one transaction (committed when it returns, rolled back when it throws). Nested calls join
    /// the outer transaction. `advisoryLock`: a transaction-level advisory lock taken first — the way writers that
    /// must be serialised (the audit chain) wait for each other across every node.
    public func transaction<T>(advisoryLock: Int64? = nil, _ body: () throws -> T) throws -> T {
        try withLock {
            if inTransaction > 0 {
                inTransaction += 1
                defer { inTransaction -= 1 }
                return try body()
            }
            try execute("BEGIN")
            inTransaction = 1
            defer { inTransaction = 0 }
            do {
                if let key = advisoryLock { try execute("SELECT pg_advisory_xact_lock($1)", [.int(key)]) }
                let result = try body()
                try execute("COMMIT")
                return result
            } catch {
                _ = try? execute("ROLLBACK")
                throw error
            }
        }
    }
}

/// Connection IDs for postgres-nio's log metadata.
final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
