import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging

/// `nnseg plan <raw dataset>`: nnU-Net's self-configuration — integrity check, dataset fingerprint and
/// experiment planning — writing `dataset.json`, `dataset_fingerprint.json` and `<plans>.json` in
/// nnU-Net v2's formats (the reference nnU-Net reads our plans; we read theirs).
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Fingerprint a raw nnU-Net v2 dataset and plan its configurations (2d, 3d_fullres, 3d_lowres + cascade).")

    @OptionGroup var source: RawDatasetOptions

    @Option(help: "Planner: \(PlannerPreset.all.keys.sorted().joined(separator: ", ")). resenc-l is the authors' recommendation for new work.")
    var planner: String = "default"

    @Flag(help: "Skip the dataset integrity check (reads every label; the default runs it).")
    var skipVerify = false

    @Flag(help: "Recompute the fingerprint even if one exists in the output folder.")
    var clean = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.plan")
        guard let preset = PlannerPreset.all[planner] else {
            throw ValidationError("unknown planner '\(planner)'; choose one of \(PlannerPreset.all.keys.sorted().joined(separator: ", "))")
        }
        let (raw, target) = try source.open()
        logger.info("dataset read", metadata: ["folder": "\(raw.folder.lastPathComponent)", "cases": "\(raw.cases.count)",
                                               "channels": "\(raw.description.channelNames.count)"])
        let progress = ProgressReporter(title: "fingerprint", minimumTotal: 2)
        let outcome: DatasetPlanning.Outcome
        do {
            outcome = try DatasetPlanning.plan(raw, into: target, preset: preset, verify: !skipVerify, clean: clean) { done, total in
                progress.update(done, total)
            }
        } catch let refusal as DatasetPlanning.Refusal {
            for p in refusal.problems { FileHandle.standardError.write(Data("integrity: \(p)\n".utf8)) }
            throw refusal
        }
        progress.finish()
        if outcome.reusedFingerprint { logger.notice("reusing the existing fingerprint (--clean recomputes it)", metadata: ["file": "\(target.appendingPathComponent("dataset_fingerprint.json").path)"]) }
        if !outcome.keptConfigurations.isEmpty {
            logger.notice("keeping configurations of the existing plans file", metadata: ["configurations": "\(outcome.keptConfigurations)"])
        }
        if let folds = outcome.ownSplitFolds { logger.notice("using the dataset's own cross-validation splits", metadata: ["folds": "\(folds)"]) }
        let plan = outcome.plan, plansURL = outcome.plansURL
        print("plans: \(plansURL.path)")
        print("transpose_forward \(plan.transposeForward)")
        for name in ["2d", "3d_lowres", "3d_fullres"] {
            guard let c = plan.configurations[name] else { continue }
            let spacing = c.spacing.map { String(format: "%.4g", $0) }.joined(separator: ", ")
            print("\(name.padding(toLength: 11, withPad: " ", startingAt: 0)) patch \(c.patchSize)  batch \(c.batchSize)  spacing [\(spacing)]  "
                  + "stages \(c.strides.count)  \(c.normalizationSchemes.joined(separator: ","))")
        }
        if plan.hasCascade { print("3d_cascade_fullres (inherits 3d_fullres, previous stage 3d_lowres)") }
    }
}
