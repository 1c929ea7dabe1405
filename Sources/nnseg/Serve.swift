import ArgumentParser
import AuditLog
import BatchPipeline
import ConfigDecoding
import DICOMNetwork
import Dispatch
import Foundation
import Logging
import JobQueue
import Outbox
import PlansModel
import PostgresDB
import WatchService
import Yams
import SiteProfile
import Console

/// The site configuration of `nnseg serve` (`Ops/site.example.yaml`): the DICOM node, the folders, the
/// profile, the workers. Decoded strictly: an unknown key anywhere is refused with its path.
struct SiteDocument: Decodable {
    struct Node: Decodable {
        var aeTitle: String?
        var bindAddress: String?
        var port: Int?
        var allowedCallers: [String]?
        var allowedHosts: [String]?
        var maxAssociations: Int?
        var maxPDU: Int?
        var freeDiskFloorMB: Int?
        var idleTimeout: Int?
        var tls: TLS?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case aeTitle, bindAddress, port, allowedCallers, allowedHosts, maxAssociations, maxPDU, freeDiskFloorMB, idleTimeout, tls
        }
    }
    /// The node's certificate (for its listener and, as client certificate, for destinations with `tls: true`).
    struct TLS: Decodable {
        var certificate: String
        var privateKey: String
        var trustedCertificates: [String]
        var requireClientCertificate: Bool?
        var listen: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable { case certificate, privateKey, trustedCertificates, requireClientCertificate, listen }
    }
    struct Folders: Decodable {
        var work: String
        var outgoing: String
        var archive: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case work, outgoing, archive }
    }
    struct Intake: Decodable {
        var quietPeriod: Double?
        var pollInterval: Double?
        enum CodingKeys: String, CodingKey, CaseIterable { case quietPeriod, pollInterval }
    }
    struct Workers: Decodable {
        var maxAttempts: Int?
        var caseTimeLimit: Double?
        var caseMemoryLimitMB: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case maxAttempts, caseTimeLimit, caseMemoryLimitMB }
    }
    struct OutboxSettings: Decodable {
        var firstRetryDelay: Double?
        var maxRetryDelay: Double?
        var maxAttempts: Int?
        var sendTimeout: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case firstRetryDelay, maxRetryDelay, maxAttempts, sendTimeout }
    }
    var profile: String
    var node: Node?
    var folders: Folders
    var intake: Intake?
    var workers: Workers?
    var outbox: OutboxSettings?
    var auditDatabase: String?
    /// The audit database (and, for a cluster, queue and outbox): a SQLite file or postgres://… (same as auditDatabase).
    var database: String?
    var cluster: Cluster?
    /// The web console and metrics (#20) served by this node.
    var console: ConsoleSettings?
    struct ConsoleSettings: Decodable {
        var accounts: String
        var bindAddress: String?
        var port: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case accounts, bindAddress, port }
    }
    /// Cluster mode (#19): this node shares the queue, audit log and outbox in a PostgreSQL `database` with others.
    struct Cluster: Decodable {
        var shared: String
        var node: String?
        var lease: Double?
        var workers: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case shared, node, lease, workers }
    }
    enum CodingKeys: String, CodingKey, CaseIterable { case profile, node, folders, intake, workers, outbox, auditDatabase, database, cluster, console }
}

/// A site configuration, resolved: paths made absolute against the file's folder, the node validated.
struct SiteConfiguration {
    var file: String
    var profile: URL
    var node: StorageSCPConfiguration
    var work: URL
    var outgoing: URL
    var archive: URL?
    var quietPeriod: Double
    var pollInterval: Double
    var maxAttempts: Int
    var caseTimeLimit: Double
    var caseMemoryLimitMB: Int
    /// A SQLite file's absolute path, or a postgres:// URL (cluster mode, or one node on a server).
    var auditDatabase: String
    /// Cluster mode: the shared folder, this node's name, lease and queue workers.
    var cluster: ClusterOptions.Resolved?
    var retryPolicy: RetryPolicy
    var sendTimeout: Int
    /// The node's TLS material for sending (destinations with `tls: true`): verifies the peer with the
    /// trusted CAs, presents the node's certificate.
    var clientTLS: TLSSettings?
    /// The console this node serves (`console:`): accounts file, address (loopback by default), port.
    var console: (accounts: URL, bindAddress: String, port: Int)?

    /// The outbox: the node's own SQLite file, or the cluster's table in its shared database.
    var outboxDatabase: String { cluster != nil ? auditDatabase : work.appendingPathComponent("outbox.sqlite").path }
    static let spoolFolder = "associations"
    var spool: URL { work.appendingPathComponent(Self.spoolFolder) }
    var incoming: URL { work.appendingPathComponent("incoming") }
    var aborted: URL { work.appendingPathComponent("aborted") }
    var stored: URL { work.appendingPathComponent("stored") }

    init(contentsOf url: URL) throws {
        file = url.path
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw Self.invalid(url.path, "", "cannot read the file") }
        let document: SiteDocument
        do {
            document = try StrictDecoding.decode { try YAMLDecoder().decode(StrictDecoding.Root<SiteDocument>.self, from: text).value }
        } catch let issue as ConfigurationIssue {
            throw Self.invalid(url.path, issue.path, issue.detail)
        } catch {
            throw Self.invalid(url.path, "", "not valid YAML (\(error))")
        }
        let base = url.deletingLastPathComponent()
        func resolve(_ path: String) -> URL {
            path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path).standardizedFileURL
        }
        profile = resolve(document.profile)
        work = resolve(document.folders.work)
        outgoing = resolve(document.folders.outgoing)
        archive = document.folders.archive.map(resolve)
        let n = document.node
        let tls = n?.tls.map { t in
            TLSSettings(certificate: resolve(t.certificate).path, privateKey: resolve(t.privateKey).path,
                        trustedCertificates: t.trustedCertificates.map { resolve($0).path }, verifyPeer: t.requireClientCertificate ?? true)
        }
        clientTLS = tls.map { TLSSettings(certificate: $0.certificate, privateKey: $0.privateKey, trustedCertificates: $0.trustedCertificates, verifyPeer: true) }
        if let client = clientTLS, let problem = client.problem() { throw Self.invalid(url.path, "node.tls." + problem.split(separator: ":")[0], problem) }
        node = StorageSCPConfiguration(
            aeTitle: n?.aeTitle ?? "NNSEG", bindAddress: n?.bindAddress ?? "127.0.0.1", port: n?.port ?? 11112,
            allowedCallers: n?.allowedCallers ?? [], allowedHosts: n?.allowedHosts ?? [], maximumAssociations: n?.maxAssociations ?? 8,
            maximumPDU: n?.maxPDU ?? 131_072, freeDiskFloorBytes: Int64(n?.freeDiskFloorMB ?? 1024) << 20,
            spool: work.appendingPathComponent(Self.spoolFolder), dimseTimeout: n?.idleTimeout ?? 120,
            tls: (n?.tls?.listen ?? true) ? tls : nil)
        if let problem = node.problem() {
            let parts = problem.split(separator: ":", maxSplits: 1)
            throw Self.invalid(url.path, "node." + parts[0], String(parts.last ?? "").trimmingCharacters(in: .whitespaces))
        }
        quietPeriod = document.intake?.quietPeriod ?? 2
        pollInterval = document.intake?.pollInterval ?? 0.5
        guard quietPeriod >= 0, pollInterval > 0 else { throw Self.invalid(url.path, "intake", "quietPeriod ≥ 0 and pollInterval > 0 seconds") }
        maxAttempts = document.workers?.maxAttempts ?? 3
        caseTimeLimit = document.workers?.caseTimeLimit ?? 3600
        caseMemoryLimitMB = document.workers?.caseMemoryLimitMB ?? 0
        guard maxAttempts >= 1 else { throw Self.invalid(url.path, "workers.maxAttempts", "at least 1") }
        if document.auditDatabase != nil, document.database != nil {
            throw Self.invalid(url.path, "database", "set database or auditDatabase, not both")
        }
        let database = document.database ?? document.auditDatabase ?? "nnseg-audit.sqlite"
        auditDatabase = PostgresLocation.isPostgres(database) ? database : resolve(database).path
        if PostgresLocation.isPostgres(database) {
            do { _ = try PostgresLocation(url: database) } catch { throw Self.invalid(url.path, "database", "\(error)") }
        }
        if let c = document.cluster {
            guard PostgresLocation.isPostgres(database) else {
                throw Self.invalid(url.path, "cluster", "a cluster needs a shared database: database: postgres://…")
            }
            do {
                cluster = try ClusterOptions.resolve(shared: resolve(c.shared).path, node: c.node, lease: c.lease ?? 30, workers: c.workers ?? 1,
                                                     database: database)
            } catch { throw Self.invalid(url.path, "cluster", "\(error)") }
        }
        if let c = document.console {
            let port = c.port ?? 8080
            guard (0...65535).contains(port) else { throw Self.invalid(url.path, "console.port", "0…65535") }
            console = (resolve(c.accounts), c.bindAddress ?? "127.0.0.1", port)
        }
        let o = document.outbox
        retryPolicy = RetryPolicy(firstDelay: o?.firstRetryDelay ?? 10, maximumDelay: o?.maxRetryDelay ?? 3600, maximumAttempts: o?.maxAttempts ?? 50)
        sendTimeout = o?.sendTimeout ?? 30
        guard retryPolicy.firstDelay > 0, retryPolicy.maximumDelay >= retryPolicy.firstDelay, retryPolicy.maximumAttempts >= 1,
              (1...3600).contains(sendTimeout) else {
            throw Self.invalid(url.path, "outbox", "firstRetryDelay > 0, maxRetryDelay ≥ firstRetryDelay, maxAttempts ≥ 1, sendTimeout 1…3600 s")
        }
    }

    /// The intake's folders: the node's own, or in a cluster the shared spool, outputs and quarantine.
    var watchConfiguration: WatchConfiguration {
        if let cluster {
            return WatchConfiguration(incoming: incoming, cluster: cluster.layout(keepInputs: archive != nil), node: cluster.node,
                                      quietPeriod: quietPeriod, pollInterval: pollInterval, maximumAttempts: maxAttempts)
        }
        return WatchConfiguration(incoming: incoming, outgoing: outgoing, archive: archive, quietPeriod: quietPeriod,
                                  pollInterval: pollInterval, maximumAttempts: maxAttempts)
    }

    static func invalid(_ file: String, _ key: String, _ detail: String) -> ValidationError {
        ValidationError("SITE_CONFIG_INVALID: \(file): \(key.isEmpty ? "(document)" : key): \(detail)")
    }
}

/// `nnseg serve`: a DICOM node. Receives studies by C-STORE (a receiver process: `serve-scp`, restarted if it
/// dies), turns every released association's series into cases through the watch service's claim, worker
/// and quarantine path, and records everything in the audit log.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as a DICOM node: receive series by C-STORE and process each one (see README: Connecting nnseg to PACS).")

    @Option(help: "Site configuration (YAML; see Ops/site.example.yaml).") var site: String
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.serve")
        let site = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
        let caseProfile = try CaseProfile(contentsOf: site.profile)
        if PostgresLocation.isPostgres(site.auditDatabase) { try PostgresDB.waitUntilReachable(url: site.auditDatabase, logger: logger) }
        let audit = try AuditLog(path: site.auditDatabase, keys: try caseProfile.auditKeys())
        let selfExecutable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        signal(SIGPIPE, SIG_IGN)

        // The receiver: a child process, so nothing a peer sends can take the supervisor down.
        let receiver = ReceiverProcess(executable: selfExecutable, arguments: ["serve-scp", "--supervisor", "\(getpid())"] + site.node.arguments + ["--log-level", logging.logLevel],
                                       logger: logger)
        try receiver.start()
        let gate = try AssociationSpool(spool: site.spool, incoming: site.incoming, aborted: site.aborted, stored: site.stored,
                                        isReceiving: { pid in receiver.isCurrent(pid) })
        // Cluster intake (#19): released associations' series are claimed into the shared spool and queued; outputs,
        // quarantine and held instances are in the shared folder (folders.outgoing is not used).
        let config = site.watchConfiguration
        let workers = try CaseWorkerProcesses(profile: site.profile, caseProfile: caseProfile, auditDatabase: site.auditDatabase,
                                              logLevel: logging.logLevel, timeLimit: site.caseTimeLimit, memoryLimitMB: site.caseMemoryLimitMB)
        let queue = try site.cluster.map { try JobQueue(url: site.auditDatabase, node: $0.node) }
        let service = try WatchService(configuration: config, audit: audit, profileName: caseProfile.name, modelName: workers.modelName,
                                       runner: workers.runner, headerReader: workers.headerReader, gate: gate, queue: queue,
                                       logger: Logger(label: "nnseg.serve.cases"))
        let queueWorkers = try site.cluster.map {
            try $0.makeWorkers(database: site.auditDatabase, audit: audit, processes: workers, profileName: caseProfile.name,
                               keepInputs: site.archive != nil, pollInterval: site.pollInterval, role: "serve+worker")
        } ?? []
        let working = queueWorkers.map { startQueueWorker($0, logger: logger) }
        // The outbox: succeeded cases' outputs to the profile's destinations, retried with backoff across restarts.
        // A shared outbox reserves an item for the node sending it: well beyond one association's timeouts.
        let outbox = try Outbox(path: site.outboxDatabase, policy: site.retryPolicy, sendLease: max(120, Double(site.sendTimeout) * 4))
        let dispatcher = OutboxDispatcher(
            outbox: outbox, audit: audit, destinations: caseProfile.destinations, callingAETitle: site.node.aeTitle,
            sender: WorkerSender(executable: selfExecutable, arguments: ["outbox-send", "--timeout", "\(site.sendTimeout)", "--supervisor", "\(getpid())"],
                                 tlsArguments: site.clientTLS.map(\.arguments) ?? []))
        // The console (#20), if the site names one: started before anything is received, so a wrong port or
        // accounts file stops the node at once instead of leaving it unobservable.
        if let console = site.console {
            let server = ConsoleServer(
                configuration: ConsoleConfiguration(bindAddress: console.bindAddress, port: console.port,
                                                    access: try ConsoleAccess(contentsOf: console.accounts), readOnly: false),
                audit: audit, outbox: outbox, queue: try site.cluster.map { try JobQueue(url: site.auditDatabase, node: "\($0.node)-console") },
                quarantine: IntakeQuarantine(configuration: config), logger: Logger(label: "nnseg.console"))
            try startConsole(server, logger: logger)
        }
        let stopping = StopFlag()
        let sending = Thread {
            while !stopping.isSet {
                do {
                    try dispatcher.enqueueFinishedCases()
                    try dispatcher.sendDue()
                } catch {
                    logger.error("outbox pass failed", metadata: ["error": "\(error)"])
                }
                stopping.wait(seconds: 0.5)
            }
        }
        sending.start()
        let sources = handleStopSignals(logger) {
            stopping.set()
            receiver.stop()
            service.requestStop()
            queueWorkers.forEach { $0.requestStop() }
        }
        logger.notice("serving", metadata: ["ae_title": "\(site.node.aeTitle)", "address": "\(site.node.bindAddress)", "port": "\(site.node.port)",
                                            "work": "\(site.work.path)", "outgoing": "\(config.outgoing.path)", "pid": "\(getpid())",
                                            "cluster_node": "\(site.cluster?.node ?? "-")"])
        try service.run()
        stopping.set()
        receiver.stop()
        working.forEach { $0.wait() }
        _ = sources
    }
}

/// A stop request that a loop can also sleep on.
final class StopFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var value = false
    var isSet: Bool { condition.lock(); defer { condition.unlock() }; return value }
    func set() { condition.lock(); value = true; condition.broadcast(); condition.unlock() }
    func wait(seconds: Double) {
        condition.lock()
        if !value { _ = condition.wait(until: Date().addingTimeInterval(seconds)) }
        condition.unlock()
    }
}

/// `nnseg outbox-send`: one C-STORE association for the outbox (internal; started by nnseg serve). Prints
/// `{"instances": [{path, status, sop_uid}], "error": …}`.
struct OutboxSend: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "outbox-send", abstract: "Send files by C-STORE (started by nnseg serve).",
                                                    shouldDisplay: false)
    @Option var callingAe: String
    @Option var calledAe: String
    @Option var host: String
    @Option var port: Int
    @Option var timeout = 30
    @Option(help: "The supervisor's pid (nnseg serve passes its own).") var supervisor: Int32?
    @Flag(help: "Use TLS (with the --tls-… material).") var secure = false
    @OptionGroup var tls: TLSOptions
    @Argument var files: [String]

    func run() throws {
        // Never send for a supervisor that is gone: a restarted node sends the still-pending item itself, and an
        // orphan finishing its send as well delivered it twice (seen under load). Checked every 20 ms.
        Supervisor.watch(expected: supervisor, pollMicroseconds: 20_000) { _exit(2) }
        // DCMTK disables Nagle's algorithm on its sockets when TCP_NODELAY=1 (otherwise each small PDU can wait
        // ~40 ms for a delayed ACK).
        setenv("TCP_NODELAY", "1", 1)
        let destination = StoreDestination(name: calledAe, aeTitle: calledAe, host: host, port: port, outputs: [])
        var instances: [SentInstance] = []
        var error: String?
        do {
            instances = try StorageSCU.send(files, to: destination, callingAETitle: callingAe, timeout: timeout, tls: secure ? tls.settings : nil)
        } catch let failure as StorageSCUError {
            instances = failure.instances
            error = failure.detail
        }
        let document: [String: Any] = [
            "instances": instances.map { ["path": $0.path, "status": $0.status as Any, "sop_uid": $0.sopInstanceUID] },
            "error": error as Any,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]), as: UTF8.self))
    }
}

/// `nnseg outbox list|retry|cancel`: the operator's view of what is to be sent.
struct OutboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "outbox", abstract: "List, retry or cancel what nnseg serve sends to PACS.",
                                                    subcommands: [List.self, Retry.self, Cancel.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List outbox items (newest first).")
        @Option(help: "Site configuration of the node.") var site: String
        @Option(help: "Only items in this state: PENDING, SENT, FAILED, CANCELLED.") var state: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let site = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
            let outbox = try Outbox(path: site.outboxDatabase, policy: site.retryPolicy)
            var filter: OutboxItem.State?
            if let state {
                guard let s = OutboxItem.State(rawValue: state.uppercased()) else { throw ValidationError("--state: PENDING, SENT, FAILED or CANCELLED") }
                filter = s
            }
            let items = try outbox.items(state: filter)
            if json {
                let rows: [[String: Any]] = items.map { i in
                    ["id": i.id, "case_id": i.caseID, "destination": i.destination.name, "state": i.state.rawValue, "attempts": i.attempts,
                     "next_attempt_at": ISO8601DateFormatter().string(from: i.nextAttemptAt), "last_error": i.lastError as Any, "files": i.files]
                }
                print(String(decoding: try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
                return
            }
            for i in items {
                print("\(i.id)\t\(i.state.rawValue)\t\(i.caseID)\t\(i.destination.name)\tattempts \(i.attempts)"
                      + (i.state == .pending ? "\tnext \(ISO8601DateFormatter().string(from: i.nextAttemptAt))" : "")
                      + (i.lastError.map { "\t\($0)" } ?? ""))
            }
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send an item again now (FAILED, CANCELLED or waiting).")
        @Option(help: "Site configuration of the node.") var site: String
        @Argument var id: Int64
        func run() throws { try OutboxCommand.operate(site: site, id: id, action: "outbox_retry") { try $0.retry(id) } }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop sending an item.")
        @Option(help: "Site configuration of the node.") var site: String
        @Argument var id: Int64
        func run() throws { try OutboxCommand.operate(site: site, id: id, action: "outbox_cancel") { try $0.cancel(id) } }
    }

    /// An operator action: applied, then recorded in the case's audit trail with the account that made it.
    static func operate(site path: String, id: Int64, action: String, _ body: (Outbox) throws -> Void) throws {
        let site = try SiteConfiguration(contentsOf: URL(fileURLWithPath: path))
        let outbox = try Outbox(path: site.outboxDatabase, policy: site.retryPolicy)
        let item = try outbox.item(id)
        try body(outbox)
        let account = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "uid \(getuid())"
        try AuditLog(path: site.auditDatabase).append(caseID: item.caseID, kind: action, payload: [
            "outbox_item": .int(id), "destination": .string(item.destination.name), "account": .string(account),
        ])
        print("\(action == "outbox_retry" ? "retrying" : "cancelled") outbox item \(id) (\(item.caseID) → \(item.destination.name))")
    }
}

extension StorageSCPConfiguration {
    /// The `serve-scp` options that carry this configuration to the receiver process.
    var arguments: [String] {
        ["--ae-title", aeTitle, "--bind-address", bindAddress, "--port", "\(port)", "--max-associations", "\(maximumAssociations)",
         "--max-pdu", "\(maximumPDU)", "--free-disk-floor-mb", "\(freeDiskFloorBytes >> 20)", "--idle-timeout", "\(dimseTimeout)",
         "--spool", spool.path]
            + allowedCallers.flatMap { ["--allow-caller", $0] } + allowedHosts.flatMap { ["--allow-host", $0] }
            + (tls?.arguments ?? [])
    }
}

extension TLSSettings {
    /// The options that carry these settings to a child process (`serve-scp`, `outbox-send`).
    var arguments: [String] {
        (certificate.map { ["--tls-certificate", $0] } ?? []) + (privateKey.map { ["--tls-key", $0] } ?? [])
            + trustedCertificates.flatMap { ["--tls-trusted", $0] } + (verifyPeer ? [] : ["--tls-no-peer-verification"])
    }
}

/// The TLS options of the child processes.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-certificate")) var certificate: String?
    @Option(name: .customLong("tls-key")) var key: String?
    @Option(name: .customLong("tls-trusted")) var trusted: [String] = []
    @Flag(name: .customLong("tls-no-peer-verification")) var noPeerVerification = false

    var settings: TLSSettings? {
        guard certificate != nil || !trusted.isEmpty else { return nil }
        return TLSSettings(certificate: certificate, privateKey: key, trustedCertificates: trusted, verifyPeer: !noPeerVerification)
    }
}

/// The receiver child process: started, restarted when it dies (after a second), stopped with SIGTERM.
final class ReceiverProcess: @unchecked Sendable {
    let executable: URL
    let arguments: [String]
    let logger: Logger
    private let lock = NSLock()
    private var process: Process?
    private var stopping = false
    private(set) var restarts = 0

    init(executable: URL, arguments: [String], logger: Logger) {
        self.executable = executable
        self.arguments = arguments
        self.logger = logger
    }

    func start() throws {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        p.terminationHandler = { [weak self] ended in self?.ended(ended) }
        lock.lock()
        process = p
        lock.unlock()
        try p.run()
    }

    /// Whether `pid` is the receiver now serving.
    func isCurrent(_ pid: Int32) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let p = process, p.isRunning else { return false }
        return p.processIdentifier == pid
    }

    private func ended(_ p: Process) {
        lock.lock()
        let again = !stopping
        if again { restarts += 1 }
        lock.unlock()
        guard again else { return }
        logger.error("the DICOM receiver ended; restarting it", metadata: [
            "status": "\(p.terminationStatus)", "signal": "\(p.terminationReason == .uncaughtSignal)", "restarts": "\(restarts)"])
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self else { return }
            do { try self.start() } catch { self.logger.critical("cannot restart the DICOM receiver", metadata: ["error": "\(error)"]) }
        }
    }

    func stop() {
        lock.lock()
        stopping = true
        let p = process
        lock.unlock()
        p?.stop(grace: 10)
    }
}

/// `nnseg serve-scp`: the storage SCP of `nnseg serve`, in its own process (internal).
struct ServeSCP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve-scp", abstract: "Receive C-STORE into the spool (started by nnseg serve).",
                                                    shouldDisplay: false)
    @Option var aeTitle = "NNSEG"
    @Option var bindAddress = "127.0.0.1"
    @Option var port = 11112
    @Option var maxAssociations = 8
    @Option var maxPdu = 131_072
    @Option var freeDiskFloorMb = 1024
    @Option var idleTimeout = 120
    @Option var spool: String
    @Option(help: "The supervisor's pid (nnseg serve passes its own).") var supervisor: Int32?
    @Option(name: .customLong("allow-caller")) var allowedCallers: [String] = []
    @Option(name: .customLong("allow-host")) var allowedHosts: [String] = []
    @OptionGroup var tls: TLSOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.serve.network")
        let stop = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        stop.pointee = 0
        // Never outlive the supervisor (a restarted one starts its own receiver on the same port).
        nonisolated(unsafe) let flag = stop
        Supervisor.watch(expected: supervisor, pollMicroseconds: 200_000) { flag.pointee = 1 }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        source.setEventHandler { flag.pointee = 1 }
        source.resume()
        let config = StorageSCPConfiguration(
            aeTitle: aeTitle, bindAddress: bindAddress, port: port, allowedCallers: allowedCallers, allowedHosts: allowedHosts,
            maximumAssociations: maxAssociations, maximumPDU: maxPdu, freeDiskFloorBytes: Int64(freeDiskFloorMb) << 20,
            spool: URL(fileURLWithPath: spool), dimseTimeout: idleTimeout, tls: tls.settings)
        try StorageSCP.run(config, stop: stop) { json in
            guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return }
            let name = object["event"] as? String ?? "event"
            var metadata: Logger.Metadata = [:]
            for (key, value) in object where key != "event" { metadata[key] = "\(value)" }
            switch name {
            case "association_rejected", "store_refused", "association_failed": logger.warning("\(name)", metadata: metadata)
            case "association_ended" where (object["state"] as? String) == "ABORTED": logger.warning("\(name)", metadata: metadata)
            default: logger.notice("\(name)", metadata: metadata)
            }
        }
        _ = source
    }
}
