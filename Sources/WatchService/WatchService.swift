import AuditLog
import CaseIdentity
import DICOMImport
import Dispatch
import Foundation
import JobQueue
import JSON
import Logging
import SeriesAssembly
#if canImport(Glibc)
import Glibc
#endif

/// Folders and timing of a watch service.
public struct WatchConfiguration: Sendable {
    public var incoming: URL
    public var outgoing: URL
    public var archive: URL?
    public var quarantine: URL
    /// Late instances of series already processed, kept aside for the operator (`nnseg status`).
    public var held: URL
    /// A series is complete when none of its files appeared or changed for this long.
    public var quietPeriod: TimeInterval
    public var pollInterval: TimeInterval
    /// Attempts (including ones cut short by a crash) before a series goes to quarantine.
    public var maximumAttempts: Int
    /// Process a series again even if it was processed before.
    public var reprocessDuplicates: Bool
    /// Where claims are made (default `<incoming>/.nnseg/work`); a cluster node's spool folder on shared storage.
    public var workFolder: URL?

    public init(incoming: URL, outgoing: URL, archive: URL? = nil, quarantine: URL? = nil, held: URL? = nil, quietPeriod: TimeInterval = 10,
                pollInterval: TimeInterval = 1, maximumAttempts: Int = 3, reprocessDuplicates: Bool = false, workFolder: URL? = nil) {
        self.incoming = incoming
        self.outgoing = outgoing
        self.archive = archive
        self.quarantine = quarantine ?? incoming.appendingPathComponent(".nnseg/quarantine")
        self.held = held ?? incoming.appendingPathComponent(".nnseg/held")
        self.quietPeriod = quietPeriod
        self.pollInterval = pollInterval
        self.maximumAttempts = maximumAttempts
        self.reprocessDuplicates = reprocessDuplicates
        self.workFolder = workFolder
    }

    /// A cluster node's intake (#19): claims go to the node's spool folder on shared storage and into the shared
    /// queue; outputs, quarantine and held late instances are the cluster's.
    public init(incoming: URL, cluster layout: ClusterLayout, node: String, quietPeriod: TimeInterval = 10, pollInterval: TimeInterval = 1,
                maximumAttempts: Int = 3, reprocessDuplicates: Bool = false) {
        self.init(incoming: incoming, outgoing: layout.outgoing, archive: layout.archive, quarantine: layout.quarantine, held: layout.held,
                  quietPeriod: quietPeriod, pollInterval: pollInterval, maximumAttempts: maximumAttempts, reprocessDuplicates: reprocessDuplicates,
                  workFolder: layout.spool(node: node))
    }

    var state: URL { incoming.appendingPathComponent(".nnseg") }
    var work: URL { workFolder ?? state.appendingPathComponent("work") }

    /// Folders under `incoming` that are the service's own (state, and any output folder configured inside
    /// it): never scanned as deliveries.
    var ownFolders: Set<String> {
        let root = incoming.standardizedFileURL.path
        return Set(([state, outgoing, quarantine, held, work] + [archive].compactMap { $0 }).map { $0.standardizedFileURL.path }
            .filter { $0.hasPrefix(root + "/") })
    }
}

/// A claimed series: its files moved (renamed) into `work/<claim>/` with `claim.json` beside them.
struct Claim: Codable {
    var id: String
    var seriesKey: String
    /// Paths relative to the incoming folder (and to the claim folder, which mirrors them).
    var files: [String]
    var attempts: Int
    var claimedAt: Date
    var sopInstanceUIDs: [String]?
    /// The failed case whose quarantined inputs were re-assembled into this claim.
    var reassembledFrom: String?
}

/// Watches an incoming folder (a DICOM router or storescp writes into it, at the top level or in
/// sub-folders such as storescp's `--sort-on-study-uid`), picks up each complete series, processes it once
/// through the case pipeline in a worker, and survives crashes (issues #7, #14, #23):
///
/// * **Assembly** — ``SeriesAssembler``'s rule: a series is claimed only when none of its files appeared
///   or changed within the quiet period and no file of unknown series is still arriving. A file that is
///   still unreadable once it has settled is quarantined with its code (`TRUNCATED`, `NOT_DICOM`,
///   `SERIES_UID_MISSING`, …); nothing in the folder is ignored silently (broken links, linked folders and
///   special files are quarantined with a reason; a link to a file is resolved by copying its target).
/// * **Claim** — the files of a ready series are renamed into `.nnseg/work/<claim>/` (sub-folders kept),
///   then `claim.json` is written atomically; a work folder without it (a crash mid-claim) is put back.
///   Emptied sub-folders are removed once they have been quiet for the quiet period.
/// * **Late instances** — ``DeliveryRule``: files of a series that was already processed are never a case
///   of their own: a re-delivery is `DUPLICATE`, new instances are held aside as `LATE_INSTANCE` naming
///   the case, a failed series is re-assembled with them and processed again (Ops/RUNBOOK.md).
/// * **Exactly once** — the case ID is the claim ID and the pipeline moves a case's outputs into
///   `outgoing/<claim>/` in one rename, so after a restart a claim whose output folder exists is
///   finished (recorded if the crash came before the audit row) instead of being processed again.
/// * **Bounded retries** — every (re)start counts an attempt; past `maximumAttempts` the series goes
///   to quarantine with the reason.
/// * **Isolation** (#14) — this supervisor reads no file itself: headers come from a ``HeaderReader`` (a reader
///   process, bisected down to the file that kills it) and every case runs through a ``CaseRunner`` (a worker
///   process with time and memory limits); a worker that dies is an attempt with its reason (`CRASHED`,
///   `OUT_OF_MEMORY`, `TIMEOUT`, `WORKER_FAILED`), retried up to `maximumAttempts`, then quarantined.
/// * **One watcher** — an exclusive `flock` on `.nnseg/watch.lock`; a second watcher refuses to start.
/// * **Graceful stop** — `requestStop()` (SIGTERM) lets the running case finish, then returns.
public final class WatchService: @unchecked Sendable {
    public let configuration: WatchConfiguration
    let audit: AuditLog
    let profileName: String
    let modelName: String
    let runner: CaseRunner
    let headerReader: HeaderReader
    /// Another intake feeding the incoming folder (the network receiver of `nnseg serve`), if any.
    let gate: DeliveryGate?
    /// The shared queue of a cluster node (#19): series to process are queued for any node's worker instead of
    /// run here.
    let queue: JobQueue?
    let logger: Logger
    private var lockDescriptor: Int32 = -1
    private let stopLock = NSLock()
    private var stopRequested = false
    /// What was seen of every delivered file, and when (the assembly rule, ``SeriesAssembler``).
    private var assembler: SeriesAssembler

    /// - Parameters:
    ///   - runner: runs each claimed case (in a worker process: the supervisor itself reads headers only and
    ///     never decodes pixels or runs a model).
    ///   - profileName, modelName: recorded on the case rows the supervisor writes itself (duplicates, held,
    ///     quarantined deliveries).
    public init(configuration: WatchConfiguration, audit: AuditLog, profileName: String, modelName: String, runner: CaseRunner,
                headerReader: HeaderReader, gate: DeliveryGate? = nil, queue: JobQueue? = nil, logger: Logger = Logger(label: "nnseg.watch")) throws {
        self.configuration = configuration
        self.queue = queue
        self.audit = audit
        self.profileName = profileName
        self.modelName = modelName
        self.runner = runner
        self.headerReader = headerReader
        self.gate = gate
        self.logger = logger
        assembler = SeriesAssembler(quietPeriod: configuration.quietPeriod)
        let fm = FileManager.default
        for folder in [configuration.incoming, configuration.state, configuration.outgoing, configuration.quarantine, configuration.held,
                       configuration.work]
            + [configuration.archive].compactMap({ $0 }) {
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        let lockPath = configuration.state.appendingPathComponent("watch.lock").path
        lockDescriptor = open(lockPath, O_CREAT | O_RDWR, 0o644)
        guard lockDescriptor >= 0 else {
            throw WatchError(code: .stateUnwritable, detail: "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw WatchError(code: .locked, detail: "another watcher holds \(lockPath); refusing to start")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(lockDescriptor, 0)
        _ = pid.withCString { Glibc.write(lockDescriptor, $0, strlen($0)) }
    }

    deinit {
        if lockDescriptor >= 0 {
            flock(lockDescriptor, LOCK_UN)
            close(lockDescriptor)
        }
    }

    public func requestStop() {
        stopLock.lock()
        stopRequested = true
        stopLock.unlock()
    }

    var shouldStop: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    /// Runs until `requestStop()`; `maximumIdlePolls` (tests) returns after that many polls with nothing to do.
    public func run(maximumIdlePolls: Int? = nil) throws {
        try recover()
        var idle = 0
        var failures = 0
        while !shouldStop {
            let worked: Bool
            if queue == nil {
                worked = try pollOnce()
            } else {
                // A cluster node outlives a database outage: the pass is retried with backoff (series stay in the
                // incoming folder or in this node's spool), and claims left unqueued by the failed pass are queued
                // by `recover()` before the next one.
                do {
                    if failures > 0 { try recover() }
                    worked = try pollOnce()
                    failures = 0
                } catch {
                    failures += 1
                    let wait = retryDelay(afterFailures: failures, poll: configuration.pollInterval)
                    logger.error("intake pass failed; retrying", metadata: ["error": "\(error)", "retry_in_s": "\(wait)"])
                    Thread.sleep(forTimeInterval: wait)
                    continue
                }
            }
            idle = worked ? 0 : idle + 1
            if let limit = maximumIdlePolls, idle >= limit { return }
            if !worked { Thread.sleep(forTimeInterval: configuration.pollInterval) }
        }
        logger.notice("watcher stopped on request")
    }

    // MARK: Recovery

    /// Claims left by a previous run: put back half-made claims, finish ones whose outputs exist,
    /// count an attempt for the rest (quarantine past the limit) and process them again.
    func recover() throws {
        let fm = FileManager.default
        // Staging folders of cases no longer claimed (their claim finished or went back) are leftovers.
        let claims = Set(((try? fm.contentsOfDirectory(atPath: configuration.work.path)) ?? []))
        // (Not on a cluster node: the outgoing folder is shared, and other nodes' cases are being written there; the
        // node that takes a job over removes that case's leftovers itself.)
        for name in (queue == nil ? (try? fm.contentsOfDirectory(atPath: configuration.outgoing.path)) ?? [] : [])
        where name.hasPrefix(".") && name.hasSuffix(".partial") {
            let claim = String(name.dropFirst().dropLast(".partial".count))
            if !claims.contains(claim) { try? fm.removeItem(at: configuration.outgoing.appendingPathComponent(name)) }
        }
        for name in try fm.contentsOfDirectory(atPath: configuration.work.path).sorted() {
            let folder = configuration.work.appendingPathComponent(name)
            let claimFile = folder.appendingPathComponent("claim.json")
            guard let data = try? Data(contentsOf: claimFile), var claim = try? Self.decoder.decode(Claim.self, from: data) else {
                // Crash while claiming: return the files (to their sub-folders); they will be grouped again.
                for file in Self.relativeFiles(in: folder) where !Self.bookkeeping.contains(file) {
                    let target = configuration.incoming.appendingPathComponent(file)
                    try? fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try? fm.moveItem(at: folder.appendingPathComponent(file), to: target)
                }
                try? fm.removeItem(at: folder)
                logger.warning("returned files of an unfinished claim", metadata: ["claim": "\(name)"])
                continue
            }
            // Queued already: the cluster's workers own it now.
            if let queue, try queue.job(claim.id) != nil { continue }
            // A staging folder of the interrupted attempt is never output.
            try? fm.removeItem(at: configuration.outgoing.appendingPathComponent(".\(claim.id).partial"))
            if fm.fileExists(atPath: configuration.outgoing.appendingPathComponent(claim.id).path) {
                try finishRecovered(claim, folder: folder)
                continue
            }
            // Interrupted after the case was recorded but before the inputs were moved on.
            if let recorded = try audit.cases().first(where: { $0.caseID == claim.id }) {
                if recorded.caseStatus?.isFailure == true {
                    try quarantine(folder: folder, claim: claim, reason: recorded.error ?? recorded.status)
                } else if recorded.caseStatus == .held {
                    try moveToHeld(folder: folder, claim: claim, reason: recorded.error ?? WatchReason.lateInstance.rawValue)
                } else {
                    try archive(folder: folder, claim: claim)
                }
                continue
            }
            if queue != nil {
                // Claimed but not yet queued when the node stopped: queue it now (no attempt was made).
                try dispatch(claim, try decide(seriesUID: claim.seriesKey, instances: claim.sopInstanceUIDs ?? []))
                continue
            }
            claim.attempts += 1
            try write(claim, to: folder)
            try audit.append(caseID: claim.id, kind: "resumed", payload: ["attempt": .int(Int64(claim.attempts)),
                                                                                   "series_uid": .string(claim.seriesKey)])
            if claim.attempts > configuration.maximumAttempts {
                try quarantine(folder: folder, claim: claim, reason: "\(WatchReason.retriesExhausted.rawValue): \(claim.attempts - 1) attempt(s) did not complete (crash, power loss or disk full)")
                continue
            }
            logger.notice("retrying interrupted case", metadata: ["claim": "\(claim.id)", "attempt": "\(claim.attempts)"])
            try dispatch(claim, try decide(seriesUID: claim.seriesKey, instances: claim.sopInstanceUIDs ?? []))
        }
    }

    /// Outputs were moved into place before the crash: make sure the audit log has the case, archive.
    func finishRecovered(_ claim: Claim, folder: URL) throws {
        let outputs = configuration.outgoing.appendingPathComponent(claim.id)
        if try audit.caseRow(claim.id) == nil {
            try audit.append(caseID: claim.id, kind: "case_recovered", payload: [
                "detail": .string("outputs were complete before an interruption; recorded on restart"),
                "output": .string(outputs.path),
            ])
            let receipt = try audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: .succeeded, model: modelName,
                                           seriesInstanceUID: claim.seriesKey, profile: profileName, error: nil)
            try receipt?.write(to: outputs)
        } else if !FileManager.default.fileExists(atPath: outputs.appendingPathComponent("receipt.json").path),
                  let receipt = try audit.receipt(caseID: claim.id) {
            // Recorded, but stopped before its receipt was written beside the outputs.
            try receipt.write(to: outputs)
        }
        try archive(folder: folder, claim: claim)
    }

    // MARK: Polling

    /// One pass: look at every delivery, quarantine settled junk, claim and process every ready series,
    /// tidy emptied sub-folders. Returns whether it did anything.
    func pollOnce() throws -> Bool {
        try gate?.transfer()
        let inFlight = gate?.seriesInFlight() ?? []
        let now = Date()
        var worked = false
        let entries = (try? FolderWalker(followFolderLinks: false, skipFolderPaths: configuration.ownFolders)
            .walk(configuration.incoming.standardizedFileURL)) ?? []
        let root = configuration.incoming.standardizedFileURL.path + "/"
        var present = Set<String>()
        var linked = Set<String>()
        var toRead: [String] = []
        for entry in entries {
            let id = String(entry.path.dropFirst(root.count))
            present.insert(id)
            let changed = assembler.observe(id, size: entry.size, modified: entry.modified, now: now)
            switch entry.kind {
            case .file(let isLink):
                if isLink { linked.insert(id) }
                if changed { toRead.append(id) }
            case .brokenLink:
                assembler.record(id, .problem(code: WatchReason.brokenSymlink.rawValue, detail: "a symbolic link whose target does not exist"), final: true)
            case .linkedFolder:
                assembler.record(id, .problem(code: WatchReason.linkedFolder.rawValue, detail: "a symbolic link to a folder: watch takes files and real sub-folders only"), final: true)
            case .loop, .special:
                assembler.record(id, .problem(code: WatchReason.notARegularFile.rawValue, detail: "a FIFO, socket or device: not a delivery"), final: true)
            }
        }
        assembler.retain(only: present)
        // Headers are read by the header reader (a worker process: a file that crashes the reader is named,
        // the supervisor carries on). New or changed files first; then files that settled since their header
        // was last read, read whole with the completeness checks.
        for (id, state) in zip(toRead, headerReader.identify(toRead.map { root + $0 }, final: false)) { assembler.record(id, state) }
        let settled = assembler.needingFinalRead(now: now)
        for (id, state) in zip(settled, headerReader.identify(settled.map { root + $0 }, final: true)) { assembler.record(id, state, final: true) }
        let plan = assembler.plan(now: now)
        for problem in plan.problems {
            try quarantineFile(configuration.incoming.appendingPathComponent(problem.file), reason: "\(problem.code): \(problem.file): \(problem.detail)")
            assembler.forget([problem.file])
            worked = true
        }
        // One series per pass: a case may run for minutes, and what arrived meanwhile must be looked at
        // before the next series is taken (the next pass starts at once).
        if let series = plan.ready.first(where: { !inFlight.contains($0.seriesInstanceUID) }), !shouldStop {
            try deliver(series, linked: linked)
            worked = true
        }
        removeEmptyFolders(now: now)
        return worked
    }

    /// A ready series: decide with the late-instance rule, claim, then process, hold or record.
    func deliver(_ series: ReadySeries, linked: Set<String>) throws {
        let disposition = try decide(seriesUID: series.seriesInstanceUID, instances: series.sopInstanceUIDs)
        var reassembling: String?
        if case .reassemble(let earlier) = disposition { reassembling = earlier }
        let claim = try claimSeries(series, linked: linked, reassembling: reassembling)
        try dispatch(claim, disposition)
    }

    func decide(seriesUID: String, instances: [String]) throws -> DeliveryDisposition {
        DeliveryRule.decide(instances: Set(instances), priors: try priorCases(seriesUID), reprocessDuplicates: configuration.reprocessDuplicates)
    }

    /// Carries out a claim's disposition (also after a restart, decided again from the audit log).
    func dispatch(_ claim: Claim, _ disposition: DeliveryDisposition) throws {
        let folder = configuration.work.appendingPathComponent(claim.id)
        switch disposition {
        case .process, .reassemble:
            try process(claim, folder: folder)
        case .supersede(let earlier):
            try audit.append(caseID: claim.id, kind: "superseding_delivery", payload: [
                "previous_case": .string(earlier), "series_uid": .string(claim.seriesKey),
                "detail": .string("the whole series again with new instances: processed as a new version"),
            ])
            try process(claim, folder: folder)
        case .duplicate(let earlier):
            try recordDuplicate(claim, folder: folder, of: earlier)
        case .late(let earlier):
            try hold(claim, belongsTo: earlier)
        }
    }

    /// Earlier cases of a series, newest first, with the instances they were claimed with.
    func priorCases(_ seriesUID: String) throws -> [PriorCase] {
        try audit.cases(.init(seriesInstanceUID: seriesUID)).map { c in
            let status = c.caseStatus
            let outcome: PriorCase.Outcome = status?.isSuccess == true ? .succeeded : status?.isFailure == true ? .failed : .other
            var instances: Set<String>?
            if outcome == .succeeded {
                for event in try audit.events(caseID: c.caseID) where event.kind == "claimed" {
                    let payload = try? JSONSerialization.jsonObject(with: Data(event.payload.utf8)) as? [String: Any]
                    if let uids = payload?["sop_instance_uids"] as? [String] { instances = Set(uids) }
                }
            }
            let quarantined = configuration.quarantine.appendingPathComponent(c.caseID)
            let hasInputs = outcome == .failed && !Self.relativeFiles(in: quarantined).filter { !Self.bookkeeping.contains($0) }.isEmpty
            return PriorCase(caseID: c.caseID, outcome: outcome, sopInstanceUIDs: instances, inputsInQuarantine: hasInputs)
        }
    }

    static let bookkeeping: Set<String> = ["claim.json", "REASON.txt", ".claim.json.partial"]

    func claimSeries(_ series: ReadySeries, linked: Set<String>, reassembling earlier: String? = nil) throws -> Claim {
        let fm = FileManager.default
        let id = CaseID.make()
        let folder = configuration.work.appendingPathComponent(id)
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        var files: [String] = []
        for f in series.files {
            let source = configuration.incoming.appendingPathComponent(f), target = folder.appendingPathComponent(f)
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            if linked.contains(f) {
                // A link to a file: the claim keeps a copy of what it points at; the link itself is consumed.
                try fm.copyItem(at: source.resolvingSymlinksInPath(), to: target)
                try fm.removeItem(at: source)
            } else {
                try fm.moveItem(at: source, to: target)
            }
            files.append(f)
        }
        assembler.forget(series.files)
        var instances = series.sopInstanceUIDs
        if let earlier {
            // The failed case's inputs join the new files (their own sub-folder, so names cannot collide).
            let quarantined = configuration.quarantine.appendingPathComponent(earlier)
            for f in Self.relativeFiles(in: quarantined) where !Self.bookkeeping.contains(f) {
                let name = "reassembled-\(earlier)/\(f)"
                let target = folder.appendingPathComponent(name)
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try fm.moveItem(at: quarantined.appendingPathComponent(f), to: target)
                files.append(name)
            }
            if let earlierClaim = try? Self.decoder.decode(Claim.self, from: Data(contentsOf: quarantined.appendingPathComponent("claim.json"))) {
                instances += earlierClaim.sopInstanceUIDs ?? []
            }
            try? fm.removeItem(at: quarantined)
        }
        let claim = Claim(id: id, seriesKey: series.seriesInstanceUID, files: files, attempts: 1, claimedAt: Date(),
                          sopInstanceUIDs: Array(Set(instances)).sorted(), reassembledFrom: earlier)
        try write(claim, to: folder)
        var payload: [String: AuditValue] = [
            "series_uid": .string(series.seriesInstanceUID), "files": .int(Int64(files.count)),
            "sop_instance_uids": .array(claim.sopInstanceUIDs!.map { .string($0) }),
            "worker_limits": .object(JSONObject(runner.limits.mapValues { JSONValue.double($0) })),
        ]
        if let earlier { payload["reassembled_from"] = .string(earlier) }
        try audit.append(caseID: id, kind: "claimed", payload: payload)
        if let earlier {
            try audit.append(caseID: id, kind: "reassembled", payload: [
                "previous_case": .string(earlier), "late_files": .int(Int64(series.files.count)),
                "detail": .string("more of a failed series arrived: its quarantined inputs are processed again with the new files"),
            ])
        }
        logger.info("series claimed", metadata: ["claim": "\(id)", "series": "\(series.seriesInstanceUID)", "files": "\(files.count)"])
        return claim
    }

    /// Late instances of a series that was already processed: kept aside, recorded as `HELD` with
    /// `LATE_INSTANCE` naming the case they belong to.
    func hold(_ claim: Claim, belongsTo earlier: String) throws {
        let folder = configuration.work.appendingPathComponent(claim.id)
        let reason = "\(WatchReason.lateInstance.rawValue): \(claim.files.count) file(s) of series \(claim.seriesKey) arrived after case \(earlier) had been processed "
            + "from the rest of the series; held, not processed alone (see Ops/RUNBOOK.md, Late instances)"
        try audit.append(caseID: claim.id, kind: "late_instance", payload: [
            "belongs_to": .string(earlier), "series_uid": .string(claim.seriesKey), "files": .int(Int64(claim.files.count)),
            "reason": .string(reason),
        ])
        try audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: .held, model: modelName,
                                  seriesInstanceUID: claim.seriesKey, profile: profileName, error: reason)
        try moveToHeld(folder: folder, claim: claim, reason: reason)
        logger.warning("late instances held", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)", "belongs_to": "\(earlier)"])
    }

    func moveToHeld(folder: URL, claim: Claim, reason: String) throws {
        let target = configuration.held.appendingPathComponent(claim.id)
        try Data("\(reason)\nseries: \(claim.seriesKey)\nfiles: \(claim.files.count)\n".utf8).write(to: folder.appendingPathComponent("REASON.txt"))
        try FileManager.default.moveItem(at: folder, to: target)
        try audit.append(caseID: claim.id, kind: "inputs_held", payload: ["destination": .string(target.path)])
    }

    /// Removes sub-folders of `incoming` that are empty and have not changed for the quiet period (a
    /// router may still be about to write into a folder it has just made).
    func removeEmptyFolders(now: Date) {
        let fm = FileManager.default
        let own = configuration.ownFolders
        func prune(_ path: String) -> Bool {
            guard let names = try? fm.contentsOfDirectory(atPath: path) else { return false }
            var empty = true
            for name in names {
                let child = path + "/" + name
                var s = stat()
                guard lstat(child, &s) == 0 else { empty = false; continue }
                if (s.st_mode & S_IFMT) == S_IFDIR && !own.contains(child) && prune(child) { continue }
                empty = false
            }
            guard empty, path != configuration.incoming.standardizedFileURL.path else { return false }
            var s = stat()
            guard stat(path, &s) == 0 else { return false }
            guard now.timeIntervalSince(FolderWalker.date(s.st_mtim)) >= configuration.quietPeriod else { return false }
            return rmdir(path) == 0
        }
        _ = prune(configuration.incoming.standardizedFileURL.path)
    }

    /// Files under `folder`, relative to it, sorted (sub-folders walked, links not followed).
    static func relativeFiles(in folder: URL) -> [String] {
        let root = folder.standardizedFileURL.path + "/"
        let entries = (try? FolderWalker(followFolderLinks: false).walk(folder.standardizedFileURL)) ?? []
        return entries.map { String($0.path.dropFirst(root.count)) }
    }

    /// Every instance was in an earlier successful case: recorded as `DUPLICATE`, archived, not processed.
    func recordDuplicate(_ claim: Claim, folder: URL, of earlier: String) throws {
        try audit.append(caseID: claim.id, kind: "duplicate_delivery", payload: [
            "series_uid": .string(claim.seriesKey), "files": .int(Int64(claim.files.count)), "previous_case": .string(earlier),
        ])
        try audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: .duplicate, model: modelName,
                                  seriesInstanceUID: claim.seriesKey, profile: profileName, error: "already processed as \(earlier); not repeated")
        logger.notice("duplicate delivery recorded, not reprocessed", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)"])
        try archive(folder: folder, claim: claim)
    }

    /// Runs the case in its worker. A worker that crashes, runs out of memory or time is an attempt, recorded
    /// with its reason; the case is tried again at once, up to `maximumAttempts`, then quarantined with the
    /// reason — other series flow on, and the supervisor is never touched by what the files contain.
    func process(_ claim: Claim, folder: URL) throws {
        if let queue {
            try queue.enqueue(id: claim.id, seriesUID: claim.seriesKey, spool: folder.standardizedFileURL.path, maxAttempts: configuration.maximumAttempts)
            try audit.append(caseID: claim.id, kind: "queued", payload: ["node": .string(queue.node), "series_uid": .string(claim.seriesKey),
                                                                       "spool": .string(folder.standardizedFileURL.path)])
            logger.info("series queued", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)"])
            return
        }
        var claim = claim
        while true {
            let outcome = runner.run(claimFolder: folder, outgoing: configuration.outgoing, caseID: claim.id, series: claim.seriesKey)
            switch outcome {
            case .recorded(let status, let error):
                if status == .failed {
                    try quarantine(folder: folder, claim: claim, reason: error ?? CaseStatus.failed.rawValue)
                } else {
                    try archive(folder: folder, claim: claim)
                }
                return
            case .workerFailed(let reason, let detail):
                try audit.append(caseID: claim.id, kind: "worker_failed", payload: [
                    "attempt": .int(Int64(claim.attempts)), "reason": .string(reason.rawValue), "detail": .string(detail),
                    "series_uid": .string(claim.seriesKey),
                ])
                logger.error("case worker failed", metadata: ["claim": "\(claim.id)", "attempt": "\(claim.attempts)", "reason": "\(reason.rawValue)"])
                // Whatever the worker left: a staging folder is discarded; complete outputs mean it finished.
                try? FileManager.default.removeItem(at: configuration.outgoing.appendingPathComponent(".\(claim.id).partial"))
                if FileManager.default.fileExists(atPath: configuration.outgoing.appendingPathComponent(claim.id).path) {
                    try finishRecovered(claim, folder: folder)
                    return
                }
                if claim.attempts >= configuration.maximumAttempts {
                    try quarantine(folder: folder, claim: claim, reason: "\(reason.rawValue): \(detail) (\(claim.attempts) attempt(s))")
                    return
                }
                claim.attempts += 1
                try write(claim, to: folder)
            }
        }
    }

    // MARK: Moves

    func archive(folder: URL, claim: Claim) throws {
        let fm = FileManager.default
        if let archive = configuration.archive {
            try fm.moveItem(at: folder, to: archive.appendingPathComponent(claim.id))
        } else {
            try fm.removeItem(at: folder)
        }
        try audit.append(caseID: claim.id, kind: "inputs_archived", payload: [
            "destination": .string(configuration.archive?.appendingPathComponent(claim.id).path ?? "deleted"),
        ])
    }

    func quarantine(folder: URL, claim: Claim, reason: String) throws {
        // Every claim ends as one case row: record it if the pipeline did not get that far.
        if try audit.cases().first(where: { $0.caseID == claim.id }) == nil {
            try audit.append(caseID: claim.id, kind: "quarantined", payload: ["reason": .string(reason), "series_uid": .string(claim.seriesKey)])
            try audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: .quarantined, model: modelName,
                                      seriesInstanceUID: claim.seriesKey, profile: profileName, error: reason)
        }
        let target = configuration.quarantine.appendingPathComponent(claim.id)
        try Data("\(reason)\nseries: \(claim.seriesKey)\nfiles: \(claim.files.count)\n".utf8).write(to: folder.appendingPathComponent("REASON.txt"))
        try FileManager.default.moveItem(at: folder, to: target)
        try audit.append(caseID: claim.id, kind: "inputs_quarantined", payload: ["destination": .string(target.path), "reason": .string(reason)])
        logger.warning("series quarantined", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)", "reason": "\(reason)"])
    }

    func quarantineFile(_ url: URL, reason: String) throws {
        let folder = configuration.quarantine.appendingPathComponent("file-\(CaseID.make())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: url, to: folder.appendingPathComponent(url.lastPathComponent))
        try Data("\(reason)\n".utf8).write(to: folder.appendingPathComponent("REASON.txt"))
        let id = folder.lastPathComponent
        try audit.append(caseID: id, kind: "file_quarantined", payload: ["file": .string(url.lastPathComponent), "reason": .string(reason)])
        try audit.finish(caseID: id, startedAt: Date(), status: .quarantined, model: modelName,
                                  seriesInstanceUID: "", profile: profileName, error: reason)
        logger.warning("file quarantined", metadata: ["file": "\(url.lastPathComponent)", "reason": "\(reason)"])
    }

    func write(_ claim: Claim, to folder: URL) throws {
        let data = try Self.encoder.encode(claim)
        let temporary = folder.appendingPathComponent(".claim.json.partial")
        try data.write(to: temporary)
        _ = rename(temporary.path, folder.appendingPathComponent("claim.json").path)
    }

    static func seriesKey(_ header: InstanceHeader) -> String {
        header.seriesInstanceUID.isEmpty ? "no-series-uid-\(header.studyInstanceUID)" : header.seriesInstanceUID
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()
    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }()

    // MARK: Status

    public struct Status: Sendable {
        /// Files waiting in the incoming folder and its sub-folders.
        public var pendingFiles: Int
        public var running: [String]
        public var quarantined: [(name: String, reason: String)]
        /// Late instances kept aside (`LATE_INSTANCE`), each with the case it belongs to.
        public var held: [(name: String, reason: String)]
    }

    /// What an operator sees with `nnseg status`.
    public static func status(_ configuration: WatchConfiguration) -> Status {
        let fm = FileManager.default
        let pending = ((try? FolderWalker(followFolderLinks: false, skipFolderPaths: configuration.ownFolders)
            .walk(configuration.incoming.standardizedFileURL)) ?? []).count
        let running = ((try? fm.contentsOfDirectory(atPath: configuration.work.path)) ?? []).sorted()
        func reasons(_ folder: URL, newest: Int) -> [(String, String)] {
            ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).sorted().suffix(newest).map { name -> (String, String) in
                let reason = (try? String(contentsOf: folder.appendingPathComponent(name).appendingPathComponent("REASON.txt"), encoding: .utf8))?
                    .split(separator: "\n").first.map(String.init) ?? ""
                return (name, reason)
            }
        }
        return Status(pendingFiles: pending, running: running, quarantined: reasons(configuration.quarantine, newest: 20),
                      held: reasons(configuration.held, newest: 1000))
    }
}

extension WatchService {
    /// An operator's requeue (console, #20): moves a quarantine entry's inputs back into the incoming folder as a
    /// new delivery (`requeued-<entry>/`, the same sub-folders), which the intake assembles and claims again like
    /// any other; the entry's REASON.txt and claim go with the entry, which is removed. Returns the files moved.
    public static func requeue(_ name: String, configuration: WatchConfiguration) throws -> Int {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw WatchError(code: .notInQuarantine, detail: "\(name): not a quarantine entry")
        }
        let fm = FileManager.default
        let entry = configuration.quarantine.appendingPathComponent(name)
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: entry.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw WatchError(code: .notInQuarantine, detail: "\(name): no such entry in \(configuration.quarantine.path)")
        }
        let files = relativeFiles(in: entry).filter { !bookkeeping.contains($0) }
        var target = configuration.incoming.appendingPathComponent("requeued-\(name)")
        var n = 2
        while fm.fileExists(atPath: target.path) {
            target = configuration.incoming.appendingPathComponent("requeued-\(name)-\(n)")
            n += 1
        }
        // Built beside the intake's own state first, then renamed in: the intake never sees half a delivery.
        let staging = configuration.state.appendingPathComponent(".requeue-\(name)")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        for f in files {
            let destination = staging.appendingPathComponent(f)
            try fm.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            try fm.moveItem(at: entry.appendingPathComponent(f), to: destination)
        }
        try fm.moveItem(at: staging, to: target)
        try fm.removeItem(at: entry)
        return files.count
    }
}

public struct WatchError: Error, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Another watcher holds the incoming folder's lock.
        case locked = "WATCH_LOCKED"
        /// The watcher's own state folder (`<incoming>/.nnseg`) cannot be written.
        case stateUnwritable = "WATCH_STATE_UNWRITABLE"
        /// A requeue named something that is not an entry of the quarantine folder.
        case notInQuarantine = "NOT_IN_QUARANTINE"
    }

    public let code: Code
    public let detail: String
    public var description: String { "\(code.rawValue): \(detail)" }
}

/// Why the watch service set a delivery aside (REASON.txt, the audit row's error), besides the reading
/// codes of ``DICOMImportError`` and the case codes of the pipeline.
public enum WatchReason: String, Sendable, CaseIterable {
    /// A symbolic link whose target does not exist.
    case brokenSymlink = "BROKEN_SYMLINK"
    /// A symbolic link to a folder (watch takes files and real sub-folders).
    case linkedFolder = "LINKED_FOLDER"
    /// A FIFO, socket or device in the incoming folder.
    case notARegularFile = "NOT_A_REGULAR_FILE"
    /// New instances of a series already processed: held, not processed alone.
    case lateInstance = "LATE_INSTANCE"
    /// A case interrupted (crash, power loss, full disk) more often than `--max-attempts`.
    case retriesExhausted = "RETRIES_EXHAUSTED"
    /// The case's worker was killed by a signal (the signal is named).
    case crashed = "CRASHED"
    /// The case's worker went over its memory limit and was stopped.
    case outOfMemory = "OUT_OF_MEMORY"
    /// The case's worker went over its time limit and was stopped.
    case timeout = "TIMEOUT"
    /// The case's worker exited without a result.
    case workerFailed = "WORKER_FAILED"
    /// A cluster node stopped a case because it could not renew the job's lease in time (#19): another node takes
    /// the job over; the attempt counts.
    case leaseLost = "LEASE_LOST"
}
