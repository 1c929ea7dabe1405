import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging
import PlansModel

/// `nnseg preprocess -d <raw dataset>`: preprocess every training case for the planned configurations,
/// reading the plans `nnseg plan` (or nnU-Net) wrote.
struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Preprocess a planned raw dataset for training (crop, normalise, resample, foreground locations).")

    @OptionGroup var source: RawDatasetOptions

    @Option(help: "Plans name (the plans file without .json).")
    var plans: String = "nnUNetPlans"

    @Option(name: [.customShort("c"), .long], parsing: .upToNextOption, help: "Configuration(s) to preprocess; default: 2d, 3d_fullres and 3d_lowres where planned.")
    var configuration: [String] = []

    @Option(help: "Cases in flight at once (default: nnU-Net's 8 for 2d and 3d_lowres, 4 otherwise, at most the CPU count).")
    var workers: Int?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.preprocess")
        let (raw, root) = try source.open()
        let plansURL = root.appendingPathComponent("\(plans).json")
        guard FileManager.default.fileExists(atPath: plansURL.path) else {
            throw CommandFailure("\(plansURL.path): no plans; run `nnseg plan -d \(source.dataset) --output \(source.output)` first")
        }
        let planned = try Plans(contentsOf: plansURL)
        let names = configuration.isEmpty ? ["2d", "3d_fullres", "3d_lowres"].filter { planned.configurationNames.contains($0) } : configuration
        for name in names {
            _ = try planned.configuration(name)  // names the file and key if it is not there
        }
        for name in names {
            let count = workers ?? min(ProcessInfo.processInfo.activeProcessorCount, ["2d", "3d_lowres"].contains(name) ? 8 : 4)
            let started = Date()
            let progress = ProgressReporter(title: "preprocess \(name)", minimumTotal: 2)
            let written = try DatasetPreprocessor.run(dataset: raw, plans: planned, configuration: name, output: root, workers: count) {
                done, total in progress.update(done, total)
            }
            progress.finish()
            let identifier = try planned.configuration(name).dataIdentifier
            logger.notice("configuration preprocessed", metadata: [
                "configuration": "\(name)", "cases": "\(written.count)", "workers": "\(count)",
                "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))",
            ])
            print("\(name): \(written.count) case(s) → \(root.appendingPathComponent(identifier).path)")
        }
    }
}
