import Foundation
import JSON
import PlansModel

/// `nnseg plan` as one library call (nnUNetv2_plan_and_preprocess's planning half): integrity check,
/// fingerprint (reused unless `clean`), experiment planning, and the files nnU-Net writes beside the
/// plans — `dataset_fingerprint.json`, `<plans>.json` (configurations added by hand to an earlier plans
/// file of the same name are kept), `dataset.json`, and the dataset's own `splits_final.json` if it has one.
public enum DatasetPlanning {
    public struct Outcome: Sendable {
        public var plansURL: URL
        public var plan: ExperimentPlanner.Plan
        /// Configurations kept from an earlier plans file.
        public var keptConfigurations: [String]
        public var reusedFingerprint: Bool
        /// Folds of the dataset's own splits file, when it had one.
        public var ownSplitFolds: Int?
    }

    /// Refusals of `plan` with every problem named (nothing is written).
    public struct Refusal: Error, CustomStringConvertible {
        public let folder: String
        public let problems: [DatasetProblem]
        public let detail: String
        public var description: String { "DATASET_INVALID: \(folder): \(detail)" }
    }

    /// Plans `raw` into `target` (`<output>/<dataset folder>`). `progress`: fingerprint (done, total).
    public static func plan(_ raw: RawDataset, into target: URL, preset: PlannerPreset, verify: Bool = true, clean: Bool = false,
                            progress: ((Int, Int) -> Void)? = nil) throws -> Outcome {
        if verify {
            let problems = raw.verify()
            if !problems.isEmpty {
                throw Refusal(folder: raw.folder.path, problems: problems, detail: "\(problems.count) integrity problem(s); nothing was planned")
            }
        }
        // A splits_final.json shipped with the raw dataset is checked first and copied at the end (spec §6.2).
        let cases = Set(raw.cases.map(\.identifier))
        let rawSplits = raw.folder.appendingPathComponent("splits_final.json")
        let ownSplits = FileManager.default.fileExists(atPath: rawSplits.path) ? try CrossValidation.read(rawSplits, cases: cases) : nil
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let fingerprintURL = target.appendingPathComponent("dataset_fingerprint.json")
        let fingerprint: DatasetFingerprint
        let reused = !clean && FileManager.default.fileExists(atPath: fingerprintURL.path)
        if reused {
            fingerprint = try DatasetFingerprint(contentsOf: fingerprintURL)
        } else {
            fingerprint = try DatasetFingerprint.extract(raw, progress: progress)
            try fingerprint.json().write(to: fingerprintURL, options: .atomic)
        }
        let input = PlannerInput(spacings: fingerprint.spacings, shapesAfterCrop: fingerprint.shapesAfterCrop,
                                 channelNames: raw.description.channelNames, labelCount: raw.description.labels.count,
                                 numTraining: raw.cases.count, medianRelativeSizeAfterCropping: fingerprint.medianRelativeSizeAfterCropping)
        let plan = ExperimentPlanner.plan(input, preset: preset)
        let plansURL = target.appendingPathComponent("\(preset.plansName).json")
        // Configurations someone added to an earlier plans file of this name are kept, as nnU-Net does.
        var keeping: [(String, JSONValue)] = []
        if FileManager.default.fileExists(atPath: plansURL.path) {
            let old: JSONValue
            do { old = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: plansURL)) } catch {
                throw DatasetPreprocessingError(file: plansURL.path, detail: "the existing plans file is not valid JSON (\(error)); move it away to re-plan")
            }
            let planned: Set = ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]
            let custom = (old["configurations"]?.object ?? [:]).filter { !planned.contains($0.key) }
            keeping = custom.keys.sorted().map { ($0, custom[$0]!) }
        }
        let text = plan.plansJSON(datasetName: raw.folder.lastPathComponent, preset: preset,
                                  foregroundIntensityProperties: fingerprint.intensityProperties, keeping: keeping).pythonText()
        try Data(text.utf8).write(to: plansURL, options: .atomic)
        try Data(contentsOf: raw.folder.appendingPathComponent("dataset.json")).write(to: target.appendingPathComponent("dataset.json"), options: .atomic)
        if let splits = ownSplits {
            let copy = target.appendingPathComponent("splits_final.json")
            if FileManager.default.fileExists(atPath: copy.path), try CrossValidation.read(copy, cases: cases) != splits {
                throw DatasetPreprocessingError(file: copy.path, detail: "differs from \(rawSplits.path); move one of them away")
            }
            try Data(contentsOf: rawSplits).write(to: copy, options: .atomic)
        }
        return Outcome(plansURL: plansURL, plan: plan, keptConfigurations: keeping.map(\.0), reusedFingerprint: reused,
                       ownSplitFolds: ownSplits?.count)
    }
}
