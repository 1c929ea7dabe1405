import ArgumentParser
import AuditLog
import BatchPipeline
import CaseIdentity
import DICOMImport
import Dispatch
import Foundation
import Logging
import Outbox
import PlansModel
import WatchService

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
    @Option(help: "Audit database (default: the profile's, else ./nnseg-audit.sqlite).") var auditDb: String?
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.watch")
        let caseProfile = try CaseProfile(contentsOf: URL(fileURLWithPath: profile))
        let audit = try AuditLog(path: auditDb ?? caseProfile.auditDatabase ?? "nnseg-audit.sqlite", keys: try caseProfile.auditKeys())
        let config = WatchConfiguration(incoming: URL(fileURLWithPath: incoming), outgoing: URL(fileURLWithPath: outgoing),
                                        archive: archive.map { URL(fileURLWithPath: $0) }, quarantine: quarantine.map { URL(fileURLWithPath: $0) },
                                        held: held.map { URL(fileURLWithPath: $0) }, quietPeriod: quietPeriod, pollInterval: pollInterval, maximumAttempts: maxAttempts,
                                        reprocessDuplicates: reprocessDuplicates)
        // Each case runs in a worker process (this binary's `watch-worker`); the supervisor never decodes
        // pixels or runs the model, so no delivery can take it down.
        let databasePath = URL(fileURLWithPath: auditDb ?? caseProfile.auditDatabase ?? "nnseg-audit.sqlite").standardizedFileURL.path
        let workers = try CaseWorkerProcesses(profile: URL(fileURLWithPath: profile).standardizedFileURL, caseProfile: caseProfile,
                                              auditDatabase: databasePath, logLevel: logging.logLevel,
                                              timeLimit: caseTimeLimit, memoryLimitMB: caseMemoryLimitMb)
        // A reader or worker that dies while we write to its stdin must not take the supervisor with it.
        signal(SIGPIPE, SIG_IGN)
        let service = try WatchService(configuration: config, audit: audit, profileName: caseProfile.name, modelName: workers.modelName,
                                       runner: workers.runner, headerReader: workers.headerReader)
        logger.notice("case workers", metadata: ["time_limit_s": "\(caseTimeLimit)", "memory_limit_mb": "\(caseMemoryLimitMb)",
                                                 "attempts": "\(maxAttempts)"])
        // SIGTERM / SIGINT: finish the running case, then stop.
        let sources = handleStopSignals(logger) { service.requestStop() }
        logger.notice("watching", metadata: ["incoming": "\(incoming)", "outgoing": "\(outgoing)", "pid": "\(getpid())"])
        try service.run()
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
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        // A worker never outlives its supervisor: if the supervisor dies (kill -9), the restarted one will run
        // the claim again, and two workers must never write the same case.
        let supervisor = getppid()
        Thread.detachNewThread {
            while getppid() == supervisor { usleep(100_000) }
            _exit(3)
        }
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
    @Option(help: "Audit database for recent failed cases.") var auditDb: String?

    func validate() throws {
        guard (incoming == nil) != (site == nil) else { throw ValidationError("give --incoming (watch) or --site (serve)") }
    }

    func run() throws {
        var incoming = self.incoming ?? ""
        var auditDb = self.auditDb
        if let site {
            let node = try SiteConfiguration(contentsOf: URL(fileURLWithPath: site))
            incoming = node.incoming.path
            auditDb = auditDb ?? node.auditDatabase.path
            let fm = FileManager.default
            let open = ((try? fm.contentsOfDirectory(atPath: node.spool.path)) ?? []).filter { !$0.hasPrefix(".") }
            let aborted = ((try? fm.contentsOfDirectory(atPath: node.aborted.path)) ?? []).filter { !$0.hasPrefix(".") }
            print("node      \(node.node.aeTitle) on \(node.node.bindAddress):\(node.node.port)\(node.node.tls == nil ? "" : " (TLS)")")
            print("spool     \(open.count) association(s) receiving or waiting · \(aborted.count) aborted kept in \(node.aborted.path)")
            if fm.fileExists(atPath: node.outboxDatabase.path) {
                let outbox = try Outbox(path: node.outboxDatabase.path, policy: node.retryPolicy)
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
        if let auditDb, FileManager.default.fileExists(atPath: auditDb) {
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
