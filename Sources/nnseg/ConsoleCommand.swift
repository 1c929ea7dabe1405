import ArgumentParser
import AuditLog
import Console
import Dispatch
import Foundation
import JobQueue
import Logging
import Outbox
import PostgresDB

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
        @Flag(help: "Let operators retry and cancel outbox items (needs --site).") var allowOperatorActions = false
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
            if let site {
                let s = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
                databaseURL = s.auditDatabase
                if s.cluster != nil || FileManager.default.fileExists(atPath: s.outboxDatabase) {
                    outbox = try Outbox(path: s.outboxDatabase, policy: s.retryPolicy)
                }
            }
            if PostgresLocation.isPostgres(databaseURL) { try PostgresDB.waitUntilReachable(url: databaseURL, logger: logger) }
            let audit = try AuditLog(path: databaseURL)
            let queue: JobQueue? = PostgresLocation.isPostgres(databaseURL) ? try JobQueue(url: databaseURL, node: "console") : nil
            let server = ConsoleServer(configuration: ConsoleConfiguration(bindAddress: bind, port: port, access: access, readOnly: !allowOperatorActions),
                                       audit: audit, outbox: outbox, queue: queue, logger: logger)
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
    final class Outcome: @unchecked Sendable { var error: Error? }
    let outcome = Outcome()
    let done = DispatchSemaphore(value: 0)
    let bind = server.configuration.bindAddress
    Task {
        do {
            try await server.run(onReady: { port in
                FileHandle.standardOutput.write(Data("console listening on http://\(bind):\(port)\n".utf8))
                logger.notice("console listening", metadata: ["address": "\(bind)", "port": "\(port)"])
            })
        } catch { outcome.error = error }
        done.signal()
    }
    done.wait()
    if let error = outcome.error { throw error }
}
