import ArgumentParser
import AuditLog
import Console
import Dispatch
import Foundation
import JobQueue
import Logging
import Outbox
import PostgresDB
import SiteProfile
import WatchService
import Digest

/// `nnseg console`: the web console and metrics (#20) on an audit database — read-only unless
/// `--allow-operator-actions` (then with the node's `--site`, whose outbox it acts on).
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console", abstract: "Serve the console (health, metrics, JSON API) on an audit database (see README: Console).",
        subcommands: [Serve.self, HashPassword.self], defaultSubcommand: Serve.self)

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the console server.")
        @Option(help: "A node's site configuration (its audit database and outbox).") var site: String?
        @Option(help: "Audit database: an SQLite file or postgres://… (instead of --site).") var database: String?
        @Option(help: "Accounts (YAML: accounts with bcrypt hashes, optional trustedProxy headers).") var accounts: String
        @Option(help: "Address to listen on (default loopback: put a TLS reverse proxy in front for the network).") var bind = "127.0.0.1"
        @Option(help: "Port (0: any free port, printed at start).") var port = 8080
        @Flag(help: "Let operators retry and cancel outbox items and requeue quarantined deliveries (needs --site).") var allowOperatorActions = false
        @Option(help: "Public key to check the log's seals with (default: the site profile's signing key, if readable).") var publicKey: String?
        @OptionGroup var logging: LoggingOptions

        func validate() throws {
            guard (site == nil) != (database == nil) else { throw ValidationError("give --site or --database") }
            if allowOperatorActions, site == nil { throw ValidationError("--allow-operator-actions needs --site (the node's outbox)") }
        }

        func run() throws {
            logging.bootstrap()
            let logger = Logger(label: "nnseg.console")
            let access = try ConsoleAccess(contentsOf: URL(fileURLWithPath: accounts))
            var databaseURL = database.map(databaseArgument) ?? ""
            var outbox: Outbox?
            var quarantine: IntakeQuarantine?
            var keys = AuditKeys()
            if let site {
                let s = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
                databaseURL = s.auditDatabase
                if s.cluster != nil || FileManager.default.fileExists(atPath: s.outboxDatabase) {
                    outbox = try Outbox(path: s.outboxDatabase, policy: s.retryPolicy)
                }
                quarantine = IntakeQuarantine(configuration: s.watchConfiguration)
                // The site's signing key gives the public key to check seals with; a console may lack the secret.
                if publicKey == nil, let profileKeys = try? CaseProfile(contentsOf: s.profile).auditKeys() { keys.signing = profileKeys.signing }
            }
            if PostgresLocation.isPostgres(databaseURL) { try PostgresDB.waitUntilReachable(url: databaseURL, logger: logger) }
            let audit = try AuditLog(path: databaseURL, keys: keys)
            let queue: JobQueue? = PostgresLocation.isPostgres(databaseURL) ? try JobQueue(url: databaseURL, node: "console") : nil
            let server = ConsoleServer(configuration: ConsoleConfiguration(bindAddress: bind, port: port, access: access, readOnly: !allowOperatorActions),
                                       audit: audit, outbox: outbox, queue: queue, quarantine: quarantine,
                                       publicKey: try publicKey.map { try VerifyingKey(contentsOf: $0) }, logger: logger)
            try runConsole(server, logger: logger)
        }
    }

    struct HashPassword: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "hash-password",
                                                        abstract: "Print the bcrypt hash of a password read from standard input (for the accounts file).")
        @Option(help: "bcrypt cost (work factor, 4…31).") var cost = 12
        func run() throws {
            guard (4...31).contains(cost) else { throw ValidationError("--cost: 4…31") }
            guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw ValidationError("no password on standard input") }
            print(ConsoleAccess.hash(password: line, cost: UInt8(cost)))
        }
    }
}

/// Runs the console until it stops (SIGTERM/SIGINT: graceful shutdown); prints where it listens.
func runConsole(_ server: ConsoleServer, logger: Logger) throws {
    let done = try startConsole(server, logger: logger)
    done.wait()
    if let error = done.error { throw error }
}

/// Starts the console in the background once it listens (prints `console listening on http://…`); throws if it
/// cannot (port taken, address not available). The returned handle tells when it stopped.
@discardableResult
func startConsole(_ server: ConsoleServer, logger: Logger) throws -> ConsoleRun {
    let run = ConsoleRun()
    let bind = server.configuration.bindAddress
    Task {
        do {
            try await server.run(onReady: { port in
                FileHandle.standardOutput.write(Data("console listening on http://\(bind):\(port)\n".utf8))
                logger.notice("console listening", metadata: ["address": "\(bind)", "port": "\(port)"])
                run.ready.signal()
            })
        } catch {
            run.error = error
            logger.error("console stopped", metadata: ["error": "\(error)"])
        }
        run.ready.signal()
        run.stopped.signal()
    }
    run.ready.wait()
    if let error = run.error { throw ValidationError("CONSOLE_UNAVAILABLE: \(bind):\(server.configuration.port): \(error)") }
    return run
}

final class ConsoleRun: @unchecked Sendable {
    let ready = DispatchSemaphore(value: 0)
    let stopped = DispatchSemaphore(value: 0)
    var error: Error?
    func wait() { stopped.wait() }
}

/// The intake's quarantine for the console: its newest entries, and the operator's requeue.
struct IntakeQuarantine: ConsoleQuarantine {
    let configuration: WatchConfiguration
    func entries() throws -> [QuarantineEntry] {
        WatchService.status(configuration).quarantined.map { QuarantineEntry(name: $0.name, reason: $0.reason) }
    }
    func requeue(_ name: String) throws -> Int? {
        do { return try WatchService.requeue(name, configuration: configuration) } catch let error as WatchError where error.code == .notInQuarantine { return nil }
    }
}
