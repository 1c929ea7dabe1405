import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging
import PlansModel

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
        if !skipVerify {
            let problems = raw.verify()
            if !problems.isEmpty {
                for p in problems { FileHandle.standardError.write(Data("integrity: \(p)\n".utf8)) }
                throw CommandFailure("\(raw.folder.path): \(problems.count) integrity problem(s); nothing was planned")
            }
            logger.info("integrity check passed")
        }
        // A splits_final.json shipped with the raw dataset is checked first and copied at the end (spec §6.2).
        let rawSplits = raw.folder.appendingPathComponent("splits_final.json")
        let ownSplits = FileManager.default.fileExists(atPath: rawSplits.path)
            ? try CrossValidation.read(rawSplits, cases: Set(raw.cases.map(\.identifier))) : nil
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let fingerprintURL = target.appendingPathComponent("dataset_fingerprint.json")
        let fingerprint: DatasetFingerprint
        if !clean, FileManager.default.fileExists(atPath: fingerprintURL.path) {
            fingerprint = try DatasetFingerprint(contentsOf: fingerprintURL)
            logger.notice("reusing the existing fingerprint (--clean recomputes it)", metadata: ["file": "\(fingerprintURL.path)"])
        } else {
            let progress = ProgressReporter(title: "fingerprint", minimumTotal: 2)
            fingerprint = try DatasetFingerprint.extract(raw) { done, total in progress.update(done, total) }
            progress.finish()
            try fingerprint.json().write(to: fingerprintURL, options: .atomic)
        }
        let input = PlannerInput(spacings: fingerprint.spacings, shapesAfterCrop: fingerprint.shapesAfterCrop,
                                 channelNames: raw.description.channelNames, labelCount: raw.description.labels.count,
                                 numTraining: raw.cases.count, medianRelativeSizeAfterCropping: fingerprint.medianRelativeSizeAfterCropping)
        let plan = ExperimentPlanner.plan(input, preset: preset)
        let plansURL = target.appendingPathComponent("\(preset.plansName).json")
        // Configurations someone added to an earlier plans file of this name are kept, as nnU-Net does.
        var keeping: [(String, OrderedJSON)] = []
        if FileManager.default.fileExists(atPath: plansURL.path) {
            let old: JSONValue
            do { old = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: plansURL)) } catch {
                throw CommandFailure("\(plansURL.path): the existing plans file is not valid JSON (\(error)); move it away to re-plan")
            }
            let planned: Set = ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]
            let custom = (old["configurations"]?.object ?? [:]).filter { !planned.contains($0.key) }
            keeping = custom.keys.sorted().map { ($0, OrderedJSON(custom[$0]!)) }
            if !keeping.isEmpty {
                logger.notice("keeping configurations of the existing plans file", metadata: ["configurations": "\(keeping.map(\.0))"])
            }
        }
        let text = plan.plansJSON(datasetName: raw.folder.lastPathComponent, preset: preset,
                                  foregroundIntensityProperties: fingerprint.intensityProperties, keeping: keeping).text()
        try Data(text.utf8).write(to: plansURL, options: .atomic)
        try Data(contentsOf: raw.folder.appendingPathComponent("dataset.json"))
            .write(to: target.appendingPathComponent("dataset.json"), options: .atomic)
        if let splits = ownSplits {
            let copy = target.appendingPathComponent("splits_final.json")
            let data = try Data(contentsOf: rawSplits)
            if FileManager.default.fileExists(atPath: copy.path), try CrossValidation.read(copy, cases: Set(raw.cases.map(\.identifier))) != splits {
                throw CommandFailure("\(copy.path) differs from \(rawSplits.path); move one of them away")
            }
            try data.write(to: copy, options: .atomic)
            logger.notice("using the dataset's own cross-validation splits", metadata: ["folds": "\(splits.count)"])
        }
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
