import AuditLog
import BatchPipeline
import DICOMImport
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Folders and timing of a watch service.
public struct WatchConfiguration: Sendable {
    public var incoming: URL
    public var outgoing: URL
    public var archive: URL?
    public var quarantine: URL
    /// A series is complete when none of its files changed for this long.
    public var quietPeriod: TimeInterval
    public var pollInterval: TimeInterval
    /// Attempts (including ones cut short by a crash) before a series goes to quarantine.
    public var maximumAttempts: Int
    /// Process a series again even if it was processed before.
    public var reprocessDuplicates: Bool

    public init(incoming: URL, outgoing: URL, archive: URL? = nil, quarantine: URL? = nil, quietPeriod: TimeInterval = 10,
                pollInterval: TimeInterval = 1, maximumAttempts: Int = 3, reprocessDuplicates: Bool = false) {
        self.incoming = incoming
        self.outgoing = outgoing
        self.archive = archive
        self.quarantine = quarantine ?? incoming.appendingPathComponent(".nnseg/quarantine")
        self.quietPeriod = quietPeriod
        self.pollInterval = pollInterval
        self.maximumAttempts = maximumAttempts
        self.reprocessDuplicates = reprocessDuplicates
    }

    var state: URL { incoming.appendingPathComponent(".nnseg") }
    var work: URL { state.appendingPathComponent("work") }
}

/// A claimed series: its files moved (renamed) into `work/<claim>/` with `claim.json` beside them.
struct Claim: Codable {
    var id: String
    var seriesKey: String
    var files: [String]
    var attempts: Int
    var claimedAt: Date
}

/// Watches an incoming folder (a DICOM router or storescp writes into it), picks up each complete
/// series, processes it once through the case pipeline, and survives crashes (issue #7):
///
/// * **Claim** — the files of a quiet series are renamed into `.nnseg/work/<claim>/`, then `claim.json`
///   is written atomically; a work folder without it (a crash mid-claim) is put back.
/// * **Exactly once** — the case ID is the claim ID and the pipeline moves a case's outputs into
///   `outgoing/<claim>/` in one rename, so after a restart a claim whose output folder exists is
///   finished (recorded if the crash came before the audit row) instead of being processed again.
/// * **Bounded retries** — every (re)start counts an attempt; past `maximumAttempts` the series goes
///   to quarantine with the reason. Bad input (non-DICOM, truncated, mixed series, no matching series,
///   a model error) goes to quarantine with a reason file; the service keeps running.
/// * **One watcher** — an exclusive `flock` on `.nnseg/watch.lock`; a second watcher refuses to start.
/// * **Duplicates** — a series already processed successfully is recorded (`DUPLICATE`) and archived,
///   not processed again, unless `reprocessDuplicates`.
/// * **Graceful stop** — `requestStop()` (SIGTERM) lets the running case finish, then returns.
public final class WatchService: @unchecked Sendable {
    public let configuration: WatchConfiguration
    let pipeline: CasePipeline
    let logger: Logger
    private var lockDescriptor: Int32 = -1
    private let stopLock = NSLock()
    private var stopRequested = false
    /// Header cache: path → (size, mtime, when first noticed, series key, problem). A file counts as
    /// settled only when both its mtime and the moment it appeared are older than the quiet period, so
    /// copies that keep an old mtime (cp -p, rsync -t) are not taken for complete too early.
    private var seen: [String: (size: Int, modified: Date, firstSeen: Date, key: String?, problem: String?)] = [:]

    public init(configuration: WatchConfiguration, pipeline: CasePipeline, logger: Logger = Logger(label: "nnseg.watch")) throws {
        self.configuration = configuration
        self.pipeline = pipeline
        self.pipeline.requireSingleStack = true
        self.logger = logger
        let fm = FileManager.default
        for folder in [configuration.incoming, configuration.outgoing, configuration.quarantine, configuration.work] + [configuration.archive].compactMap({ $0 }) {
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        let lockPath = configuration.state.appendingPathComponent("watch.lock").path
        lockDescriptor = open(lockPath, O_CREAT | O_RDWR, 0o644)
        guard lockDescriptor >= 0, flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw WatchError(detail: "another watcher holds \(lockPath); refusing to start")
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
        while !shouldStop {
            let worked = try pollOnce()
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
        for name in (try? fm.contentsOfDirectory(atPath: configuration.outgoing.path)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".partial") {
            let claim = String(name.dropFirst().dropLast(".partial".count))
            if !claims.contains(claim) { try? fm.removeItem(at: configuration.outgoing.appendingPathComponent(name)) }
        }
        for name in try fm.contentsOfDirectory(atPath: configuration.work.path).sorted() {
            let folder = configuration.work.appendingPathComponent(name)
            let claimFile = folder.appendingPathComponent("claim.json")
            guard let data = try? Data(contentsOf: claimFile), var claim = try? Self.decoder.decode(Claim.self, from: data) else {
                // Crash while claiming: return the files; they will be grouped again.
                for file in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] where file != "claim.json" && !file.hasPrefix(".") {
                    try? fm.moveItem(at: folder.appendingPathComponent(file), to: configuration.incoming.appendingPathComponent(file))
                }
                try? fm.removeItem(at: folder)
                logger.warning("returned files of an unfinished claim", metadata: ["claim": "\(name)"])
                continue
            }
            // A staging folder of the interrupted attempt is never output.
            try? fm.removeItem(at: configuration.outgoing.appendingPathComponent(".\(claim.id).partial"))
            if fm.fileExists(atPath: configuration.outgoing.appendingPathComponent(claim.id).path) {
                try finishRecovered(claim, folder: folder)
                continue
            }
            // Interrupted after the case was recorded but before the inputs were moved on.
            if let recorded = try pipeline.audit.cases().first(where: { $0.caseID == claim.id }) {
                if recorded.status == "FAILED" || recorded.status == "QUARANTINED" {
                    try quarantine(folder: folder, claim: claim, reason: recorded.error ?? recorded.status)
                } else {
                    try archive(folder: folder, claim: claim)
                }
                continue
            }
            claim.attempts += 1
            try write(claim, to: folder)
            try pipeline.audit.append(caseID: claim.id, kind: "resumed", payload: ["attempt": .int(Int64(claim.attempts)),
                                                                                   "series_uid": .string(claim.seriesKey)])
            if claim.attempts > configuration.maximumAttempts {
                try quarantine(folder: folder, claim: claim, reason: "RETRIES_EXHAUSTED: \(claim.attempts - 1) attempt(s) did not complete (crash, power loss or disk full)")
                continue
            }
            logger.notice("retrying interrupted case", metadata: ["claim": "\(claim.id)", "attempt": "\(claim.attempts)"])
            try process(claim, folder: folder)
        }
    }

    /// Outputs were moved into place before the crash: make sure the audit log has the case, archive.
    func finishRecovered(_ claim: Claim, folder: URL) throws {
        if try pipeline.audit.cases().first(where: { $0.caseID == claim.id }) == nil {
            try pipeline.audit.append(caseID: claim.id, kind: "case_recovered", payload: [
                "detail": .string("outputs were complete before an interruption; recorded on restart"),
                "output": .string(configuration.outgoing.appendingPathComponent(claim.id).path),
            ])
            try pipeline.audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: "SUCCEEDED", model: pipeline.engine.bundle.plans.datasetName,
                                      seriesInstanceUID: claim.seriesKey, profile: pipeline.profile.name, error: nil)
        }
        try archive(folder: folder, claim: claim)
    }

    // MARK: Polling

    /// One pass: quarantine stale junk, claim and process every quiet series. Returns whether it did anything.
    func pollOnce() throws -> Bool {
        let fm = FileManager.default
        let now = Date()
        var groups: [String: [String]] = [:]
        var newest: [String: Date] = [:]
        var worked = false
        let names = try fm.contentsOfDirectory(atPath: configuration.incoming.path).filter { !$0.hasPrefix(".") }.sorted()
        var present = Set<String>()
        for name in names {
            let url = configuration.incoming.appendingPathComponent(name)
            guard let attributes = try? fm.attributesOfItem(atPath: url.path), (attributes[.type] as? FileAttributeType) == .typeRegular,
                  let size = (attributes[.size] as? NSNumber)?.intValue, let modified = attributes[.modificationDate] as? Date
            else { continue }
            present.insert(url.path)
            var entry = seen[url.path]
            if entry == nil || entry!.size != size || entry!.modified != modified || (entry!.key == nil && entry!.problem == nil) {
                let firstSeen = (entry?.size == size && entry?.modified == modified) ? entry!.firstSeen : now
                entry = (size, modified, firstSeen, nil, nil)
                if now.timeIntervalSince(max(modified, firstSeen)) >= configuration.quietPeriod {
                    do {
                        let header = try DICOMFile(path: url.path).header()
                        entry!.key = Self.seriesKey(header)
                    } catch let error as DICOMImportError {
                        entry!.problem = error.description
                    }
                    seen[url.path] = entry
                } else {
                    seen[url.path] = entry
                    continue  // still being written
                }
            }
            guard let e = entry else { continue }
            if let problem = e.problem {
                try quarantineFile(url, reason: problem)
                seen[url.path] = nil
                worked = true
                continue
            }
            guard let key = e.key else { continue }
            groups[key, default: []].append(name)
            newest[key] = max(newest[key] ?? .distantPast, max(e.modified, e.firstSeen))
        }
        seen = seen.filter { present.contains($0.key) }
        // A series whose newest file is older than the quiet period is complete.
        for (key, files) in groups.sorted(by: { $0.key < $1.key }) where now.timeIntervalSince(newest[key]!) >= configuration.quietPeriod {
            if shouldStop { break }
            let claim = try claimSeries(key: key, files: files)
            try process(claim, folder: configuration.work.appendingPathComponent(claim.id))
            worked = true
        }
        return worked
    }

    func claimSeries(key: String, files: [String]) throws -> Claim {
        let fm = FileManager.default
        let id = Self.claimID()
        let folder = configuration.work.appendingPathComponent(id)
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        for f in files { try fm.moveItem(at: configuration.incoming.appendingPathComponent(f), to: folder.appendingPathComponent(f)) }
        for f in files { seen[configuration.incoming.appendingPathComponent(f).path] = nil }
        let claim = Claim(id: id, seriesKey: key, files: files, attempts: 1, claimedAt: Date())
        try write(claim, to: folder)
        try pipeline.audit.append(caseID: id, kind: "claimed", payload: ["series_uid": .string(key), "files": .int(Int64(files.count))])
        logger.info("series claimed", metadata: ["claim": "\(id)", "series": "\(key)", "files": "\(files.count)"])
        return claim
    }

    func process(_ claim: Claim, folder: URL) throws {
        if !configuration.reprocessDuplicates,
           try pipeline.audit.cases(.init(status: "SUCCEEDED", seriesInstanceUID: claim.seriesKey, limit: 1)).first != nil {
            try pipeline.audit.append(caseID: claim.id, kind: "duplicate_delivery", payload: [
                "series_uid": .string(claim.seriesKey), "files": .int(Int64(claim.files.count)),
            ])
            try pipeline.audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: "DUPLICATE", model: pipeline.engine.bundle.plans.datasetName,
                                      seriesInstanceUID: claim.seriesKey, profile: pipeline.profile.name, error: "already processed; not repeated")
            logger.notice("duplicate delivery recorded, not reprocessed", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)"])
            try archive(folder: folder, claim: claim)
            return
        }
        let result = try pipeline.run(study: folder, output: configuration.outgoing, caseID: claim.id)
        if result.status == "FAILED" {
            try quarantine(folder: folder, claim: claim, reason: result.error ?? "FAILED")
        } else {
            try archive(folder: folder, claim: claim)
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
        try pipeline.audit.append(caseID: claim.id, kind: "inputs_archived", payload: [
            "destination": .string(configuration.archive?.appendingPathComponent(claim.id).path ?? "deleted"),
        ])
    }

    func quarantine(folder: URL, claim: Claim, reason: String) throws {
        // Every claim ends as one case row: record it if the pipeline did not get that far.
        if try pipeline.audit.cases().first(where: { $0.caseID == claim.id }) == nil {
            try pipeline.audit.append(caseID: claim.id, kind: "quarantined", payload: ["reason": .string(reason), "series_uid": .string(claim.seriesKey)])
            try pipeline.audit.finish(caseID: claim.id, startedAt: claim.claimedAt, status: "QUARANTINED", model: pipeline.engine.bundle.plans.datasetName,
                                      seriesInstanceUID: claim.seriesKey, profile: pipeline.profile.name, error: reason)
        }
        let target = configuration.quarantine.appendingPathComponent(claim.id)
        try Data("\(reason)\nseries: \(claim.seriesKey)\nfiles: \(claim.files.count)\n".utf8).write(to: folder.appendingPathComponent("REASON.txt"))
        try FileManager.default.moveItem(at: folder, to: target)
        try pipeline.audit.append(caseID: claim.id, kind: "inputs_quarantined", payload: ["destination": .string(target.path), "reason": .string(reason)])
        logger.warning("series quarantined", metadata: ["claim": "\(claim.id)", "series": "\(claim.seriesKey)", "reason": "\(reason)"])
    }

    func quarantineFile(_ url: URL, reason: String) throws {
        let folder = configuration.quarantine.appendingPathComponent("file-\(Self.claimID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: url, to: folder.appendingPathComponent(url.lastPathComponent))
        try Data("\(reason)\n".utf8).write(to: folder.appendingPathComponent("REASON.txt"))
        let id = folder.lastPathComponent
        try pipeline.audit.append(caseID: id, kind: "file_quarantined", payload: ["file": .string(url.lastPathComponent), "reason": .string(reason)])
        try pipeline.audit.finish(caseID: id, startedAt: Date(), status: "QUARANTINED", model: pipeline.engine.bundle.plans.datasetName,
                                  seriesInstanceUID: "", profile: pipeline.profile.name, error: reason)
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

    static func claimID() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss"
        return "case-\(f.string(from: Date()))-\(UUID().uuidString.prefix(8).lowercased())"
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
        public var pendingFiles: Int
        public var running: [String]
        public var quarantined: [(name: String, reason: String)]
    }

    /// What an operator sees with `nnseg status`.
    public static func status(_ configuration: WatchConfiguration) -> Status {
        let fm = FileManager.default
        let pending = ((try? fm.contentsOfDirectory(atPath: configuration.incoming.path)) ?? []).filter { !$0.hasPrefix(".") }.count
        let running = ((try? fm.contentsOfDirectory(atPath: configuration.work.path)) ?? []).sorted()
        let quarantined = ((try? fm.contentsOfDirectory(atPath: configuration.quarantine.path)) ?? []).sorted().suffix(20).map { name -> (String, String) in
            let reason = (try? String(contentsOf: configuration.quarantine.appendingPathComponent(name).appendingPathComponent("REASON.txt"), encoding: .utf8))?
                .split(separator: "\n").first.map(String.init) ?? ""
            return (name, reason)
        }
        return Status(pendingFiles: pending, running: running, quarantined: quarantined)
    }
}

public struct WatchError: Error, CustomStringConvertible {
    public let detail: String
    public var description: String { "WATCH: \(detail)" }
}
