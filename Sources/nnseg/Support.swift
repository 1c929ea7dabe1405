import ArgumentParser
import Dispatch
import DICOMImport
import Foundation
import ExperimentPlanning
import Logging

/// The reader's limits on what a file may declare (``ReaderLimits``), for commands without a profile.
struct ReaderLimitOptions: ParsableArguments {
    @Option(help: "Frames one multi-frame DICOM object may declare before it is refused (ATTRIBUTE_INVALID).")
    var maxFrames = ReaderLimits.standard.maximumFrames
    @Option(help: "Voxels one series may have before it is refused (SERIES_TOO_LARGE).")
    var maxSeriesVoxels = ReaderLimits.standard.maximumSeriesVoxels

    func validate() throws {
        guard maxFrames >= 1, maxSeriesVoxels >= 1 else { throw ValidationError("--max-frames and --max-series-voxels must be at least 1") }
    }

    var limits: ReaderLimits { ReaderLimits(maximumFrames: maxFrames, maximumSeriesVoxels: maxSeriesVoxels) }
}

/// Log options shared by every command. Logs are structured (swift-log, key=value metadata) on stderr.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "notice"

    func bootstrap() {
        let level = Logger.Level(rawValue: logLevel) ?? .notice
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Progress for long work: a redrawn bar on a terminal, plain lines (every 10 %) otherwise; silent for
/// fewer than `minimumTotal` items, where it would only be noise. Thread-safe.
final class ProgressReporter: @unchecked Sendable {
    private let title: String
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private let lock = NSLock()
    private var lastDecile = -1
    private var active = false

    private let minimumTotal: Int

    init(title: String, minimumTotal: Int = 100) {
        self.title = title
        self.minimumTotal = minimumTotal
    }

    /// Shows `done/total` (and `detail`, e.g. loss and ETA): a bar redrawn in place on a terminal, a plain
    /// line per tenth otherwise.
    func update(_ done: Int, _ total: Int, detail: String = "") {
        lock.lock()
        defer { lock.unlock() }
        guard total >= minimumTotal, total > 0 else { return }
        active = true
        if isTerminal {
            let width = 30
            let filled = width * done / total
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            FileHandle.standardError.write(Data("\r\(title) \(bar) \(done)/\(total)\(detail.isEmpty ? "" : " " + detail)\u{1B}[K".utf8))
        } else {
            let decile = 10 * done / total
            if decile != lastDecile {
                lastDecile = decile
                FileHandle.standardError.write(Data("\(title): \(done)/\(total) (\(decile * 10)%)\(detail.isEmpty ? "" : " " + detail)\n".utf8))
            }
        }
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if isTerminal && active { FileHandle.standardError.write(Data("\n".utf8)) }
        active = false
        lastDecile = -1
    }
}

/// A command failed for a reason the message fully explains (printed as "Error: …", exit code 1).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The raw dataset and output root shared by `nnseg plan` and `nnseg preprocess`.
struct RawDatasetOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .long], help: "Raw dataset folder (dataset.json, imagesTr/, labelsTr/).")
    var dataset: String

    @Option(help: "Output root: plans and preprocessed data live in <output>/<dataset folder name>/.")
    var output: String = "nnseg-preprocessed"

    /// The dataset, read, and its folder under the output root.
    func open() throws -> (raw: RawDataset, folder: URL) {
        let raw = try RawDataset(folder: URL(fileURLWithPath: dataset))
        return (raw, URL(fileURLWithPath: output).appendingPathComponent(raw.folder.lastPathComponent))
    }
}

/// The exit statuses of every command (README, "Exit codes"). The same with and without `--json`.
enum ExitStatus: Int32 {
    /// The work was done (`run`: the case SUCCEEDED or had an empty result).
    case success = 0
    /// The work failed or was refused, with a named error (`CODE: subject: detail`); `run`: the case FAILED
    /// (it is in the audit log); `predict`: at least one case failed.
    case failed = 1
    /// Nothing to work on: the input holds no image series or case, or the case asked for does not exist.
    case nothingFound = 2
    /// `audit verify`: the audit log's chain or a sealed case does not check out.
    case auditBroken = 3
    /// Usage: an unknown option, a missing argument, a value of the wrong kind (argument-parser's 64).
    case usage = 64
}

/// A command's failure as every command reports it: a stable code, the message, the exit status.
struct CommandOutcome: Error, CustomStringConvertible {
    let code: String
    let message: String
    let status: ExitStatus

    init(code: String, message: String, status: ExitStatus = .failed) {
        self.code = code
        self.message = message
        self.status = status
    }

    /// Maps an error thrown by a command; nil for argument-parser's own (usage, help, `ExitCode`).
    init?(_ error: Error) {
        if let outcome = error as? CommandOutcome {
            self = outcome
            return
        }
        if error is ExitCode || error is ValidationError || error is CleanExit { return nil }
        if let e = error as? DICOMImportError {
            self.init(code: e.code.rawValue, message: e.description, status: e.code == .noImageSeries ? .nothingFound : .failed)
            return
        }
        // The project's errors describe themselves as "CODE: subject: detail"; others get a generic code.
        let text = "\(error)"
        if String(describing: type(of: error)).hasPrefix("CommandError") || String(describing: type(of: error)).hasPrefix("ParserError") { return nil }
        let head = text.prefix { $0 != ":" }
        let isCode = !head.isEmpty && head.count < text.count && head.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" }
        self.init(code: isCode ? String(head) : "FAILED", message: text)
    }

    var description: String { message }

    func report(asJSON: Bool) {
        if asJSON {
            let document: [String: Any] = ["error": ["code": code, "message": message], "exitStatus": Int(status.rawValue)]
            if let data = try? JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        }
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    }
}

/// SIGTERM / SIGINT handled on a dispatch queue (the running case finishes, then the service stops): logs the
/// request and calls `stop`. Keep the returned sources alive while serving.
func handleStopSignals(_ logger: Logger, _ stop: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            logger.notice("stop requested; finishing the running case", metadata: ["signal": "\(sig)"])
            stop()
        }
        source.resume()
        return source
    }
}
