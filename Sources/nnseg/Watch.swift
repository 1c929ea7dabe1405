import ArgumentParser
import AuditLog
import BatchPipeline
import CaseIdentity
import DICOMImport
import Dispatch
import Foundation
import JobQueue
import Logging
import PostgresDB
import Outbox
import PlansModel
import WatchService
import SiteProfile

/// `nnseg watch`: the watch-folder service.
struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Process every complete series delivered into a folder, once, surviving crashes (see Ops/RUNBOOK.md).")

    @Option(help: "Site profile.") var profile: String
    @Option(help: "Folder the DICOM router / storescp writes into.") var incoming: String
    @Option(help: "Folder for the case outputs.") var outgoing: String
    @Option(help: "Where processed inputs go (default: deleted after success).") var archive: String?
    @Option(help: "Where bad input goes, with REASON.txt (default: <incoming>/.nnseg/quarantine).") var quarantine: String?
    @Option(help: "Where late instances of processed series are kept (default: <incoming>/.nnseg/held).") var held: String?
    @Option(help: "Seconds without change before a series counts as complete.") var quietPeriod = 10.0
    @Option(help: "Seconds between scans.") var pollInterval = 1.0
    @Option(help: "Attempts before a series is quarantined.") var maxAttempts = 3
    @Flag(help: "Process series again that were processed before.") var reprocessDuplicates = false
    @Option(help: "Seconds a case's worker may run before it is stopped (TIMEOUT); 0: no limit.") var caseTimeLimit = 3600.0
    @Option(help: "Resident memory (MiB) a case's worker may use before it is stopped (OUT_OF_MEMORY); 0: no limit.") var caseMemoryLimitMb = 0
    @Option(name: [.customLong("database"), .customLong("audit-db")],
            help: "Audit database: an SQLite file (default: the profile's, else ./nnseg-audit.sqlite) or postgres://… shared by several nodes (with --shared).")
    var auditDb: String?
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.watch")
        let caseProfile = try CaseProfile(contentsOf: URL(fileURLWithPath: profile))
        let database = databaseArgument(auditDb ?? caseProfile.auditDatabase ?? "nnseg-audit.sqlite")
        if PostgresLocation.isPostgres(database) { try PostgresDB.waitUntilReachable(url: database, logger: logger) }
        let audit = try AuditLog(path: database, keys: try caseProfile.auditKeys())
        let clustered = try cluster.resolve(database: database)
        var config = WatchConfiguration(incoming: URL(fileURLWithPath: incoming), outgoing: URL(fileURLWithPath: outgoing),
                                        archive: archive.map { URL(fileURLWithPath: $0) }, quarantine: quarantine.map { URL(fileURLWithPath: $0) },
                                        held: held.map { URL(fileURLWithPath: $0) }, quietPeriod: quietPeriod, pollInterval: pollInterval, maximumAttempts: maxAttempts,
                                        reprocessDuplicates: reprocessDuplicates)
        if let clustered {
            // The cluster's shared folder holds outputs, quarantine and held instances (--outgoing is not used).
            config = WatchConfiguration(incoming: URL(fileURLWithPath: incoming), cluster: clustered.layout(keepInputs: archive != nil), node: clustered.node,
                                        quietPeriod: quietPeriod, pollInterval: pollInterval, maximumAttempts: maxAttempts,
                                        reprocessDuplicates: reprocessDuplicates)
        }
        // Each case runs in a worker process (this binary's `watch-worker`); the supervisor never decodes
        // pixels or runs the model, so no delivery can take it down.
        let workers = try CaseWorkerProcesses(profile: URL(fileURLWithPath: profile).standardizedFileURL, caseProfile: caseProfile,
                                              auditDatabase: database, logLevel: logging.logLevel,
                                              timeLimit: caseTimeLimit, memoryLimitMB: caseMemoryLimitMb)
        // A reader or worker that dies while we write to its stdin must not take the supervisor with it.
        signal(SIGPIPE, SIG_IGN)
        let queue = try clustered.map { try JobQueue(url: database, node: $0.node) }
        let service = try WatchService(configuration: config, audit: audit, profileName: caseProfile.name, modelName: workers.modelName,
                                       runner: workers.runner, headerReader: workers.headerReader, queue: queue)
        logger.notice("case workers", metadata: ["time_limit_s": "\(caseTimeLimit)", "memory_limit_mb": "\(caseMemoryLimitMb)",
                                                 "attempts": "\(maxAttempts)"])
        // A cluster node also works the shared queue (--workers threads, each running cases in worker processes).
        let queueWorkers = try clustered.map { try $0.makeWorkers(database: database, audit: audit, processes: workers, profileName: caseProfile.name,
                                                                  keepInputs: archive != nil, pollInterval: pollInterval, role: "intake+worker") } ?? []
        let finished = queueWorkers.map { startQueueWorker($0, logger: logger) }
        // SIGTERM / SIGINT: finish the running case, then stop.
        let sources = handleStopSignals(logger) {
            service.requestStop()
            queueWorkers.forEach { $0.requestStop() }
        }
        logger.notice("watching", metadata: ["incoming": "\(incoming)", "outgoing": "\(config.outgoing.path)", "pid": "\(getpid())",
                                             "cluster_node": "\(clustered?.node ?? "-")"])
        try service.run()
        finished.forEach { $0.wait() }
        _ = sources
    }
}

/// The database argument as workers get it: a file path made absolute, a postgres:// URL as given.
func databaseArgument(_ text: String) -> String {
    PostgresLocation.isPostgres(text) ? text : URL(fileURLWithPath: text).standardizedFileURL.path
}

/// Runs a queue worker on its own thread; the semaphore is signalled when it stops.
func startQueueWorker(_ worker: ClusterWorker, logger: Logger) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        do { try worker.run() } catch { logger.critical("queue worker stopped", metadata: ["error": "\(error)"]) }
        done.signal()
    }
    return done
}

/// Options of a node that shares a PostgreSQL queue and audit log with others (#19).
struct ClusterOptions: ParsableArguments {
    @Option(help: "Cluster mode (with a postgres:// database): the shared folder every node mounts (spool, outgoing, quarantine, held).")
    var shared: String?
    @Option(help: "This node's name in the queue (default: the host name); unique per process, stable across restarts.")
    var node: String?
    @Option(help: "Seconds a claimed job's lease lasts without renewal (a dead node's jobs are taken over after it).")
    var lease = 30.0
    @Option(help: "Queue workers in this process (cluster mode).")
    var workers = 1

    struct Resolved {
        var root: URL
        var node: String
        var lease: Double
        var workers: Int
        func layout(keepInputs: Bool) -> ClusterLayout { ClusterLayout(root: root, keepInputs: keepInputs) }

        func makeWorkers(database: String, audit: AuditLog, processes: CaseWorkerProcesses, profileName: String, keepInputs: Bool,
                         pollInterval: Double, role: String) throws -> [ClusterWorker] {
            try (0..<workers).map { i in
                try ClusterWorker(queue: JobQueue(url: database, node: workers > 1 ? "\(node)/\(i + 1)" : node), audit: audit,
                                  layout: layout(keepInputs: keepInputs), runner: processes.runner, profileName: profileName,
                                  modelName: processes.modelName, lease: lease, pollInterval: pollInterval, role: role)
            }
        }
    }

    /// nil without `--shared`; refuses `--shared` without a postgres:// database.
    func resolve(database: String) throws -> Resolved? {
        guard let shared else { return nil }
        return try Self.resolve(shared: shared, node: node, lease: lease, workers: workers, database: database)
    }

    static func resolve(shared: String, node: String?, lease: Double, workers: Int, database: String) throws -> Resolved {
        guard PostgresLocation.isPostgres(database) else {
            throw ValidationError("--shared needs a shared database: --database postgres://…")
        }
        guard lease >= 3 else { throw ValidationError("--lease must be at least 3 seconds") }
        let name = node ?? ProcessInfo.processInfo.hostName
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { throw ValidationError("--node \(name): a plain name, no '/'") }
        return Resolved(root: URL(fileURLWithPath: shared).standardizedFileURL, node: name, lease: lease, workers: max(1, workers))
    }
}

/// `nnseg worker`: a compute-only node of a cluster (#19): claims jobs from the shared queue, runs each in a worker
/// process, records it in the shared audit log.
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work the shared queue of a cluster (PostgreSQL) without an intake of its own.")
    @Option(help: "Site profile (the same model as the intake nodes').") var profile: String
    @Option(name: [.customLong("database"), .customLong("audit-db")], help: "The cluster's database: postgres://user@host:port/db (PGPASSWORD for the password).")
    var database: String
    @Option(help: "Seconds between polls of an empty queue.") var pollInterval = 1.0
    @Option(help: "Seconds a case's worker may run before it is stopped (TIMEOUT); 0: no limit.") var caseTimeLimit = 3600.0
    @Option(help: "Resident memory (MiB) a case's worker may use before it is stopped (OUT_OF_MEMORY); 0: no limit.") var caseMemoryLimitMb = 0
    @Flag(help: "Keep processed inputs in <shared>/archive (default: deleted after success).") var keepInputs = false
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard cluster.shared != nil else { throw ValidationError("--shared FOLDER is required (the cluster's shared folder)") }
        guard PostgresLocation.isPostgres(database) else { throw ValidationError("--database must be postgres://…") }
    }

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.worker")
        let caseProfile = try CaseProfile(contentsOf: URL(fileURLWithPath: profile))
        guard let c = try cluster.resolve(database: database) else { return }
        try PostgresDB.waitUntilReachable(url: database, logger: logger)
        let audit = try AuditLog(path: database, keys: try caseProfile.auditKeys())
        let processes = try CaseWorkerProcesses(profile: URL(fileURLWithPath: profile).standardizedFileURL, caseProfile: caseProfile,
                                                auditDatabase: database, logLevel: logging.logLevel,
                                                timeLimit: caseTimeLimit, memoryLimitMB: caseMemoryLimitMb)
        signal(SIGPIPE, SIG_IGN)
        let workers = try c.makeWorkers(database: database, audit: audit, processes: processes, profileName: caseProfile.name,
                                        keepInputs: keepInputs, pollInterval: pollInterval, role: "worker")
        let sources = handleStopSignals(logger) { workers.forEach { $0.requestStop() } }
        logger.notice("working the shared queue", metadata: ["node": "\(c.node)", "workers": "\(c.workers)", "pid": "\(getpid())"])
        workers.map { startQueueWorker($0, logger: logger) }.forEach { $0.wait() }
        _ = sources
    }
}

/// `nnseg watch-worker`: runs one claimed case for the watch supervisor, in its own process (internal: the
/// supervisor starts it). Records the case in the audit log and prints `{"status": …, "error": …}`.
struct WatchWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch-worker", abstract: "Run one claimed case (started by nnseg watch).",
                                                    shouldDisplay: false)
    @Option var profile: String
    @Option var auditDb: String
    @Option var claim: String
    @Option var outgoing: String
    @Option var caseId: String
    @Option var series: String
    @Option(help: "The supervisor's pid (the watch service passes its own).") var supervisor: Int32?
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        // A worker never outlives its supervisor: if the supervisor dies (kill -9), the restarted one will run
        // the claim again, and two workers must never write the same case.
        Supervisor.watch(expected: supervisor, pollMicroseconds: 100_000) { _exit(3) }
        // Test-only trigger (NNSEG_TEST_ABORT_SERIES=<Series Instance UID>): the worker aborts on that series, as a
        // decoder crash would, so the suite can prove the supervisor survives and quarantines it.
        if let poison = ProcessInfo.processInfo.environment["NNSEG_TEST_ABORT_SERIES"], !poison.isEmpty, poison == series { abort() }
        let caseProfile = try CaseProfile(contentsOf: URL(fileURLWithPath: profile))
        let pipeline = try CasePipeline(profile: caseProfile, audit: try AuditLog(path: auditDb, keys: try caseProfile.auditKeys()))
        pipeline.requireSingleStack = true
        let result = try pipeline.run(study: URL(fileURLWithPath: claim), output: URL(fileURLWithPath: outgoing), caseID: caseId,
                                      deliveredSeries: series)
        var document: [String: Any] = ["status": result.status]
        if let error = result.error { document["error"] = error }
        print(String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]), as: UTF8.self))
    }
}

/// `nnseg watch-identify`: reads the headers of the files named on stdin (one path a line) for the watch
/// supervisor, in its own process (internal). One JSON object per file on stdout, in order.
struct WatchIdentify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch-identify", abstract: "Read delivered files' headers (started by nnseg watch).",
                                                    shouldDisplay: false)
    @Flag(help: "The files have settled: check they are complete.") var final = false
    @Option(help: "Frames one object may declare (the profile's geometry.maximumFrames).") var maxFrames = ReaderLimits.standard.maximumFrames

    func run() throws {
        // Test-only trigger (NNSEG_TEST_ABORT_FILE=<file name>): the reader aborts on that file, as a parser crash would.
        let poison = ProcessInfo.processInfo.environment["NNSEG_TEST_ABORT_FILE"] ?? ""
        while let line = readLine() {
            guard !line.isEmpty else { continue }
            if !poison.isEmpty, URL(fileURLWithPath: line).lastPathComponent == poison { abort() }
            let object = HeaderReading.encode(HeaderReading.identify(line, final: final, limits: ReaderLimits(maximumFrames: maxFrames, maximumSeriesVoxels: ReaderLimits.standard.maximumSeriesVoxels)))
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}

/// `nnseg status`: queue, running case, recent failures of a watch folder.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a watch folder's or a DICOM node's queue, running case, outbox and recent failures.")
    @Option(help: "The watched folder.") var incoming: String?
    @Option(help: "A DICOM node's site configuration (nnseg serve): its queue, associations and outbox.") var site: String?
    @Option(help: "Quarantine folder if not the default.") var quarantine: String?
    @Option(help: "Held (late instances) folder if not the default.") var held: String?
    @Option(name: [.customLong("audit-db"), .customLong("database")],
            help: "Audit database for recent failed cases; a cluster's postgres://… database alone shows its nodes, leases and queue.")
    var auditDb: String?

    func validate() throws {
        if incoming == nil, site == nil, let auditDb, PostgresLocation.isPostgres(auditDb) { return }
        guard (incoming == nil) != (site == nil) else { throw ValidationError("give --incoming (watch), --site (serve) or --database postgres://… (a cluster)") }
    }

    /// A cluster's shared state: nodes with their last heartbeat, the queue's depth, every lease.
    func clusterStatus(_ database: String) throws {
        let queue = try JobQueue(url: database, node: "status")
        let depth = try queue.depth()
        print("cluster   \(try PostgresLocation(url: database))")
        print("queue     queued \(depth.queued) · running \(depth.running) (lease run out: \(depth.expired)) · done \(depth.done) · failed \(depth.failed)")
        print("nodes:")
        for n in try queue.nodes() {
            print("  \(n.name) (\(n.role), pid \(n.pid)) last seen \(n.lastSeen), \(Int(n.silentSeconds)) s ago")
        }
        print("leases:")
        for l in try queue.leases() {
            print("  \(l.job) on \(l.node), attempt \(l.attempts), " + (l.secondsLeft >= 0 ? "\(Int(l.secondsLeft)) s left" : "run out \(Int(-l.secondsLeft)) s ago"))
        }
    }

    func run() throws {
        if incoming == nil, site == nil, let auditDb {
            try clusterStatus(auditDb)
            let log = try AuditLog(path: auditDb)
            print("recent failed cases:")
            for c in try log.cases(.init(status: CaseStatus.failed.rawValue, limit: 10)) { print("  \(c.startedAt) \(c.caseID): \(c.error ?? "")") }
            return
        }
        var incoming = self.incoming ?? ""
        var auditDb = self.auditDb
        if let site {
            let node = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
            incoming = node.incoming.path
            auditDb = auditDb ?? node.auditDatabase
            let fm = FileManager.default
            let open = ((try? fm.contentsOfDirectory(atPath: node.spool.path)) ?? []).filter { !$0.hasPrefix(".") }
            let aborted = ((try? fm.contentsOfDirectory(atPath: node.aborted.path)) ?? []).filter { !$0.hasPrefix(".") }
            print("node      \(node.node.aeTitle) on \(node.node.bindAddress):\(node.node.port)\(node.node.tls == nil ? "" : " (TLS)")")
            print("spool     \(open.count) association(s) receiving or waiting · \(aborted.count) aborted kept in \(node.aborted.path)")
            if node.cluster != nil || fm.fileExists(atPath: node.outboxDatabase) {
                let outbox = try Outbox(path: node.outboxDatabase, policy: node.retryPolicy)
                let depth = try outbox.depth()
                print("outbox    " + OutboxItem.State.allCases.map { "\($0.rawValue) \(depth[$0] ?? 0)" }.joined(separator: " · "))
                for item in try outbox.items(state: .pending, limit: 10) + outbox.items(state: .failed, limit: 10) {
                    print("  #\(item.id) \(item.state.rawValue) \(item.caseID) → \(item.destination.name), attempts \(item.attempts)"
                          + (item.lastError.map { ": \($0)" } ?? ""))
                }
            }
        }
        let config = WatchConfiguration(incoming: URL(fileURLWithPath: incoming), outgoing: URL(fileURLWithPath: incoming),
                                        quarantine: quarantine.map { URL(fileURLWithPath: $0) }, held: held.map { URL(fileURLWithPath: $0) })
        let s = WatchService.status(config)
        let lockPath = URL(fileURLWithPath: incoming).appendingPathComponent(".nnseg/watch.lock").path
        let pid = (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        // The watcher holds an exclusive lock while it runs: if a shared one can be taken, none is running.
        let descriptor = open(lockPath, O_RDONLY)
        let running = descriptor >= 0 && flock(descriptor, LOCK_SH | LOCK_NB) != 0
        if descriptor >= 0 { close(descriptor) }
        print("watcher   \(running ? "running, pid \(pid)" : "not running" + (pid.isEmpty ? "" : " (last pid \(pid))"))")
        print("queue     \(s.pendingFiles) file(s) waiting in \(incoming)")
        print("running   \(s.running.isEmpty ? "none" : s.running.joined(separator: ", "))")
        print("quarantine (newest \(s.quarantined.count)):")
        for q in s.quarantined { print("  \(q.name): \(q.reason)") }
        print("held late instances (\(s.held.count)) — see Ops/RUNBOOK.md, Late instances:")
        for h in s.held { print("  \(h.name): \(h.reason)") }
        if let auditDb, PostgresLocation.isPostgres(auditDb) || FileManager.default.fileExists(atPath: auditDb) {
            let log = try AuditLog(path: auditDb)
            let failed = try log.cases(.init(status: CaseStatus.failed.rawValue, limit: 10))
            print("recent failed cases:")
            for c in failed { print("  \(c.startedAt) \(c.caseID): \(c.error ?? "")") }
            // Warnings of recent cases that succeeded (an RTSTRUCT over its point budget, …).
            var warned: [String] = []
            for c in try log.cases(.init(limit: 20)) {
                for event in try log.events(caseID: c.caseID) where event.kind == "contour_cleanup" {
                    for w in AuditValue.parse(event.payload)?.object?["warnings"]?.array ?? [] {
                        if let text = w.string { warned.append("  \(c.startedAt) \(c.caseID): \(text)") }
                    }
                }
            }
            print("recent warnings (\(warned.count)):")
            warned.forEach { print($0) }
        }
    }
}

/// The child processes a queue of cases runs (`watch` and `serve`): a `watch-worker` per case under the
/// time and memory limits, and `watch-identify` reading headers, both this binary.
struct CaseWorkerProcesses {
    let runner: WorkerProcessRunner
    let headerReader: WorkerHeaderReader
    /// The model's dataset name, recorded with each case.
    let modelName: String

    init(profile: URL, caseProfile: CaseProfile, auditDatabase: String, logLevel: String, timeLimit: Double, memoryLimitMB: Int) throws {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        runner = WorkerProcessRunner(
            executable: executable,
            arguments: ["watch-worker", "--profile", profile.path, "--audit-db", auditDatabase, "--log-level", logLevel],
            timeLimit: timeLimit > 0 ? timeLimit : nil, memoryLimit: memoryLimitMB > 0 ? memoryLimitMB << 20 : nil)
        headerReader = WorkerHeaderReader(executable: executable, arguments: [
            "watch-identify", "--max-frames", "\(caseProfile.readerLimits.maximumFrames)"])
        modelName = try Plans(contentsOf: caseProfile.modelFolder.appendingPathComponent("plans.json")).datasetName
    }
}
