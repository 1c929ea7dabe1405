import ArgumentParser
import Foundation
import ExperimentPlanning
import Logging

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
