import CaseIdentity
import Dispatch
import Foundation
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
    func run(claimFolder: URL, outgoing: URL, caseID: String, series: String) -> CaseRunOutcome
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

    public func run(claimFolder: URL, outgoing: URL, caseID: String, series: String) -> CaseRunOutcome {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + ["--claim", claimFolder.path, "--outgoing", outgoing.path, "--case-id", caseID, "--series", series]
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
