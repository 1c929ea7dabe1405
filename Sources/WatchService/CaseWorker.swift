import CaseIdentity
import DICOMImport
import Dispatch
import Foundation
import SeriesAssembly
#if canImport(Glibc)
import Glibc
#endif

/// How a claimed case ended in its worker.
public enum CaseRunOutcome: Sendable, Equatable {
    /// The worker ran the case and recorded it in the audit log with this status (and error, if it failed).
    case recorded(CaseStatus, error: String?)
    /// The worker did not finish: killed by a signal (`CRASHED (SIGABRT)`), over its memory limit
    /// (`OUT_OF_MEMORY`), over its time limit (`TIMEOUT`), or it exited without a result (`WORKER_FAILED`).
    case workerFailed(WatchReason, detail: String)
}

/// Runs one claimed case.
public protocol CaseRunner: Sendable {
    /// - Parameter abandon: asked while the case runs (every 50 ms); true stops it at once (`LEASE_LOST`: a cluster
    ///   worker that can no longer prove it holds the job, #19).
    func run(claimFolder: URL, outgoing: URL, caseID: String, series: String, abandon: (@Sendable () -> Bool)?) -> CaseRunOutcome
    /// The limits a case runs under (recorded with each claim): name → value, e.g. `time_limit_s`.
    var limits: [String: Double] { get }
}

extension CaseRunner {
    public func run(claimFolder: URL, outgoing: URL, caseID: String, series: String) -> CaseRunOutcome {
        run(claimFolder: claimFolder, outgoing: outgoing, caseID: caseID, series: series, abandon: nil)
    }
}

/// Runs each case in a child process — the same binary's worker command — so that nothing a delivery
/// contains (a decoder crash, a runaway allocation, a hang) can take the supervisor down (issue #14). The
/// worker prints one JSON line `{"status": …, "error": …}` after recording the case and exits 0.
///
/// Limits: `timeLimit` seconds of wall time and `memoryLimit` bytes of resident memory (read from
/// `/proc/<pid>/status` every 50 ms); a worker over either is killed and the attempt is named.
public struct WorkerProcessRunner: CaseRunner {
    public var executable: URL
    /// Arguments before the per-case ones (`--claim`, `--outgoing`, `--case-id`, `--series`).
    public var arguments: [String]
    public var timeLimit: TimeInterval?
    public var memoryLimit: Int?

    public init(executable: URL, arguments: [String], timeLimit: TimeInterval? = nil, memoryLimit: Int? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.timeLimit = timeLimit
        self.memoryLimit = memoryLimit
    }

    public var limits: [String: Double] {
        var l: [String: Double] = [:]
        if let timeLimit { l["time_limit_s"] = timeLimit }
        if let memoryLimit { l["memory_limit_mb"] = Double(memoryLimit >> 20) }
        return l
    }

    public func run(claimFolder: URL, outgoing: URL, caseID: String, series: String, abandon: (@Sendable () -> Bool)?) -> CaseRunOutcome {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + ["--claim", claimFolder.path, "--outgoing", outgoing.path, "--case-id", caseID, "--series", series,
                                           "--supervisor", "\(getpid())"]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        // Drain both pipes while the worker runs (a full pipe would block it).
        let stdout = PipeCollector(output), stderr = PipeCollector(errors)
        do { try process.run() } catch {
            return .workerFailed(.workerFailed, detail: "cannot start the worker \(executable.path): \(error)")
        }
        let started = Date()
        var killedFor: (WatchReason, String)?
        while exited.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            if let limit = timeLimit, Date().timeIntervalSince(started) > limit {
                killedFor = (.timeout, "the case ran longer than the \(Int(limit)) s time limit")
            } else if let limit = memoryLimit, let resident = Self.residentBytes(process.processIdentifier), resident > limit {
                killedFor = (.outOfMemory, "the worker used \(resident >> 20) MiB, over the \(limit >> 20) MiB memory limit")
            } else if let abandon, abandon() {
                killedFor = (.leaseLost, "this node lost the job's lease (it could not renew it in time); another node takes the case over")
            }
            if killedFor != nil {
                kill(process.processIdentifier, SIGKILL)
                exited.wait()
                break
            }
        }
        let text = stdout.text(), diagnostics = stderr.text()
        if let (reason, detail) = killedFor { return .workerFailed(reason, detail: detail) }
        if process.terminationReason == .uncaughtSignal {
            return .workerFailed(.crashed, detail: "the worker was killed by \(Self.signalName(process.terminationStatus))"
                                 + Self.tail(diagnostics))
        }
        guard process.terminationStatus == 0,
              let line = text.split(separator: "\n").last, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let raw = object["status"] as? String, let status = CaseStatus(rawValue: raw)
        else {
            return .workerFailed(.workerFailed, detail: "the worker exited with status \(process.terminationStatus) and no result" + Self.tail(diagnostics))
        }
        return .recorded(status, error: object["error"] as? String)
    }

    /// VmRSS of a process, bytes (nil when it cannot be read).
    static func residentBytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kB = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) })
        else { return nil }
        return kB * 1024
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [SIGABRT: "SIGABRT", SIGSEGV: "SIGSEGV", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGBUS: "SIGBUS",
                                      SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM"]
        return names[signal] ?? "signal \(signal)"
    }

    /// The last line of the worker's diagnostics, for the reason (logs are structured; no patient data).
    static func tail(_ text: String) -> String {
        guard let last = text.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else { return "" }
        return ": " + String(last.suffix(300))
    }
}

/// Reads a pipe to its end on a background queue.
final class PipeCollector: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        DispatchQueue.global().async {
            let all = handle.readDataToEndOfFile()
            self.data = all
            self.done.signal()
        }
    }

    func text() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

// MARK: Header reading

/// Reads delivered files' headers for the assembler.
public protocol HeaderReader: Sendable {
    /// One state per path, in order. `final`: the files have settled, so they must be complete.
    func identify(_ paths: [String], final: Bool) -> [DeliveredFileState]
}

/// Header reading itself (used inside the reader worker, and by anything that accepts the risk in-process).
public enum HeaderReading {
    /// `final`: the file has settled, so it must be complete (``DICOMFile/checkComplete(_:)``) and carry a
    /// Series Instance UID.
    public static func identify(_ path: String, final: Bool, limits: ReaderLimits = .standard) -> DeliveredFileState {
        do {
            let file = try DICOMFile(path: path)
            let header = file.header(limits: limits)
            if final { try file.checkComplete(header) }
            guard !header.seriesInstanceUID.isEmpty else {
                return .problem(code: DICOMImportError.Code.seriesUIDMissing.rawValue,
                                detail: "no Series Instance UID (0020,000E): the file cannot be grouped with its series")
            }
            return .identified(InstanceIdentity(studyInstanceUID: header.studyInstanceUID, seriesInstanceUID: header.seriesInstanceUID,
                                                sopInstanceUID: header.sopInstanceUID))
        } catch let error as DICOMImportError {
            return .problem(code: error.code.rawValue, detail: error.detail)
        } catch {
            return .problem(code: DICOMImportError.Code.readFailed.rawValue, detail: "\(error)")
        }
    }

    /// The reader worker's output line for one file.
    public static func encode(_ state: DeliveredFileState) -> [String: String] {
        switch state {
        case .unknown: return ["state": "unknown"]
        case .identified(let i): return ["state": "identified", "study": i.studyInstanceUID, "series": i.seriesInstanceUID, "sop": i.sopInstanceUID]
        case .problem(let code, let detail): return ["state": "problem", "code": code, "detail": detail]
        }
    }

    static func decode(_ object: [String: String]) -> DeliveredFileState? {
        switch object["state"] {
        case "unknown": return .unknown
        case "identified":
            guard let study = object["study"], let series = object["series"], let sop = object["sop"] else { return nil }
            return .identified(InstanceIdentity(studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop))
        case "problem":
            guard let code = object["code"], let detail = object["detail"] else { return nil }
            return .problem(code: code, detail: detail)
        default: return nil
        }
    }
}

/// Reads headers in a child process (this binary's `watch-identify`: paths on stdin, one JSON object per
/// line on stdout). When the reader dies, the batch is split and read again until the file that kills it is
/// alone: that file is named `CRASHED` (once it has settled), every other file gets its state.
public struct WorkerHeaderReader: HeaderReader {
    public var executable: URL
    public var arguments: [String]
    public var timeLimit: TimeInterval

    public init(executable: URL, arguments: [String], timeLimit: TimeInterval = 60) {
        self.executable = executable
        self.arguments = arguments
        self.timeLimit = timeLimit
    }

    public func identify(_ paths: [String], final: Bool) -> [DeliveredFileState] {
        guard !paths.isEmpty else { return [] }
        if let states = read(paths, final: final) { return states }
        guard paths.count > 1 else {
            // Alone, it still kills the reader: while it may be changing, wait; once settled, name it.
            return [final ? .problem(code: WatchReason.crashed.rawValue, detail: "reading this file's header killed the header reader") : .unknown]
        }
        let half = paths.count / 2
        return identify(Array(paths[..<half]), final: final) + identify(Array(paths[half...]), final: final)
    }

    /// One reader run; nil when it did not return a state for every path.
    func read(_ paths: [String], final: Bool) -> [DeliveredFileState]? {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + (final ? ["--final"] : [])
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        let collected = PipeCollector(output)
        do { try process.run() } catch { return nil }
        let writer = input.fileHandleForWriting
        try? writer.write(contentsOf: Data((paths.joined(separator: "\n") + "\n").utf8))
        try? writer.close()
        if exited.wait(timeout: .now() + timeLimit) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
        }
        let lines = collected.text().split(separator: "\n")
        guard process.terminationReason == .exit, process.terminationStatus == 0, lines.count == paths.count else { return nil }
        var states: [DeliveredFileState] = []
        for line in lines {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String],
                  let state = HeaderReading.decode(object) else { return nil }
            states.append(state)
        }
        return states
    }
}
